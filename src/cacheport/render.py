"""Rendering a Plan for whatever runs the build. Pure functions: no I/O, no environment.

Machine formats (args, bake, buildctl, github, dotenv) carry every value the build needs. Formats a person
reads (explain, json) show secret attributes as ``***``. Which of these ``--format`` offers is not decided
here: the built-in renderers plugin registers them through the ``cacheport_renderers`` hook, like any other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from cacheport.entry import REDACTED, CacheEntry
from cacheport.errors import RenderError
from cacheport.records import Plan, ShownSetting

# Characters that word splitting or globbing would change in an unquoted $(cacheport args).
_UNSAFE_WORD = re.compile(r"[\s*?\[]")


def human_size(n: int) -> str:
    """Bytes for a person, in powers of 1000 as registries and docker show them."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def buildx_flags(plan: Plan) -> list[str]:
    """``--cache-from=...``/``--cache-to=...`` words for ``docker buildx build``, one word per flag.

    An inline cache lives in the pushed image, so its tag is part of the flags too.
    """
    return (
        [f"--cache-from={e.format()}" for e in plan.imports]
        + [f"--cache-to={e.format()}" for e in plan.exports]
        + [f"--tag={tag}" for tag in plan.tags]
    )


def redacted(plan: Plan) -> Plan:
    """The plan with secret attribute values replaced by ``***`` (for a terminal)."""
    if not plan.secret_attrs:
        return plan

    def hide(entries: tuple[CacheEntry, ...]) -> tuple[CacheEntry, ...]:
        return tuple(
            CacheEntry(e.type, [(k, REDACTED if k in plan.secret_attrs else v) for k, v in e.attrs]) for e in entries
        )

    return attrs.evolve(plan, imports=hide(plan.imports), exports=hide(plan.exports))


def args(plan: Plan) -> str:
    """Flags on one line, for ``docker buildx build $(cacheport args) .``."""
    words = buildx_flags(plan)
    shown = buildx_flags(redacted(plan))  # error messages are read by people (and land in CI logs)
    for word, safe in zip(words, shown, strict=True):
        if _UNSAFE_WORD.search(word.replace(REDACTED, "")):  # a redacted plan is for reading, not running
            raise RenderError(
                f"{safe!r} contains a space or a glob character, which $(cacheport args) would split or expand; "
                "use --format lines with mapfile, or --format json"
            )
    return " ".join(words)


def lines(plan: Plan) -> str:
    """One flag per line, for ``mapfile -t flags < <(cacheport args --lines)``."""
    return "".join(f"{word}\n" for word in buildx_flags(plan))


def _entry_doc(entry: CacheEntry, secrets: frozenset[str]) -> dict[str, Any]:
    return {
        "type": entry.type,
        "attrs": {k: (REDACTED if k in secrets else v) for k, v in entry.attrs},
        "csv": entry.format(redact=secrets),
    }


