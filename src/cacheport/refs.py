"""Registry refs for branches: slugs, tags and repositories that are valid for any branch name.

Shared by every registry-type backend, built-in or third-party, so they all name tags alike.
"""

from __future__ import annotations

import re

from cacheport.records import Context

_NOT_SLUG = re.compile(r"[^a-z0-9]")
TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
#: What GitLab's slugify can produce: 1 to 63 of ``a-z0-9-``, not starting or ending with ``-``.
SLUG_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


def slug(name: str, limit: int = 63) -> str:
    """GitLab's ``CI_COMMIT_REF_SLUG`` rule (``Gitlab::Utils.slugify``), exactly.

    Lower-case, every character other than ``a-z0-9`` becomes ``-`` (so ``a--b`` stays ``a--b``), the first 63
    characters, then leading and trailing ``-`` stripped. Where GitLab's slug is empty (``___``, ``日本語``),
    this gives ``x`` and 12 hex digits of the name's SHA-256 instead, so every name still names its own tag.
    """
    out = _NOT_SLUG.sub("-", name.lower())[:limit].strip("-")
    if not out:
        import hashlib

        out = "x" + hashlib.sha256(name.encode()).hexdigest()[:12]
    return out


def key_prefix(key: str | None) -> str:
    """What a ``key`` puts before a branch's name in its tag (``arm64-``), or ``""`` without one."""
    return f"{slug(key)}-" if key else ""


def same_branch(name: str, branch_name: str) -> bool:
    """Whether ``name`` is the cache ``branch_name`` itself or that branch's under some key (``arm64-main``)."""
    return name == branch_name or name.endswith(f"-{branch_name}")


def branch_tag(branch: str, key: str | None = None, context: Context | None = None) -> str:
    """The cache tag for a branch, scoped by ``key`` (a target, platform or matrix axis) when given.

    The branch's slug is the one the CI computed for it when ``context`` has it (GitLab's
    ``CI_COMMIT_REF_SLUG``), else :func:`slug`'s.
    """
    known = dict(context.branch_slugs) if context is not None else {}
    name = known.get(branch) or slug(branch)
    tag = f"{key_prefix(key)}{name}"
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

    The trust rules (:mod:`cacheport.trust`) say which branches a job imports and which one it writes:
    usually its own branch, then the MR target, then the default branch, and it writes its own. A job
    never writes the name of another branch it knows (the default branch, the MR target) whose slug is the
    same as its own. Under ``trust = "protected"`` a job that is not a protected pipeline reads and writes
    its own branch's :data:`~cacheport.trust.UNPROTECTED` name first, which no branch's name can equal.
    No branch known at all gives no names: :func:`cacheport.kit.cache_names` applies the one rule for that.
    Pass the request's context: it carries the plan's decision (``context.trust``).
    """
    from cacheport.trust import decided, marked

    trust = decided(context)
    names = tuple(dict.fromkeys(branch_tag(name, key, context) for name in trust.imports))
    export = branch_tag(trust.export, key, context) if trust.export else None
    for other in (context.default_branch, context.target_branch):
        if other and other != trust.export and export == branch_tag(other, key, context):
            export = None  # `Main` or `main-` would overwrite the cache every protected build imports
    if trust.mode == "protected" and not trust.protected:
        own = (marked(branch_tag(context.branch, key, context)),) if context.branch in trust.imports else ()
        names = tuple(dict.fromkeys((*own, *names)))
        export = marked(export) if export else None
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


def split_host(name: str) -> tuple[str, str]:
    """``(host, rest)`` of an image name as docker reads it: the first component is a registry host when the name
    has a ``/`` and that component has a ``.`` or a ``:`` or is ``localhost``; otherwise ``("", name)`` (Docker
    Hub). The host keeps its case."""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "", name


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
    scheme = re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://", ref)
    if scheme:
        return f"a ref is host/path, with no {scheme.group(0)!r} in front"
    name, at, digest = ref.partition("@")
    if at and not _DIGEST.match(digest):
        return "a digest is algorithm:hex, e.g. sha256:..."
    host, path = split_host(name)
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
