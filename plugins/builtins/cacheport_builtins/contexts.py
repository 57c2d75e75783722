"""Built-in CI-context providers: GitLab CI, GitHub Actions, and a local git checkout."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cacheport import Context, ContextProvider, hookimpl
from cacheport.refs import SLUG_PATTERN

_ORIGIN = re.compile(r'\[\s*remote\s+"origin"\s*\]\Z', re.IGNORECASE)


def _gitlab_slugs(env: Mapping[str, str], branch: str | None) -> tuple[tuple[str, str], ...]:
    """GitLab's own slug of the branch, when ``CI_COMMIT_REF_SLUG`` is that branch's (not a tag's) and well formed."""
    ref_slug = env.get("CI_COMMIT_REF_SLUG", "")
    if branch and env.get("CI_COMMIT_REF_NAME") == branch and not env.get("CI_COMMIT_TAG") \
            and SLUG_PATTERN.match(ref_slug):
        return ((branch, ref_slug),)
    return ()


def gitlab(env: Mapping[str, str], cwd: Path) -> Context | None:
    if env.get("GITLAB_CI") != "true":
        return None
    source, target_project = env.get("CI_MERGE_REQUEST_SOURCE_PROJECT_ID"), env.get("CI_MERGE_REQUEST_PROJECT_ID")
    branch = env.get("CI_COMMIT_BRANCH") or env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")
    if not branch and not env.get("CI_COMMIT_TAG"):
        branch = env.get("CI_COMMIT_REF_NAME")
    return Context(
        provider="gitlab",
        project=env.get("CI_PROJECT_PATH") or env.get("CI_PROJECT_NAME") or cwd.name,
        branch=branch or None,
        default_branch=env.get("CI_DEFAULT_BRANCH") or None,
        target_branch=(env.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME")
                       or env.get("CI_EXTERNAL_PULL_REQUEST_TARGET_BRANCH_NAME") or None),
        # A fork's merge request pipeline runs in the parent project; it must not write the parent's cache.
        trusted=not _differ(source, target_project) and not _differ(
            env.get("CI_MERGE_REQUEST_SOURCE_PROJECT_PATH"), env.get("CI_MERGE_REQUEST_PROJECT_PATH"))
        and not _external_fork(env),
        job=env.get("CI_JOB_NAME"),
        default_backend="gitlab",
        branch_slugs=_gitlab_slugs(env, branch or None),
        **_gitlab_trust_facts(env),
    )


def _differ(source: str | None, target: str | None) -> bool:
    """Whether a merge/pull request's source and target projects are both known and not the same: a fork."""
    return bool(source and target and source != target)


def _external_fork(env: Mapping[str, str]) -> bool:
    return _differ(env.get("CI_EXTERNAL_PULL_REQUEST_SOURCE_REPOSITORY"),
                   env.get("CI_EXTERNAL_PULL_REQUEST_TARGET_REPOSITORY"))


def _flag(value: str | None) -> bool | None:
    return {"true": True, "false": False}.get((value or "").strip().lower())


def _gitlab_trust_facts(env: Mapping[str, str]) -> dict[str, Any]:
    """What the trust rules need: the pipeline's kind, and whether its ref is protected."""
    source = env.get("CI_PIPELINE_SOURCE") or None
    if env.get("CI_MERGE_REQUEST_IID"):  # also a merge request pipeline's child pipelines
        source = "merge_train" if env.get("CI_MERGE_REQUEST_EVENT_TYPE") == "merge_train" else "merge_request_event"
    elif env.get("CI_EXTERNAL_PULL_REQUEST_IID"):
        source = "external_pull_request_event"
    return {"event": source, "protected": _flag(env.get("CI_COMMIT_REF_PROTECTED")),
            "tag": env.get("CI_COMMIT_TAG") or None}


def _event(env: Mapping[str, str]) -> dict[str, Any]:
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _dig(data: Any, *keys: str) -> dict[str, Any]:
    """A nested object of the event payload, or {} when it is missing or not an object."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def github(env: Mapping[str, str], cwd: Path) -> Context | None:
    if env.get("GITHUB_ACTIONS") != "true":
        return None
    event = _event(env)
    pull = event.get("pull_request")
    trusted = True
    if isinstance(pull, dict):
        head_repo, base_repo = _dig(pull, "head", "repo"), _dig(pull, "base", "repo")
        # A deleted fork has no head repo at all; treat it like any fork.
        trusted = bool(head_repo) and head_repo.get("full_name") == base_repo.get("full_name")
    branch = env.get("GITHUB_HEAD_REF") or None
    if not branch and (env.get("GITHUB_REF_TYPE") == "branch" or env.get("GITHUB_REF", "").startswith("refs/heads/")):
        branch = env.get("GITHUB_REF_NAME") or None
    repo = event.get("repository") if isinstance(event.get("repository"), dict) else {}
    return Context(
        provider="github",
        project=env.get("GITHUB_REPOSITORY") or cwd.name,
        branch=branch,
        default_branch=_text(repo.get("default_branch")),
        target_branch=env.get("GITHUB_BASE_REF") or _merge_group_base(event) or None,
        trusted=trusted,
        job=env.get("GITHUB_JOB"),
        default_backend="gha",
        event=env.get("GITHUB_EVENT_NAME") or None,
        protected=_flag(env.get("GITHUB_REF_PROTECTED")),
        tag=(env.get("GITHUB_REF_NAME") or None) if _is_tag(env) else None,
    )


def _is_tag(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_REF_TYPE") == "tag" or env.get("GITHUB_REF", "").startswith("refs/tags/")


def _merge_group_base(event: dict[str, Any]) -> str | None:
    """A merge queue run's base branch (``merge_group.base_ref``, ``refs/heads/main``)."""
    base = _text(_dig(event, "merge_group").get("base_ref"))
    return base.removeprefix("refs/heads/") if base else None


def _git_dir(cwd: Path) -> Path | None:
    for folder in (cwd, *cwd.parents):
        dot = folder / ".git"
        if dot.is_dir():
            return dot
        if dot.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = dot.read_text(encoding="utf-8", errors="replace").strip()
            if text.startswith("gitdir:"):
                return (folder / text.partition(":")[2].strip()).resolve()
    return None


def _symref(path: Path, prefix: str) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text[len(prefix):] if text.startswith(prefix) else None


def _origin(common: Path) -> str | None:
    """The ``origin`` remote's URL from git's config, as ``host/path``: no scheme, user, password, port or
    ``.git``, so the https and ssh forms of one repository are the same. None without one."""
    from urllib.parse import urlsplit

    try:
        text = (common / "config").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif _ORIGIN.match(section) and line.split("=", 1)[0].strip().lower() == "url" and "=" in line:
            url = line.split("=", 1)[1].strip().strip('"')
            if "://" in url:
                try:
                    parts = urlsplit(url)
                    host, path = parts.hostname or "", parts.path
                except ValueError:  # git would refuse it too: the checkout is then known by its directory
                    return None
            else:  # scp-like: [user@]host:path, or a local path
                host, _, path = url.rpartition("@")[2].rpartition(":")
            path = path.rstrip("/").removesuffix(".git")
            return f"{host.lower()}/{path.lstrip('/')}" if host else path or None
    return None


def local(env: Mapping[str, str], cwd: Path) -> Context:
    git = _git_dir(cwd)
    if git is None:
        return Context(provider="local", project=cwd.name or "project", root=str(cwd))
    common = git
    if (git / "commondir").is_file():
        common = (git / (git / "commondir").read_text(encoding="utf-8").strip()).resolve()
    top = common.parent if common.name == ".git" else cwd
    return Context(
        provider="local",
        project=top.name or "project",
        # Read, don't run git: this runs on every `cacheport args`, and git may not be installed.
        branch=_symref(git / "HEAD", "ref: refs/heads/"),
        default_branch=_symref(common / "refs" / "remotes" / "origin" / "HEAD", "ref: refs/remotes/origin/")
        or _only_default(common),
        root=str(top),
        remote=_origin(common),
    )


def _only_default(common: Path) -> str | None:
    """In a repository with no remote, the one of ``main`` and ``master`` it has: there is no other project whose
    default branch it could be following, and ``git init`` makes one of the two. None when both or neither."""
    try:
        config = (common / "config").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if "[remote " in config:
        return None  # a clone whose origin/HEAD is unknown: its remote decides, so don't guess
    try:
        packed = (common / "packed-refs").read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        packed = []
    found = [b for b in ("main", "master") if (common / "refs" / "heads" / b).is_file() or f"refs/heads/{b}" in packed]
    return found[0] if len(found) == 1 else None


@hookimpl
def cacheport_context_providers() -> list[ContextProvider]:
    return [
        ContextProvider(name="gitlab", detect=gitlab, priority=100),
        ContextProvider(name="github", detect=github, priority=100),
        ContextProvider(name="local", detect=local, priority=0),
    ]
