from __future__ import annotations

import json
from pathlib import Path

import pytest
from cacheport_builtins import contexts

from cacheport.context import Context, detect_context
from cacheport.records import ContextProvider

from .conftest import GITLAB_ENV


def test_gitlab_branch_pipeline(tmp_path: Path) -> None:
    ctx = contexts.gitlab(GITLAB_ENV, tmp_path)
    assert ctx == Context(
        provider="gitlab", project="group/app", branch="feature/Login-Form", default_branch="main",
        target_branch=None, trusted=True, job="build", default_backend="gitlab",
        branch_slugs=(("feature/Login-Form", "feature-login-form"),),
    )


def test_gitlab_s_own_slug_is_kept_only_for_the_branch_it_belongs_to(tmp_path: Path) -> None:
    def slugs(**env: str) -> tuple[tuple[str, str], ...]:
        ctx = contexts.gitlab({**GITLAB_ENV, **env}, tmp_path)
        assert ctx is not None
        return ctx.branch_slugs

    assert slugs(CI_COMMIT_BRANCH="deps/bump__v2", CI_COMMIT_REF_NAME="deps/bump__v2",
                 CI_COMMIT_REF_SLUG="deps-bump-v2") == (("deps/bump__v2", "deps-bump-v2"),)
    assert slugs(CI_COMMIT_REF_NAME="other") == ()  # the slug is another ref's
    assert slugs(CI_COMMIT_REF_SLUG="") == ()  # GitLab's slug of a name like ___ is empty
    assert slugs(CI_COMMIT_REF_SLUG="Not A/Slug") == ()  # set by hand to something GitLab never makes
    assert slugs(CI_COMMIT_BRANCH="", CI_COMMIT_TAG="v1.0", CI_COMMIT_REF_NAME="v1.0", CI_COMMIT_REF_SLUG="v1-0") == ()


def test_gitlab_merge_request_from_a_fork_is_untrusted(tmp_path: Path) -> None:
    env = {
        **GITLAB_ENV,
        "CI_COMMIT_BRANCH": "",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "patch-1",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "develop",
        "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "999",
        "CI_MERGE_REQUEST_PROJECT_ID": "12",
    }
    ctx = contexts.gitlab(env, tmp_path)
    assert ctx is not None
    assert (ctx.branch, ctx.target_branch, ctx.trusted) == ("patch-1", "develop", False)


@pytest.mark.parametrize("source, target", [
    ({"CI_MERGE_REQUEST_SOURCE_PROJECT_PATH": "someone/app"}, {"CI_MERGE_REQUEST_PROJECT_PATH": "group/app"}),
    ({"CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "999"}, {"CI_MERGE_REQUEST_PROJECT_ID": "12"}),
])
def test_gitlab_names_a_fork_by_its_project_path_or_its_id(source: dict[str, str], target: dict[str, str],
                                                          tmp_path: Path) -> None:
    mr = {**GITLAB_ENV, "CI_COMMIT_BRANCH": "", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "patch-1",
          "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main"}
    fork = contexts.gitlab({**mr, **source, **target}, tmp_path)
    assert fork is not None and fork.trusted is False
    same = contexts.gitlab({**mr, **target,
                            **{k.replace("CI_MERGE_REQUEST_", "CI_MERGE_REQUEST_SOURCE_"): v
                               for k, v in target.items()}}, tmp_path)
    assert same is not None and same.trusted is True


def test_gitlab_tag_pipeline_has_no_branch(tmp_path: Path) -> None:
    env = {**GITLAB_ENV, "CI_COMMIT_BRANCH": "", "CI_COMMIT_TAG": "v1.0", "CI_COMMIT_REF_NAME": "v1.0"}
    ctx = contexts.gitlab(env, tmp_path)
    assert ctx is not None and ctx.branch is None and ctx.fallback_branches() == ("main",)


def _event(tmp_path: Path, payload: dict[str, object]) -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload))
    return str(path)


def test_github_pull_request_from_fork(tmp_path: Path) -> None:
    event = {
        "pull_request": {"head": {"repo": {"full_name": "someone/app"}}, "base": {"repo": {"full_name": "org/app"}}},
        "repository": {"default_branch": "trunk"},
    }
    env = {
        "GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "org/app", "GITHUB_HEAD_REF": "fix",
        "GITHUB_BASE_REF": "trunk", "GITHUB_REF_NAME": "7/merge", "GITHUB_EVENT_PATH": _event(tmp_path, event),
    }
    ctx = contexts.github(env, tmp_path)
    assert ctx is not None
    assert (ctx.branch, ctx.target_branch, ctx.default_branch, ctx.trusted) == ("fix", "trunk", "trunk", False)


