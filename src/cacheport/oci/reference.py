"""Image references as the registry API needs them: host, repository, tag, digest.

Pure: no I/O and no HTTP client. Whether a reference is well formed is :func:`cacheport.refs.reference_problem`'s
rule; this module only splits one that is.
"""

from __future__ import annotations

import attrs

from cacheport.errors import RegistryError
from cacheport.masking import shown_value
from cacheport.oci.format import DIGEST
from cacheport.refs import reference_problem, split_host

#: the names Docker Hub goes by; its API is reached at the last one.
HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")


@attrs.frozen
class Reference:
    """An image reference split into its parts.

    Attributes:
        host: the registry host as the API is reached (``host[:port]``; Docker Hub is registry-1.docker.io).
        repository: the repository path.
        tag: the tag, or None.
        digest: the digest, or None.
    """

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.host}/{self.repository}{tag}{digest}"


def parse_reference(ref: str) -> Reference:
    """``host[:port]/path[:tag][@digest]`` as docker reads it (no host means Docker Hub)."""
    text = ref.strip()
    problem = reference_problem(text)
    if problem:
        raise RegistryError(f"{shown_value(text)} is not an image reference: {problem}")
    name, _, digest = text.partition("@")
    host, path = split_host(name)
    host = host.lower() or "docker.io"
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
    if not path or path.startswith("/") or path.endswith("/") or (digest and not DIGEST.match(digest)):
        raise RegistryError(f"{ref!r} is not an image reference (host/path[:tag])")
    if host in HUB_HOSTS:
        host = "registry-1.docker.io"
        if "/" not in path:
            path = f"library/{path}"
    return Reference(host, path, tag, digest or None)


def is_loopback(host: str) -> bool:
    """Whether ``host[:port]`` is this machine (spoken to over plain HTTP, as docker does)."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.strip("[]") in ("127.0.0.1", "localhost", "::1") or name.startswith("127.")
