"""The trust model: which jobs write which caches, from real CI variables and event payloads."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from cacheport_builtins import contexts
from hypothesis import given, settings
from hypothesis import strategies as st

from cacheport.config import load_config
from cacheport.context import Context
from cacheport.errors import ConfigError
from cacheport.kit import cache_names
from cacheport.plan import build_plan
from cacheport.plugins import Plugins
from cacheport.refs import slug
from cacheport.render import as_dict, explain
from cacheport.trust import RULES, UNPROTECTED, decide, parse_events


def github(tmp_path: Path, event_name: str, payload: dict[str, object], **env: str) -> Context:
    path = tmp_path / f"{event_name}.json"
    path.write_text(json.dumps({"repository": {"default_branch": "main", "full_name": "org/app"}, **payload}))
    base = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "org/app", "GITHUB_EVENT_NAME": event_name,
            "GITHUB_EVENT_PATH": str(path), "GITHUB_JOB": "build"}
    ctx = contexts.github({**base, **env}, tmp_path)
    assert ctx is not None
    return ctx


def on_branch(branch: str, protected: bool = False) -> dict[str, str]:
    return {"GITHUB_REF": f"refs/heads/{branch}", "GITHUB_REF_NAME": branch, "GITHUB_REF_TYPE": "branch",
            "GITHUB_REF_PROTECTED": str(protected).lower()}


def pull(head_repo: str, number: int = 7, base: str = "main") -> dict[str, object]:
    return {"number": number, "pull_request": {"number": number, "head": {"ref": "fix", "repo": {"full_name": head_repo}},
                                               "base": {"ref": base, "repo": {"full_name": "org/app"}}}}


PR_ENV = {"GITHUB_REF": "refs/pull/7/merge", "GITHUB_REF_NAME": "7/merge", "GITHUB_HEAD_REF": "fix",
          "GITHUB_BASE_REF": "main", "GITHUB_REF_PROTECTED": "false"}


def writes_shared(ctx: Context) -> bool:
    """May the job write a cache every branch shares, by the decision in its context."""
    assert ctx.trust is not None
    return ctx.trust.writes_shared


def names(ctx: Context, mode: str | None = None, events: str = "", key: str | None = None) -> tuple[tuple[str, ...], str | None]:
    decided = attrs.evolve(ctx, trust=decide(ctx, mode, parse_events(events)))
    found = cache_names(decided, key)
    return found.imports, found.export


# --- GitHub events --------------------------------------------------------------------------------------------


def test_push_to_a_branch_writes_it(tmp_path: Path) -> None:
    ctx = github(tmp_path, "push", {"pusher": {"name": "octocat"}, "ref": "refs/heads/dev"}, **on_branch("dev"))
    assert names(ctx) == (("dev", "main"), "dev")
    assert decide(ctx).rule == "github:push"


@pytest.mark.parametrize("event", ["schedule", "workflow_dispatch"])
def test_schedules_and_manual_runs_on_a_branch_write_it(tmp_path: Path, event: str) -> None:
    ctx = github(tmp_path, event, {}, **on_branch("main", protected=True))
    assert names(ctx) == (("main",), "main")


def test_pull_request_from_the_same_repository_writes_its_head_branch(tmp_path: Path) -> None:
    ctx = github(tmp_path, "pull_request", pull("org/app"), **PR_ENV)
    assert names(ctx) == (("fix", "main"), "fix")


def test_pull_request_from_a_fork_reads_only_whatever_is_opted_in(tmp_path: Path) -> None:
    for event in ("pull_request", "pull_request_target"):
        ctx = github(tmp_path, event, pull("someone/app"), **PR_ENV)
        assert names(ctx, events=event) == (("fix", "main"), None)
        assert decide(ctx).rule == "github:fork"


def test_pull_request_target_reads_only_unless_opted_in(tmp_path: Path) -> None:
    # It runs in the base branch's context: GITHUB_REF is the base, with the base's protection.
    ctx = github(tmp_path, "pull_request_target", pull("org/app"), **{**PR_ENV, **on_branch("main", True),
                                                                     "GITHUB_HEAD_REF": "fix"})
    assert names(ctx) == (("fix", "main"), None)
    assert names(ctx, events="pull_request_target") == (("fix", "main"), "fix")
    # The base's protection does not vouch for the pull request's code.
    assert names(ctx, "protected", "pull_request_target") == ((f"{UNPROTECTED}fix", "fix", "main"),
                                                              f"{UNPROTECTED}fix")


def test_issue_comment_on_a_pull_request_reads_only_unless_opted_in(tmp_path: Path) -> None:
    payload = {"issue": {"number": 7, "pull_request": {"url": "https://api.github.com/repos/org/app/pulls/7"}},
               "comment": {"body": "/build"}}
    ctx = github(tmp_path, "issue_comment", payload, **on_branch("main", protected=True))
    assert names(ctx) == (("main",), None)
    assert "trust-events" in decide(ctx).reason
    assert names(ctx, events="issue_comment") == (("main",), "main")
    assert names(ctx, "protected", "issue_comment") == ((f"{UNPROTECTED}main", "main"), f"{UNPROTECTED}main")


def test_workflow_run_reads_only(tmp_path: Path) -> None:
    payload = {"workflow_run": {"head_branch": "fix", "event": "pull_request"}}
    ctx = github(tmp_path, "workflow_run", payload, **on_branch("main", protected=True))
    assert names(ctx) == (("main",), None)


def test_merge_group_imports_the_base_and_writes_nothing_unless_opted_in(tmp_path: Path) -> None:
    queue = "gh-readonly-queue/main/pr-7-0123456789abcdef0123456789abcdef01234567"
    payload = {"merge_group": {"head_ref": f"refs/heads/{queue}", "base_ref": "refs/heads/main",
                               "head_sha": "0" * 40, "base_sha": "1" * 40}}
    ctx = github(tmp_path, "merge_group", payload, **on_branch(queue))
    assert ctx.target_branch == "main"
    assert names(ctx) == (("main",), None)
    assert names(ctx, events="merge_group") == (("main",), "main")


@pytest.mark.parametrize("event", ["push", "release", "workflow_dispatch"])
def test_tags_and_releases_import_only(tmp_path: Path, event: str) -> None:
    env = {"GITHUB_REF": "refs/tags/v1.0", "GITHUB_REF_NAME": "v1.0", "GITHUB_REF_TYPE": "tag",
           "GITHUB_REF_PROTECTED": "true"}
    ctx = github(tmp_path, event, {"release": {"tag_name": "v1.0"}} if event == "release" else {}, **env)
    assert names(ctx) == (("main",), None)
    assert decide(ctx).mode == "protected"  # protected builds read only protected caches, by default for tags
    assert not writes_shared(attrs.evolve(ctx, trust=decide(ctx)))


def test_any_other_event_reads_only_unless_opted_in(tmp_path: Path) -> None:
    ctx = github(tmp_path, "repository_dispatch", {"action": "build"}, **on_branch("main", True))
    assert names(ctx) == (("main",), None)
    assert names(ctx, events="repository_dispatch") == (("main",), "main")


def test_a_job_without_an_event_name_keeps_todays_behaviour(tmp_path: Path) -> None:
    ctx = github(tmp_path, "push", {}, **on_branch("dev"))
    ctx = attrs.evolve(ctx, event=None)
    assert names(ctx) == (("dev", "main"), "dev")


def test_github_reports_the_event_the_protection_and_the_tag(tmp_path: Path) -> None:
    push = github(tmp_path, "push", {}, **on_branch("main", protected=True))
    assert (push.event, push.protected, push.tag) == ("push", True, None)
    tag = github(tmp_path, "release", {}, GITHUB_REF="refs/tags/v2", GITHUB_REF_NAME="v2", GITHUB_REF_TYPE="tag")
    assert (tag.event, tag.protected, tag.tag, tag.branch) == ("release", None, "v2", None)


# --- GitLab pipelines -----------------------------------------------------------------------------------------

GITLAB = {"GITLAB_CI": "true", "CI_PROJECT_PATH": "group/app", "CI_REGISTRY_IMAGE": "registry.example.com/group/app",
          "CI_DEFAULT_BRANCH": "main", "CI_JOB_NAME": "build", "CI_PROJECT_ID": "12"}


def gitlab(**env: str) -> Context:
    ctx = contexts.gitlab({**GITLAB, **env}, Path("."))
    assert ctx is not None
    return ctx


def branch_pipeline(branch: str, source: str = "push", protected: bool = False) -> Context:
    return gitlab(CI_PIPELINE_SOURCE=source, CI_COMMIT_BRANCH=branch, CI_COMMIT_REF_NAME=branch,
                  CI_COMMIT_REF_PROTECTED=str(protected).lower())


def merge_request(kind: str, source_project: str = "12") -> Context:
    return gitlab(CI_PIPELINE_SOURCE="merge_request_event", CI_MERGE_REQUEST_IID="3",
                  CI_MERGE_REQUEST_EVENT_TYPE=kind, CI_MERGE_REQUEST_SOURCE_BRANCH_NAME="feat",
                  CI_MERGE_REQUEST_TARGET_BRANCH_NAME="develop", CI_MERGE_REQUEST_SOURCE_PROJECT_ID=source_project,
                  CI_MERGE_REQUEST_PROJECT_ID="12", CI_COMMIT_REF_NAME="feat", CI_COMMIT_REF_PROTECTED="false")


@pytest.mark.parametrize("source", ["push", "web", "api", "schedule", "trigger", "pipeline", "parent_pipeline"])
def test_gitlab_branch_pipelines_write_their_branch(source: str) -> None:
    assert names(branch_pipeline("dev", source)) == (("dev", "main"), "dev")


def test_gitlab_reports_the_pipeline_source_and_the_protection() -> None:
    ctx = branch_pipeline("main", "schedule", protected=True)
    assert (ctx.event, ctx.protected, ctx.tag) == ("schedule", True, None)
    assert (merge_request("merge_train").event, merge_request("detached").event) == ("merge_train",
                                                                                     "merge_request_event")


def test_gitlab_tag_pipelines_import_only() -> None:
    ctx = gitlab(CI_PIPELINE_SOURCE="push", CI_COMMIT_TAG="v1.0", CI_COMMIT_REF_NAME="v1.0",
                 CI_COMMIT_REF_PROTECTED="true")
    assert names(ctx) == (("main",), None)
    assert decide(ctx).rule == "gitlab:tag"


@pytest.mark.parametrize("kind", ["detached", "merged_result"])
def test_gitlab_merge_request_pipelines_write_their_source_branch(kind: str) -> None:
    assert names(merge_request(kind)) == (("feat", "develop", "main"), "feat")


def test_gitlab_merge_trains_import_the_target_and_write_nothing_unless_opted_in() -> None:
    ctx = merge_request("merge_train")
    assert names(ctx) == (("develop", "main"), None)
    assert names(ctx, events="merge_train") == (("develop", "main"), "develop")


def test_gitlab_merge_requests_from_forks_read_only() -> None:
    ctx = merge_request("merged_result", source_project="999")
    assert names(ctx, events="merge_request_event,merge_train") == (("feat", "develop", "main"), None)


def test_gitlab_child_pipeline_of_a_merge_request_follows_the_merge_request() -> None:
    ctx = merge_request("detached")
    child = gitlab(CI_PIPELINE_SOURCE="parent_pipeline", CI_MERGE_REQUEST_IID="3",
                   CI_MERGE_REQUEST_SOURCE_BRANCH_NAME="feat", CI_MERGE_REQUEST_TARGET_BRANCH_NAME="develop")
    assert decide(child).rule == decide(ctx).rule == "gitlab:merge_request"


def test_gitlab_external_pull_requests_from_forks_read_only() -> None:
    env = {"CI_PIPELINE_SOURCE": "external_pull_request_event", "CI_EXTERNAL_PULL_REQUEST_IID": "4",
           "CI_COMMIT_BRANCH": "fix", "CI_EXTERNAL_PULL_REQUEST_TARGET_BRANCH_NAME": "main",
           "CI_EXTERNAL_PULL_REQUEST_SOURCE_REPOSITORY": "someone/app",
           "CI_EXTERNAL_PULL_REQUEST_TARGET_REPOSITORY": "org/app"}
    assert names(gitlab(**env)) == (("fix", "main"), None)
    same = {**env, "CI_EXTERNAL_PULL_REQUEST_SOURCE_REPOSITORY": "org/app"}
    assert names(gitlab(**same)) == (("fix", "main"), "fix")


# --- protected caches -----------------------------------------------------------------------------------------


def test_protected_mode_keeps_unprotected_pipelines_off_every_branch_name() -> None:
    # release/1.0 is protected; an unprotected branch release-1.0 has the same slug.
    protected = branch_pipeline("release/1.0", protected=True)
    impostor = branch_pipeline("release-1.0", protected=False)
    assert names(protected, "protected") == (("release-1-0", "main"), "release-1-0")
    imports, export = names(impostor, "protected")
    assert export == f"{UNPROTECTED}release-1-0"
    assert imports == (f"{UNPROTECTED}release-1-0", "release-1-0", "main")
    assert names(impostor) == (("release-1-0", "main"), "release-1-0")  # trust = "branch" cannot know


def test_a_branch_never_writes_onto_a_known_branch_with_the_same_slug() -> None:
    assert names(branch_pipeline("Main"))[1] is None
    mr = merge_request("detached")
    assert names(attrs.evolve(mr, branch="Develop"))[1] is None


def test_an_unprotected_default_branch_under_protected_mode_gets_no_plain_name() -> None:
    assert names(branch_pipeline("main", protected=False), "protected") == (
        (f"{UNPROTECTED}main", "main"), f"{UNPROTECTED}main")


def test_fixed_names_are_written_only_by_protected_pipelines_under_protected_mode() -> None:
    for ctx, mode, expected in [(branch_pipeline("dev"), None, True), (branch_pipeline("dev"), "protected", False),
                                (branch_pipeline("main", protected=True), "protected", True),
                                (merge_request("merge_train"), None, False)]:
        assert writes_shared(attrs.evolve(ctx, trust=decide(ctx, mode))) is expected


BRANCHES = st.sampled_from(["main", "Main", "main-", "release/1.0", "release-1.0", "feature/x", "feature-x",
                            "amd64-main", "latest", "unprotected_main", "x" * 70])
EVENTS = st.sampled_from(sorted({e for r in RULES for e in r.events} | {"repository_dispatch", "release"}))
jobs = st.builds(
    Context,
    provider=st.sampled_from(["github", "gitlab", "local", "buildkite"]),
    project=st.just("group/app"),
    branch=st.none() | BRANCHES,
    default_branch=st.none() | BRANCHES,
    target_branch=st.none() | BRANCHES,
    trusted=st.booleans(),
    event=st.none() | EVENTS,
    protected=st.none() | st.booleans(),
    tag=st.none() | st.just("v1.0"),
)
KEYS = st.none() | st.sampled_from(["amd64", "main"])
OPT_INS = st.frozensets(EVENTS, max_size=4)


def _decided(ctx: Context, mode: str | None, opt_ins: frozenset[str]) -> Context:
    return attrs.evolve(ctx, trust=decide(ctx, mode, opt_ins))


@settings(max_examples=400)
@given(writer=jobs, reader=jobs, writer_key=KEYS, reader_key=KEYS, opt_ins=OPT_INS)
def test_no_untrusted_or_unprotected_job_writes_what_a_protected_job_imports(
        writer: Context, reader: Context, writer_key: str | None, reader_key: str | None,
        opt_ins: frozenset[str]) -> None:
    w, r = _decided(writer, "protected", opt_ins), _decided(reader, "protected", opt_ins)
    assert w.trust is not None and r.trust is not None
    if not w.trusted:
        assert cache_names(w, writer_key).export is None and not writes_shared(w)
    if r.trust.protected and not w.trust.protected:
        assert cache_names(w, writer_key).export not in cache_names(r, reader_key).imports
        assert not writes_shared(w)


@given(job=jobs, key=KEYS, opt_ins=OPT_INS, mode=st.sampled_from([None, "branch", "protected"]))
def test_forks_tags_and_read_only_events_never_write(job: Context, key: str | None, opt_ins: frozenset[str],
                                                    mode: str | None) -> None:
    ctx = _decided(job, mode, opt_ins)
    assert ctx.trust is not None
    rule = next(r for r in RULES if r.id == ctx.trust.rule)
    opted = rule.opt_in and job.event in opt_ins
    if not job.trusted or rule.when == "tag" or (rule.export == "none" and not opted):
        assert cache_names(ctx, key).export is None and not writes_shared(ctx)


@given(job=jobs, key=KEYS)
def test_a_job_writes_only_its_own_branch_or_an_opted_in_base(job: Context, key: str | None) -> None:
    from cacheport.refs import branch_tag

    ctx = _decided(job, "branch", frozenset())
    export = cache_names(ctx, key).export
    if export is not None and job.branch:
        assert export == branch_tag(job.branch, key)
        for other in (job.default_branch, job.target_branch):
            if other and other != job.branch:
                assert export != branch_tag(other, key)


# --- settings, plan and explain -------------------------------------------------------------------------------


def plan_for(tmp_path: Path, builtins: Plugins, ctx: Context, toml: str = "", env: dict[str, str] | None = None):
    (tmp_path / "cacheport.toml").write_text('backend = "registry"\n' + toml + '[registry]\nref = "r.example/app/cache"\n')
    return build_plan(load_config(tmp_path, env or {}), ctx, builtins)


def test_explain_says_which_rule_decided_and_why(tmp_path: Path, builtins: Plugins) -> None:
    payload = {"issue": {"number": 7, "pull_request": {"url": "u"}}}
    ctx = github(tmp_path, "issue_comment", payload, **on_branch("main", protected=True))
    plan = plan_for(tmp_path, builtins, ctx)
    assert plan.exports == ()
    text = explain(plan)
    assert "rule github:issue_comment (trust = branch)" in text
    assert "event issue_comment, protected ref" in text and 'trust-events = "issue_comment"' in text
    assert "not exporting cache: the trust rule github:issue_comment lets it read only" in plan.warnings
    assert as_dict(plan)["trust"]["rule"] == "github:issue_comment"
    opted = plan_for(tmp_path, builtins, ctx, 'trust-events = "issue_comment"\n')
    assert [e.get("ref") for e in opted.exports] == ["r.example/app/cache:main"]


def test_trust_settings_come_from_the_environment_too(tmp_path: Path, builtins: Plugins) -> None:
    ctx = branch_pipeline("dev")
    plan = plan_for(tmp_path, builtins, ctx, env={"CACHEPORT_TRUST": "protected"})
    assert [e.get("ref") for e in plan.exports] == [f"r.example/app/cache:{UNPROTECTED}dev"]
    assert plan.context.trust is not None and plan.context.trust.mode == "protected"


def test_bad_trust_settings_name_their_source(tmp_path: Path, builtins: Plugins) -> None:
    with pytest.raises(ConfigError, match=r"cacheport.toml trust = 'strict': allowed values are branch, protected"):
        plan_for(tmp_path, builtins, branch_pipeline("dev"), 'trust = "strict"\n')
    with pytest.raises(ConfigError, match=r"CACHEPORT_TRUST_EVENTS = 'issue comment'"):
        plan_for(tmp_path, builtins, branch_pipeline("dev"), env={"CACHEPORT_TRUST_EVENTS": "issue comment"})


def test_unknown_protection_under_protected_mode_is_said(tmp_path: Path, builtins: Plugins) -> None:
    ctx = attrs.evolve(branch_pipeline("dev"), protected=None)
    plan = plan_for(tmp_path, builtins, ctx, 'trust = "protected"\n')
    assert any("does not say whether this ref is protected" in w for w in plan.warnings)


# --- one decision, made by the plan and followed on every path ------------------------------------------------

#: Every path that once decided again with the default settings (``context.trust or decide(context)``), as a
#: backend and its settings, and the attribute holding the name its export writes.
PATHS = {
    "registry, a tag per branch": ('backend = "registry"\n[registry]\nref = "r.example/app/cache"\n', "ref"),
    "registry, one fixed ref": ('backend = "registry"\n[registry]\nref = "r.example/app/cache:shared"\n', "ref"),
    "gha, a scope per branch": ('backend = "gha"\n', "scope"),
    "gha, one fixed scope": ('backend = "gha"\n[gha]\nscope = "shared"\n', "scope"),
    "s3, a name per branch": ('backend = "s3"\n[s3]\nbucket = "b"\nregion = "r"\n', "name"),
    "s3, one fixed name": ('backend = "s3"\n[s3]\nbucket = "b"\nregion = "r"\nname = "shared"\n', "name"),
    # A backend written against the 0.1 docs: cache_names(request.context, request.key).
    "a plugin's cache_names": ('backend = "shared-dir"\n[shared-dir]\nroot = "/srv/cache"\n', "dest"),
}
NO_BRANCH_GITLAB = Context("gitlab", "group/app", event="push", protected=False)
NO_BRANCH_COMMENT = Context("github", "org/app", event="issue_comment", protected=True)


def _comment_on_main(tmp_path: Path) -> Context:
    return github(tmp_path, "issue_comment", {"issue": {"number": 7, "pull_request": {"url": "u"}}},
                  **on_branch("main", protected=True))


def _export(tmp_path: Path, ctx: Context, path: str, settings: str) -> str | None:
    """The name the plan's export writes on one path (a registry's tag, a directory's last part, gha's scope,
    s3's name), with no deprecated fallback allowed on the way."""
    import warnings

    import cacheport_example
    from cacheport_builtins import gha, registry, s3

    toml, attr = PATHS[path]
    (tmp_path / "cacheport.toml").write_text(settings + toml)
    plugins = Plugins.from_modules([registry, gha, s3, contexts, cacheport_example])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        plan = build_plan(load_config(tmp_path, {}), ctx, plugins)
    assert len(plan.exports) <= 1
    if not plan.exports:
        return None
    value = str(plan.exports[0].get(attr))
    return value.rsplit(":", 1)[-1] if attr == "ref" else value.rsplit("/", 1)[-1]