def as_dict(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data; secret attributes are redacted."""
    ctx = plan.context
    return {
        "backend": plan.backend,
        "context": {
            "provider": ctx.provider,
            "project": ctx.project,
            "branch": ctx.branch,
            "default_branch": ctx.default_branch,
            "target_branch": ctx.target_branch,
            "trusted": ctx.trusted,
            "event": ctx.event,
            "protected": ctx.protected,
            "tag": ctx.tag,
        },
        "trust": None if ctx.trust is None else {
            "rule": ctx.trust.rule,
            "mode": ctx.trust.mode,
            "writes": ctx.trust.writes,
            "protected": ctx.trust.protected,
            "signed": ctx.trust.signed,
            "reason": ctx.trust.reason,
        },
        "signatures": _signatures(plan),
        "imports": [_entry_doc(e, plan.secret_attrs) for e in plan.imports],
        "exports": [_entry_doc(e, plan.secret_attrs) for e in plan.exports],
        "tags": list(plan.tags),
        "migration": {"from": plan.migration.old, "phase": plan.migration.phase} if plan.migration else None,
        "read_only": plan.read_only,
        "swaps": [{"new": s.new, "current": s.current, "replace": s.replace} for s in plan.swaps],
        "settings": {
            s.name: {
                "value": REDACTED if s.secret and s.setting.value is not None else s.setting.value,
                "source": s.setting.source.level,
                "from": s.setting.source.detail,
            }
            for s in plan.settings
        },
        "warnings": list(plan.warnings),
    }


def as_json(plan: Plan) -> str:
    return json.dumps(as_dict(plan), indent=2, ensure_ascii=False) + "\n"


def bake(plan: Plan, targets: Sequence[str] = ("default",)) -> str:
    """A file for ``docker buildx bake -f docker-bake.hcl -f cacheport.json``: cache settings per target."""
    cache: dict[str, list[str]] = {
        "cache-from": [e.format() for e in plan.imports],
        "cache-to": [e.format() for e in plan.exports],
    }
    if plan.tags:
        cache["tags"] = list(plan.tags)
    return json.dumps({"target": {t: cache for t in targets or ("default",)}}, indent=2, ensure_ascii=False) + "\n"


def buildctl(plan: Plan) -> str:
    """``--import-cache``/``--export-cache`` flags for ``buildctl build``, one per line (flag and value)."""
    out = [f"--import-cache\n{e.format()}\n" for e in plan.imports]
    out += [f"--export-cache\n{e.format()}\n" for e in plan.exports]
    return "".join(out)


def secret_values(plan: Plan) -> list[str]:
    """The secret attribute values the plan carries (for ``::add-mask::``)."""
    return sorted({v for e in (*plan.imports, *plan.exports) for k, v in e.attrs if k in plan.secret_attrs and v})


def plan_secrets(plan: Plan, environ: Mapping[str, str]) -> list[str]:
    """The secret values a plan brings into play: its secret attributes and its logins' passwords."""
    passwords = [environ.get(login.password_env, "") for login in plan.logins]
    return sorted({*secret_values(plan), *(p for p in passwords if p)})


def github_output(plan: Plan, delimiter: str = "") -> str:
    """``cache-from``/``cache-to`` outputs for ``$GITHUB_OUTPUT``, as docker/build-push-action reads them.

    build-push-action re-joins CSV fields after parsing, so an entry that needs CSV quoting can't survive it.
    The heredoc delimiter is derived from the content, so it can't occur in it (and the output is pure).
    """
    if not delimiter:
        import hashlib

        body = "\n".join(e.format() for e in (*plan.imports, *plan.exports))
        delimiter = f"ghadelimiter_{hashlib.sha256(body.encode()).hexdigest()[:32]}"
    for entry in (*plan.imports, *plan.exports):
        if '"' in entry.format():
            shown = entry.format(redact=plan.secret_attrs)
            raise RenderError(f"{shown!r} needs CSV quoting, which docker/build-push-action strips; use --format args")
    out = []
    for name, entries in (("cache-from", plan.imports), ("cache-to", plan.exports)):
        body = "".join(f"{e.format()}\n" for e in entries)
        if delimiter in body:
            raise RenderError("output delimiter collides with the content; try again")
        out.append(f"{name}<<{delimiter}\n{body}{delimiter}\n")
    return "".join(out)


def dotenv(plan: Plan) -> str:
    """A GitLab ``artifacts:reports:dotenv`` file: space-separated entries and ready-made buildx flags."""
    values = {
        "CACHEPORT_CACHE_FROM": " ".join(e.format() for e in plan.imports),
        "CACHEPORT_CACHE_TO": " ".join(e.format() for e in plan.exports),
        "CACHEPORT_TAGS": " ".join(plan.tags),
        "CACHEPORT_BUILDX_ARGS": " ".join(buildx_flags(plan)),
    }
    if secret_values(plan):
        raise RenderError("this plan carries a secret (azblob's key), which a dotenv artifact would publish to "
                          "everyone who can read the pipeline; use `cacheport build`, or $(cacheport args) in the job")
    for entry in (*plan.imports, *plan.exports):
        if _UNSAFE_WORD.search(entry.format()):
            raise RenderError(f"{entry.format()!r} contains whitespace or a glob character; use --format json")
    return "".join(f"{name}={value}\n" for name, value in values.items())


def _trust_lines(ctx: Any) -> list[str]:
    """Which trust rule decided, and why; the event and protection it saw."""
    if ctx.trust is None:
        return []
    seen = ", ".join(part for part in (
        f"event {ctx.event}" if ctx.event else "",
        f"tag {ctx.tag}" if ctx.tag else "",
        {True: "protected ref", False: "unprotected ref", None: ""}[ctx.protected],
    ) if part)
    mode = "signed" if ctx.trust.signed else ctx.trust.mode
    return [f"trust:    rule {ctx.trust.rule} (trust = {mode})" + (f"; {seen}" if seen else ""),
            f"          {ctx.trust.reason}"]


def _signatures(plan: Plan) -> dict[str, Any] | None:
    """Under ``trust = "signed"``: whether this job verifies its imports, with which keys, and signs with what."""
    if plan.context.trust is None or not plan.context.trust.signed:
        return None
    from cacheport.signing import policy

    found = policy(plan)
    if found is None:
        return None
    doc: dict[str, Any] = {"verifies": found.protected, "signing": "key" if found.keyless is None else "keyless",
                           "keys": [s.key_id for s in found.signers], "key_env": found.key_env,
                           "max_age_days": found.max_age.days if found.max_age else None}
    if found.keyless is not None:
        doc.update(identity=str(found.keyless.identity), trusted_root=found.keyless.roots_from,
                   fulcio_url=found.keyless.fulcio_url, token_env=found.keyless.token_env)
    return doc


#: Settings that matter only under another one's value, shown by ``explain`` only then (or when set by hand).
_ONLY_UNDER = {
    **dict.fromkeys(("signers", "signing-key-env", "signed-max-age", "signing"), ("trust", "signed")),
    **dict.fromkeys(("signer-identity", "trusted-root", "fulcio-url", "id-token-env"), ("signing", "keyless")),
    **dict.fromkeys(("history-keep", "history-dir"), ("history", "on")),
    **dict.fromkeys(("mounts.helper-image", "mounts.max-size", "mounts.max-total"), ("mounts.enabled", True)),
}


def _applies(shown: ShownSetting, settings: Sequence[ShownSetting]) -> bool:
    """Whether ``explain`` lists a setting: always when it was set, else when the setting it serves is in force."""
    under = _ONLY_UNDER.get(shown.name)
    if under is None or shown.setting.source.level != "default":
        return True
    name, value = under
    return any(s.name == name and s.setting.value == value for s in settings)


def explain(plan: Plan) -> str:
    """The plan for a person: context, every setting with its source, the entries, and warnings."""
    ctx = plan.context
    trust = "trusted" if ctx.trusted else "untrusted: no exports"
    lines_ = [
        f"context:  {ctx.provider}, project {ctx.project}",
        f"          branch {ctx.branch or '(unknown)'}, MR/PR target {ctx.target_branch or '-'}, "
        f"default branch {ctx.default_branch or '(unknown)'}; {trust}",
        *_trust_lines(ctx),
        f"backend:  {plan.backend}"
        + (f" (migrating from {plan.migration.old}: {plan.migration.phase})" if plan.migration else ""),
        "settings:",
    ]
    shown = []
    for s in plan.settings:
        if not _applies(s, plan.settings):
            continue
        value = s.setting.value
        text = "(unset)" if value is None else (REDACTED if s.secret else json.dumps(value, ensure_ascii=False))
        shown.append((s.name, text, s.setting.source.detail))
    name_w = max((len(n) for n, _, _ in shown), default=0)
    value_w = max((len(t) for _, t, _ in shown), default=0)
    lines_ += [f"  {n.ljust(name_w)}  {t.ljust(value_w)}  ← {src}" for n, t, src in shown]
    for title, entries in (("imports (in order):", plan.imports), ("exports:", plan.exports)):
        lines_.append(title)
        lines_ += [f"  {i}. {e.format(redact=plan.secret_attrs)}" for i, e in enumerate(entries, 1)] or ["  (none)"]
    signatures = _signatures(plan)
    if signatures is not None:
        keys = ", ".join(f"ed25519 {k}" for k in signatures["keys"])
        signing = f"with ${signatures['key_env']}"
        if signatures["signing"] == "keyless":
            keys = (f"keyless: a certificate chaining to {signatures['trusted_root']}, for "
                    f"{signatures['identity']}")
            signing = (f"keyless, with a certificate from {signatures['fulcio_url']} for this job's OIDC token "
                       f"(${signatures['token_env']}, or GitHub Actions')")
        lines_.append("signatures:")
        lines_ += ([f"  imports: each verified before the build ({keys}), then imported by digest; "
                    "unsigned or wrongly signed ones are left out",
                    f"  exports: signed {signing} after the build",
                    "  cache mounts: the same: each <name>.mounts verified, then restored by digest; saved ones "
                    "signed"]
                   if signatures["verifies"] else
                   ["  not a protected pipeline: imports are read unverified, nothing is signed "
                    f"(protected pipelines verify with {keys})"])
    if plan.tags:
        lines_.append("image tags to push (the cache lives in them):")
        lines_ += [f"  {t}" for t in plan.tags]
    moves = [s for s in plan.swaps if not s.replace]
    if moves:
        lines_.append("before the build, once (where earlier versions kept this cache):")
        lines_ += [f"  move {s.new} to {s.current}, if it is there and the new place holds none" for s in moves]
    if len(moves) < len(plan.swaps):
        lines_.append("after a successful build:")
        lines_ += [f"  move {s.new} into place as {s.current}" for s in plan.swaps if s.replace]
    if plan.warnings:
        lines_.append("warnings:")
        lines_ += [f"  ! {w}" for w in plan.warnings]
    return "\n".join(lines_) + "\n"
