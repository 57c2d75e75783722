"""Image references: how docker's reference syntax splits into host, repository, tag and digest.
"""

from __future__ import annotations

import pytest

from cacheport.errors import RegistryError
from cacheport.oci.reference import Reference, parse_reference


@pytest.mark.parametrize(("ref", "expected"), [
    ("127.0.0.1:5000/group/app/cache:main", Reference("127.0.0.1:5000", "group/app/cache", "main")),
    ("registry.example.com/app/cache", Reference("registry.example.com", "app/cache")),
    ("localhost/app:v1", Reference("localhost", "app", "v1")),
    ("REG.example.com/app/cache:Main", Reference("reg.example.com", "app/cache", "Main")),
    ("user/app:cache", Reference("registry-1.docker.io", "user/app", "cache")),
    ("alpine", Reference("registry-1.docker.io", "library/alpine")),
    (f"r.example/app@sha256:{'a' * 64}", Reference("r.example", "app", None, f"sha256:{'a' * 64}")),
])
def test_parse_reference(ref: str, expected: Reference) -> None:
    assert parse_reference(ref) == expected


@pytest.mark.parametrize("ref", ["", "r.example/", "r.example/app@nodigest"])
def test_parse_reference_rejects(ref: str) -> None:
    with pytest.raises(RegistryError, match="not an image reference"):
        parse_reference(ref)
