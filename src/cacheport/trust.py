"""Who may write a cache that protected builds read: the one rule table, and the decision for a job.

Every CI event and pipeline type is one row of :data:`RULES`. :func:`decide` picks the first row that matches
a job's context and turns it into a :class:`~cacheport.records.Trust`; the names that follow from it (and the
guard against slug collisions) are in :func:`cacheport.refs.branch_names`. ``docs/trust.md`` is generated
from :data:`RULES` by ``scripts/gen-trust-docs``. Pure: no I/O, no environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

from cacheport.errors import ConfigError
from cacheport.records import Context, Trust

#: ``trust = "branch"``: every job that may write writes its own branch's cache. ``trust = "protected"``:
#: only protected pipelines write the names protected pipelines read; every other job writes its own
#: unprotected cache, named with :data:`UNPROTECTED`.
#: ``trust = "signed"``: the names of ``protected``, and signatures on top (``Trust.signed``).
MODES = ("branch", "protected", "signed")
#: Marks a cache written by a job that is not a protected pipeline, under ``trust = "protected"``. Slugs
#: never contain ``_``, so no branch's name can ever equal a marked one.
UNPROTECTED = "unprotected_"
_EVENT = re.compile(r"[a-z][a-z0-9_]*\Z")

IMPORTS = {
    "chain": "its branch, the merge/pull request target, the default branch",
    "base": "the target (base) branch, then the default branch",
    "default": "the default branch only",
}
EXPORTS = {"branch": "its own branch", "base": "the target (base) branch", "none": "nothing"}


@attrs.frozen
class Rule:
    """One row of the trust table: which jobs it is for, what they import, and what they may write.

    Attributes:
        id: ``provider:name``, shown by ``explain``.
        provider: the context provider (``github``, ``gitlab``), or ``*`` for any.
        events: the events it is for; empty for any event (``when`` narrows it).
        when: ``fork`` (a merge/pull request from a fork), ``tag`` (a tag or release), ``reported`` (any event
            the provider reports), or ``any``.
        imports: ``chain``, ``base`` or ``default`` (see :data:`IMPORTS`).
        export: ``branch``, ``base`` or ``none``.
        opt_in: what naming the event in ``trust-events`` lets it write (``branch``, ``base``), or ``""``.
        code_of_ref: the code built is the ref's own, so the ref's protection speaks for it. False where a
            job runs in a protected ref's context but may build other code (``issue_comment``,
            ``pull_request_target``, ``workflow_run``).
        summary: what such a job is, for people.
    """

    id: str
    provider: str
    events: tuple[str, ...]
    when: str
    imports: str
    export: str
    opt_in: str
    code_of_ref: bool
    summary: str

    def matches(self, context: Context) -> bool:
        if self.provider not in ("*", context.provider):
            return False
        if self.when == "fork":
            return not context.trusted
        if self.when == "tag":
            return context.tag is not None
        if self.events:
            return context.event in self.events
        return self.when == "any" or context.event is not None


def _rule(id: str, events: Iterable[str], when: str, imports: str, export: str, opt_in: str, code_of_ref: bool,
          summary: str) -> Rule:
    return Rule(id, id.partition(":")[0], tuple(events), when, imports, export, opt_in, code_of_ref, summary)


#: The trust table, first match wins. Keep it in this order: forks, then tags, then events.
RULES: tuple[Rule, ...] = (
    _rule("github:fork", (), "fork", "chain", "none", "", False,
          "A pull request from a fork (pull_request or pull_request_target): a stranger's code."),
    _rule("github:tag", (), "tag", "default", "none", "", True,
          "A tag or a release (any event on refs/tags/)."),
    _rule("github:push", ("push", "schedule", "workflow_dispatch"), "any", "chain", "branch", "", True,
          "A push, a schedule or a manual run on a branch: that branch's own code."),
    _rule("github:pull_request", ("pull_request",), "any", "chain", "branch", "", False,
          "A pull request from the same repository: its head branch's code."),
    _rule("github:pull_request_target", ("pull_request_target",), "any", "chain", "none", "branch", False,
          "pull_request_target: runs with the base repository's secrets and often checks out the pull "
          "request's code."),
    _rule("github:merge_group", ("merge_group",), "any", "base", "none", "base", True,
          "A merge queue run on a throwaway gh-readonly-queue branch that nothing reads."),
    _rule("github:issue_comment", ("issue_comment",), "any", "chain", "none", "branch", False,
          "issue_comment: runs in the default branch's context, usually to build a pull request's code."),
    _rule("github:workflow_run", ("workflow_run",), "any", "chain", "none", "branch", False,
          "workflow_run: runs in the default branch's context after another workflow, often on a pull "
          "request's artifacts."),
    _rule("github:other", (), "reported", "chain", "none", "branch", False,
          "Any other event (repository_dispatch, deployment, ...): not known to build only trusted code."),
    _rule("gitlab:fork", (), "fork", "chain", "none", "", False,
          "A merge request pipeline from a fork, run in the parent project: a stranger's code."),
    _rule("gitlab:tag", (), "tag", "default", "none", "", True,
          "A tag pipeline."),
    _rule("gitlab:merge_train", ("merge_train",), "any", "base", "none", "base", False,
          "A merge train pipeline: the target plus the merge requests queued before it, on a throwaway ref."),
    _rule("gitlab:merge_request", ("merge_request_event",), "any", "chain", "branch", "", False,
          "A merge request pipeline from the same project (detached or merged results): the source "
          "branch's code."),
    _rule("gitlab:external_pull_request", ("external_pull_request_event",), "any", "chain", "branch", "", False,
          "A pull request of an external repository (GitLab CI/CD for GitHub), from the same repository."),
    _rule("gitlab:branch", ("push", "web", "api", "schedule", "trigger", "pipeline", "parent_pipeline", "chat",
                            "webide", "external"), "any", "chain", "branch", "", True,
          "A branch pipeline: a push, the web UI or API, a schedule, a trigger token, or a pipeline triggered "
          "by another pipeline (multi-project, or a parent's child): the branch's own code."),
    _rule("gitlab:other", (), "reported", "chain", "none", "branch", False,
          "Any other pipeline source (security policies, on-demand scans, ...)."),
    _rule("*:fork", (), "fork", "chain", "none", "", False,
          "Another CI's job its context provider marks untrusted."),
    _rule("*:tag", (), "tag", "default", "none", "", True,
          "Another CI's tag build."),
    _rule("*:branch", (), "any", "chain", "branch", "", True,
          "Any other job (a laptop, another CI, a CI that reports no event): its branch's own code."),
)


def parse_events(text: str | None, where: str = "trust-events") -> frozenset[str]:
    """``trust-events``: comma-separated event names (GitHub's events, GitLab's pipeline sources)."""
    names = [part.strip().lower() for part in (text or "").split(",") if part.strip()]
    for name in names:
        if not _EVENT.match(name):
            raise ConfigError(f"{where} = {text!r}: {name!r} is not an event name (comma-separated names such as "
                              "issue_comment,merge_group)")
    return frozenset(names)


def rule_for(context: Context) -> Rule:
    """The first rule of :data:`RULES` that matches the job."""
    return next(rule for rule in RULES if rule.matches(context))


def decide(context: Context, mode: str | None = None, events: frozenset[str] = frozenset()) -> Trust:
    """What this job imports and may write, by the first matching rule.

    ``mode`` is the ``trust`` setting (None: unset, which means ``protected`` for tags and ``branch`` for
    everything else); ``events`` are the ``trust-events`` the user opted in.
    """
    rule = rule_for(context)
    if mode is not None and mode not in MODES:
        raise ConfigError(f"trust = {mode!r}: allowed values are {', '.join(MODES)}")
    signed = mode == "signed"
    mode = "protected" if signed else mode or ("protected" if rule.when == "tag" else "branch")
    opted = bool(rule.opt_in) and context.event in events
    kind = rule.opt_in if opted else rule.export
    writes = kind != "none" and context.trusted
    base = context.target_branch or context.default_branch
    export = (context.branch if kind == "branch" else base) if writes else None
    if rule.imports == "chain":
        imports = context.fallback_branches()
    elif rule.imports == "base":
        imports = tuple(dict.fromkeys(b for b in (context.target_branch, context.default_branch) if b))
    else:
        imports = (context.default_branch,) if context.default_branch else ()
    protected = rule.code_of_ref and context.protected is True
    return Trust(rule.id, _reason(rule, context, kind, writes, opted, mode, protected), mode, imports, export,
                 writes, protected, signed)


def decided(context: Context) -> Trust:
    """The decision the plan put in ``context`` (``context.trust``).

    A context nobody decided for (one a plugin's test made by hand) gets the rules' decision with the default
    settings, which ignores the ``trust`` and ``trust-events`` a user configured. That is deprecated, and
    warns: pass the request's context, or decide first with :func:`decide`.
    """
    if context.trust is not None:
        return context.trust
    import warnings

    warnings.warn("a context without a trust decision: cacheport decides with the default trust settings, "
                  "ignoring the configured trust and trust-events. Pass request.context (the plan decided for "
                  "it), or attrs.evolve(context, trust=cacheport.trust.decide(context, mode, events)); "
                  "deprecated since 0.2", DeprecationWarning, stacklevel=3)
    return decide(context)


def _reason(rule: Rule, context: Context, kind: str, writes: bool, opted: bool, mode: str, protected: bool) -> str:
    if writes:
        what = {"branch": context.branch, "base": context.target_branch or context.default_branch}[kind]
        outcome = f"writes the cache of branch {what!r}" if what else "writes its cache"
        if opted:
            outcome += f" (trust-events names {context.event!r})"
        if mode == "protected" and not protected:
            outcome += (" as an unprotected pipeline: under trust = \"protected\" its own "
                        f"{UNPROTECTED}... cache, which no protected build reads")
    elif rule.when == "fork":
        outcome = "reads only: a fork's code never writes a cache"
    elif rule.when == "tag":
        outcome = "reads only the default branch's cache, writes nothing"
    elif rule.opt_in:
        target = "the target branch's" if rule.opt_in == "base" else "its branch's"
        outcome = f"reads only (trust-events = \"{context.event}\" lets it write {target} cache)"
    else:
        outcome = "reads only"
    return f"{rule.summary} So it {outcome}."


def marked(name: str) -> str:
    """The unprotected twin of a cache name, within a registry tag's 128 characters."""
    return (UNPROTECTED + name)[:128]
