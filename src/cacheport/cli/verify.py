"""``cacheport verify``: a cache's signature checked by hand (``trust = "signed"``), a signing key's public half,
and signing what a build run with ``cacheport args`` exported."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cacheport.cli.common import format_option, plan_options
from cacheport.cli.output import say, table

if TYPE_CHECKING:
    from cacheport.cli.session import Session
    from cacheport.ops.signatures import Verdict
    from cacheport.records import CacheStore, Plan


@click.command("verify", epilog="""\b
Examples:
  cacheport verify                          # the caches this build would import
  cacheport verify main --format json       # the cache (and cache mounts) of branch main
  cacheport verify --public-key             # the public key of $CACHE_SIGNING_KEY, for signers
  docker buildx build $(cacheport args) --metadata-file meta.json . && cacheport verify --sign meta.json
""")
@click.argument("branch", required=False)
@format_option(["text", "json"], "text")
@click.option("--public-key", is_flag=True, help="Print the public key of the private key in signing-key-env's "
              "variable (the value for signers), and nothing else.")
@click.option("--sign", "metadata", type=click.Path(dir_okay=False, path_type=Path), metavar="METADATA_FILE",
              help="Sign the cache a build exported, as buildx's --metadata-file reports it (a protected pipeline "
              "that ran the build with `cacheport args`).")
@plan_options
def command(branch: str | None, fmt: str, public_key: bool, metadata: Path | None, session: Session) -> None:
    """Check the signatures of caches under trust = "signed".

    Without BRANCH, the caches this job would import, in order, then the cache mounts (<name>.mounts) its
    restore would read; with it, that branch's cache and cache mounts in the backend's store (mounts only where
    there are some). Each is resolved to the digest its tag points at now, and passes when a key in signers signed that
    digest, under that name, for this project, within signed-max-age days (under signing = "keyless": a
    certificate chaining to trusted-root, for an identity signer-identity allows; the rule is printed first).
    Exit status 0 when every one passes, 1 otherwise.
    """
    from cacheport.errors import ConfigError
    from cacheport.signing import policy

    plan = session.plan
    if public_key:  # before any policy: what it prints is what signers is set to
        signing = next((s.setting.value for s in plan.settings if s.name == "signing"), None)
        if signing == "keyless":
            raise ConfigError("--public-key: signing = \"keyless\" has no key pair; protected builds accept "
                              "certificates for the identity signer-identity names")
        click.echo(_public_key(plan, session.environ))
        return
    found = policy(plan)
    if found is None:
        raise ConfigError("cacheport verify needs trust = \"signed\" and signers, or signing = \"keyless\" with "
                          "signer-identity and trusted-root (in the config, or --set trust=signed --set signers=KEY)")
    if metadata is not None:
        sys.exit(_sign(plan, metadata, session))
    from cacheport.ops.signatures import Registries, verify_entry, verify_stored

    entries = _entries(plan, branch, session) if branch else [e for e in plan.imports]
    with Registries(plan.logins, session.environ) as registries:
        verdicts = [verify_entry(e, found, plan.logins, session.environ, registries=registries) for e in entries]
    mounts = _mounts(branch, session)
    if mounts is not None:
        verdicts += verify_stored(*mounts, found)
    if fmt == "json":
        click.echo(json.dumps([_doc(v) for v in verdicts], indent=2))
    else:
        rows = [(str(v.entry.get("ref") or v.entry.type), v.digest or "-", "verified" if v.ok else "refused",
                 v.reason) for v in verdicts]
        if found.keyless is not None:
            say(f"identity rule: {found.keyless.identity} (roots: {found.keyless.roots_from})")
        click.echo(table(rows, ("cache", "digest", "signature", "why")) if rows else "no caches to verify")
    sys.exit(0 if verdicts and all(v.ok for v in verdicts) else 1)


def _entries(plan: Plan, branch: str, session: Session) -> list[Any]:
    from cacheport.entry import CacheEntry

    store = session.store()
    insecure = next((e.get("registry.insecure") for e in plan.imports if e.get("registry.insecure")), None)
    return [CacheEntry("registry", {"ref": f"{store.location}:{store.name_for(branch)}",
                                    **({"registry.insecure": insecure} if insecure else {})})]


def _mounts(branch: str | None, session: Session) -> tuple[CacheStore, list[str]] | None:
    """The store and the ``<name>.mounts`` names a protected build would restore cache mounts from (with BRANCH,
    that branch's); None when mounts are off or the backend has no store (nor mounts, then)."""
    from cacheport.errors import ConfigError
    from cacheport.mounts.artifact import mounts_name
    from cacheport.ops.mounts import names_for, settings_of
    from cacheport.ops.mounts_store import chain

    if not settings_of(session.config).enabled:
        return None
    try:
        store = session.store()
    except ConfigError:
        return None
    return store, [mounts_name(store.name_for(branch))] if branch else chain(names_for(session.plan, store).restore)


def _doc(verdict: Verdict) -> dict[str, Any]:
    claim = verdict.claim
    return {"ref": verdict.entry.get("ref"), "type": verdict.entry.type, "digest": verdict.digest or None,
            "verified": verdict.ok, "reason": verdict.reason, "key_id": claim.key_id if claim else None,
            # the signer: a key id, or under signing = "keyless" the certificate's repository@ref
            "signed": claim.signed.strftime("%Y-%m-%dT%H:%M:%SZ") if claim else None}


def _public_key(plan: Plan, environ: Any) -> str:
    import base64

    from cacheport.errors import ConfigError
    from cacheport.signing import key_env_of, load_private_key, public_der

    # signing-key-env alone: the key's public half is asked for before trust = "signed" and signers are set.
    setting = next((s.setting for s in plan.settings if s.name == "signing-key-env"), None)
    key_env = key_env_of(setting) if setting is not None and setting.value else "CACHE_SIGNING_KEY"
    text = environ.get(key_env, "")
    if not text.strip():
        raise ConfigError(f"${key_env} (signing-key-env) is not set")
    return base64.b64encode(public_der(load_private_key(text, key_env))).decode()


def _sign(plan: Plan, metadata: Path, session: Session) -> int:
    from cacheport import report
    from cacheport.errors import ConfigError
    from cacheport.ops.signatures import sign_written, signing_key

    trust = plan.context.trust
    if trust is None or not trust.protected or not plan.exports:
        raise ConfigError("--sign: only a protected pipeline that exports signs its cache; this job "
                          + ("exports nothing" if not plan.exports else "is not a protected pipeline"))
    try:
        doc = json.loads(metadata.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--sign {metadata}: not a buildx metadata file ({exc})") from None
    key = signing_key(plan, session.environ)
    found = report.parse_metadata(doc, plan.imports, plan.exports)
    lines = sign_written(plan, found.exports, key, session.environ)
    if not lines:
        say(f"error: {metadata} names no cache manifest a registry export wrote; nothing signed")
        return 1
    for line in lines:
        say(line)
    return 1 if any(line.startswith("warning:") for line in lines) else 0
