"""Registry refs for branches: slugs, tags and repositories that are valid for any branch name.

Shared by every registry-type backend, built-in or third-party, so they all name tags alike.
"""

from __future__ import annotations

import re

from cacheport.context import Context

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")


def slug(name: str, limit: int = 63) -> str:
    """GitLab's ``CI_COMMIT_REF_SLUG`` rule: lower-case, runs of other characters become ``-``, at most 63.

    A name with no ASCII letter or digit at all (``ünï``) gets a short hash, so it still names one tag.
    """
    out = _NOT_SLUG.sub("-", name.lower())[:limit].strip("-")
    if not out:
        import hashlib

        out = "x" + hashlib.sha256(name.encode()).hexdigest()[:12]
    return out


def branch_tag(branch: str, key: str | None = None) -> str:
    """The cache tag for a branch, scoped by ``key`` (a target, platform or matrix axis) when given."""
    tag = slug(branch) if not key else f"{slug(key)}-{slug(branch)}"
    assert TAG_PATTERN.match(tag), tag
    return tag


def repository(ref: str) -> str:
    """A repository reference with its path lower-cased, as registries require.

    A trailing ``:tag`` is not expected here; the caller appends the branch tag.
    """
    host, sep, path = ref.strip().rstrip("/").partition("/")
    if not sep:
        return host.lower()
    return f"{host.lower()}/{path.lower()}"


def branch_names(context: Context, key: str | None = None) -> tuple[tuple[str, ...], str | None]:
    """Cache names (tags) in fallback order, and the export's name (None when this job must not export).

    Names: the branch's, the MR target's, the default branch's, without duplicates. The export goes to the
    branch's own name only, and only for trusted jobs that know their branch. No branch known at all gives
    no names: :func:`cacheport.kit.cache_names` applies the one rule for that.
    """
    names = tuple(dict.fromkeys(branch_tag(name, key) for name in context.fallback_branches()))
    export = branch_tag(context.branch, key) if context.branch and context.trusted else None
    if (context.branch and context.default_branch and context.branch != context.default_branch
            and branch_tag(context.branch, key) == branch_tag(context.default_branch, key)):
        export = None  # `Main` or `main-` would overwrite the cache every protected build imports
    return names, export


def branch_refs(repo: str, context: Context, key: str | None = None) -> tuple[tuple[str, ...], str | None]:
    """:func:`branch_names` as ``repository:tag`` refs."""
    repo = repository(repo)
    names, export = branch_names(context, key)
    return tuple(f"{repo}:{n}" for n in names), (f"{repo}:{export}" if export else None)


# --- what docker accepts as an image reference (distribution's reference grammar) ---------------------------

#: distribution's limit on a repository name, registry host included.
NAME_MAX = 255
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{1,256}\Z")


def host_problem(host: str) -> str | None:
    """Why ``host[:port]`` cannot be a registry host (DNS labels of 1-63 characters, IPv4, ``[IPv6]``, an
    optional port), or None when it can."""
    name, port = host, ""
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return "an IPv6 host must be written [address] or [address]:port"
        import ipaddress

        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return f"[{name}] is not an IPv6 address"
        port = rest[1:] if rest else ""
        if rest and not _PORT.match(port):
            return "the port must be a number"
        return None
    if ":" in host:
        name, _, port = host.rpartition(":")
        if not _PORT.match(port) or int(port) > 65535:
            return "the port must be a number up to 65535"
    if not name or len(name) > 253:
        return "a host name has 1 to 253 characters"
    bad = next((label for label in name.split(".") if not _LABEL.match(label)), None)
    if bad is not None:
        if len(bad) > 63:
            return f"a host name's parts have at most 63 characters (one has {len(bad)})"
        return "a host name is letters, digits and '-' between dots"
    return None


def reference_problem(ref: str) -> str | None:
    """Why ``[host/]path[:tag][@digest]`` is not an image reference docker accepts, or None when it is.

    The path is checked lower-cased (as :func:`repository` writes it); the name (host and path) has at most
    255 characters.
    """
    name, at, digest = ref.partition("@")
    if at and not _DIGEST.match(digest):
        return "a digest is algorithm:hex, e.g. sha256:..."
    first, sep, rest = name.partition("/")
    host = first if sep and ("." in first or ":" in first or first == "localhost") else ""
    path = rest if host else name
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
        if not TAG_PATTERN.match(tag):
            return "a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
    if len(f"{host}/{path}" if host else path) > NAME_MAX:
        return f"a repository name has at most {NAME_MAX} characters (this one has {len(host) + len(path) + 1})"
    if host and (problem := host_problem(host)):
        return problem
    if not path:
        return "it has no repository path"
    if any(not _COMPONENT.match(part) for part in path.lower().split("/")):
        return "a repository path is lower-case letters and digits, separated by '/', '.', '_' or '-'"
    return None