def test_github_push_to_a_branch(tmp_path: Path) -> None:
    env = {
        "GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "org/app", "GITHUB_REF": "refs/heads/dev",
        "GITHUB_REF_NAME": "dev", "GITHUB_REF_TYPE": "branch",
        "GITHUB_EVENT_PATH": _event(tmp_path, {"repository": {"default_branch": "main"}}),
    }
    ctx = contexts.github(env, tmp_path)
    assert ctx is not None
    assert (ctx.branch, ctx.default_branch, ctx.trusted, ctx.default_backend) == ("dev", "main", True, "gha")


def test_local_reads_the_git_branch_without_running_git(tmp_path: Path) -> None:
    repo = tmp_path / "my-app"
    (repo / ".git" / "refs" / "remotes" / "origin").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/topic/x\n")
    (repo / ".git" / "refs" / "remotes" / "origin" / "HEAD").write_text("ref: refs/remotes/origin/main\n")
    sub = repo / "src"
    sub.mkdir()
    ctx = contexts.local({}, sub)
    assert (ctx.project, ctx.branch, ctx.default_branch) == ("my-app", "topic/x", "main")


@pytest.mark.parametrize(("url", "remote"), [
    ("https://user:s3cret@git.example.com:8443/Group/App.git", "git.example.com/Group/App"),
    ("git@GIT.example.com:group/app.git", "git.example.com/group/app"),
    ("ssh://git@git.example.com:2222/group/app/", "git.example.com/group/app"),
    ('"https://git.example.com/group/app"', "git.example.com/group/app"),
    ("/srv/git/app.git", "/srv/git/app"),
])
def test_local_knows_where_the_checkout_lives_and_its_origin_without_credentials(
        tmp_path: Path, url: str, remote: str) -> None:
    repo = tmp_path / "app"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "config").write_text(
        '[core]\n\tbare = false\n[remote "upstream"]\n\turl = https://elsewhere.example/x\n'
        f'[remote "origin"]\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n\tURL = {url}\n')
    (repo / "sub").mkdir()
    ctx = contexts.local({}, repo / "sub")
    assert (ctx.root, ctx.remote) == (str(repo), remote)


def test_local_with_a_malformed_origin_url_is_known_by_its_directory(tmp_path: Path) -> None:
    repo = tmp_path / "app"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "config").write_text('[remote "origin"]\n\turl = https://[oops/group/app.git\n')
    ctx = contexts.local({}, repo)
    assert (ctx.root, ctx.remote) == (str(repo), None)


def test_local_without_an_origin_or_git_is_known_by_its_directory(tmp_path: Path) -> None:
    (tmp_path / "r" / ".git").mkdir(parents=True)
    (tmp_path / "r" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert (contexts.local({}, tmp_path / "r").remote, contexts.local({}, tmp_path / "r").root) == (
        None, str(tmp_path / "r"))
    (tmp_path / "plain").mkdir()
    assert contexts.local({}, tmp_path / "plain").root == str(tmp_path / "plain")


def test_local_detached_head_and_no_git(tmp_path: Path) -> None:
    (tmp_path / "r" / ".git").mkdir(parents=True)
    (tmp_path / "r" / ".git" / "HEAD").write_text("0123456789abcdef\n")
    assert contexts.local({}, tmp_path / "r").branch is None
    assert contexts.local({}, tmp_path).project == tmp_path.name


def test_providers_are_chosen_by_priority_not_registration_order(tmp_path: Path) -> None:
    def never(env: object, cwd: object) -> None:
        return None

    custom = ContextProvider("custom", lambda env, cwd: Context("custom", "p"), priority=50)
    fallback = ContextProvider("local", lambda env, cwd: Context("local", "p"), priority=0)
    for order in ([custom, fallback], [fallback, custom]):
        assert detect_context([*order, ContextProvider("x", never, 99)], {}, tmp_path).provider == "custom"


def test_local_without_a_remote_takes_its_one_main_or_master_as_the_default_branch(tmp_path: Path) -> None:
    repo = tmp_path / "app"
    (repo / ".git" / "refs" / "heads" / "feature").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/feature/x\n")
    (repo / ".git" / "config").write_text("[core]\n\tbare = false\n")
    assert contexts.local({}, repo).default_branch is None  # no commit yet: no branch to name
    (repo / ".git" / "refs" / "heads" / "main").write_text("0" * 40 + "\n")
    assert contexts.local({}, repo).default_branch == "main"
    (repo / ".git" / "packed-refs").write_text(f"{'1' * 40} refs/heads/master\n")
    assert contexts.local({}, repo).default_branch is None  # both: no telling which
    (repo / ".git" / "packed-refs").unlink()
    (repo / ".git" / "config").write_text('[remote "origin"]\n\turl = /elsewhere\n')
    assert contexts.local({}, repo).default_branch is None  # the remote's default decides, and it is unknown