def _named(path: str, ctx: Context, name: str) -> str:
    """What a branch's cache is called on a path: gha and s3 put the project first."""
    return f"{slug(ctx.project)}-{name}" if path.startswith(("gha", "s3")) else name


@pytest.mark.parametrize("path", list(PATHS))
def test_a_configured_trust_mode_is_honoured_on_every_path(tmp_path: Path, path: str) -> None:
    fixed = "fixed" in path
    dev, protected = branch_pipeline("dev"), 'trust = "protected"\n'
    # trust = "protected": an unprotected pipeline writes only its own marked cache, never a shared one;
    # the default rules (trust = "branch") would have let it write the branch's own name, or the shared one.
    if fixed:
        assert _export(tmp_path, dev, path, protected) is None
        assert _export(tmp_path, dev, path, "") == "shared"
    else:
        assert _export(tmp_path, dev, path, protected) == _named(path, dev, f"{UNPROTECTED}dev")
        assert _export(tmp_path, dev, path, "") == _named(path, dev, "dev")
        # No branch known at all: the one rule's `latest`, marked too.
        assert _export(tmp_path, NO_BRANCH_GITLAB, path, protected) == _named(path, NO_BRANCH_GITLAB,
                                                                             f"{UNPROTECTED}latest")
        assert _export(tmp_path, NO_BRANCH_GITLAB, path, "") == _named(path, NO_BRANCH_GITLAB, "latest")


@pytest.mark.parametrize("path", list(PATHS))
def test_configured_trust_events_are_honoured_on_every_path(tmp_path: Path, path: str) -> None:
    fixed = "fixed" in path
    comment, opted = _comment_on_main(tmp_path), 'trust-events = "issue_comment"\n'
    assert _export(tmp_path, comment, path, opted) == ("shared" if fixed else _named(path, comment, "main"))
    assert _export(tmp_path, comment, path, "") is None  # what the default rules decide
    if not fixed:
        assert _export(tmp_path, NO_BRANCH_COMMENT, path, opted) == _named(path, NO_BRANCH_COMMENT, "latest")
        assert _export(tmp_path, NO_BRANCH_COMMENT, path, "") is None


def test_seed_follows_the_configured_trust(tmp_path: Path, builtins: Plugins) -> None:
    from cacheport.cli.seed import _check_may_write
    from cacheport.errors import CacheportError

    protected = plan_for(tmp_path, builtins, branch_pipeline("dev"), 'trust = "protected"\n')
    with pytest.raises(CacheportError, match="not seeding from this job"):
        _check_may_write(protected.context, dry_run=False)
    _check_may_write(protected.context, dry_run=True)
    opted = plan_for(tmp_path, builtins, _comment_on_main(tmp_path), 'trust-events = "issue_comment"\n')
    _check_may_write(opted.context, dry_run=False)
    with pytest.raises(CacheportError, match="not seeding from this job"):
        _check_may_write(plan_for(tmp_path, builtins, _comment_on_main(tmp_path)).context, dry_run=False)


def test_the_request_carries_the_plan_s_decision(tmp_path: Path, builtins: Plugins) -> None:
    plan = plan_for(tmp_path, builtins, branch_pipeline("dev"), 'trust = "protected"\ntrust-events = "push"\n')
    assert plan.request is not None and plan.request.trust is plan.context.trust
    assert (plan.request.trust.mode, plan.request.trust.writes, plan.request.trust.writes_shared) == (
        "protected", True, False)
    with pytest.raises(ValueError, match="carries no trust decision"):
        _ = attrs.evolve(plan.request, context=branch_pipeline("dev")).trust


def test_a_hand_made_context_still_works_and_says_it_is_deprecated() -> None:
    ctx = branch_pipeline("dev")
    with pytest.warns(DeprecationWarning, match="ignoring the configured trust and trust-events"):
        found = cache_names(ctx)
    assert (found.imports, found.export) == names(ctx)
    from cacheport.kit import may_write_shared

    with pytest.warns(DeprecationWarning, match="request.trust.writes_shared"):
        assert may_write_shared(attrs.evolve(ctx, trust=decide(ctx, "protected"))) is False
