"""Credentials and the registry login flow: challenge parsing, docker's config, Basic and bearer tokens
(cached per repository, shared by threads), and credentials that never reach another host.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from cacheport.errors import RegistryError
from cacheport.oci.auth import Credentials, parse_challenge
from cacheport.oci.registry import Registry
from tests.fakes.registry import FakeRegistry, cache_index


@pytest.mark.parametrize(("header", "expected"), [
    ('Bearer realm="https://gitlab.example.com/jwt/auth",service="container_registry",'
     'scope="repository:group/app/cache:pull,push"',
     ("bearer", {"realm": "https://gitlab.example.com/jwt/auth", "service": "container_registry",
                 "scope": "repository:group/app/cache:pull,push"})),
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
     'scope="repository:a:pull,push repository:b:pull"',
     ("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                 "scope": "repository:a:pull,push repository:b:pull"})),
    ('Basic realm="api"', ("basic", {"realm": "api"})),
    ("Basic", ("basic", {})),
    ('bearer realm=https://r.example/token, service=svc', ("bearer", {"realm": "https://r.example/token", "service": "svc"})),
    ('Bearer realm="a \\"quoted\\" realm",error="insufficient_scope"',
     ("bearer", {"realm": 'a "quoted" realm', "error": "insufficient_scope"})),
    ("", None),
])
def test_parse_challenge(header: str, expected: tuple[str, dict[str, str]] | None) -> None:
    assert parse_challenge(header) == expected


def test_bearer_tokens_are_cached_per_repository(fake: FakeRegistry) -> None:
    fake.auth = "bearer"
    index = cache_index(fake, "src/cache", "main", layers=3)
    with Registry(fake.host, Credentials("u", "p")) as client:
        for descriptor in index.descriptors():
            assert client.blob_size("src/cache", descriptor.digest) == descriptor.size
    assert len(fake.token_requests) == 1


def test_anonymous_bearer_token_and_wrong_credentials(fake: FakeRegistry) -> None:
    fake.auth = "bearer"
    with Registry(fake.host) as anonymous, pytest.raises(RegistryError, match=r"refused a token anonymously \(HTTP 401\)"):
        anonymous.ping()
    with Registry(fake.host, Credentials("u", "wrong")) as client, pytest.raises(RegistryError) as caught:
        client.list_tags("a/b")
    assert "refused a token as 'u'" in str(caught.value) and "wrong" not in str(caught.value)
    fake.auth = "basic"
    with Registry(fake.host, Credentials("u", "wrong")) as client, pytest.raises(RegistryError) as caught:
        client.ping()
    assert str(caught.value) == f"{fake.host}: GET /v2/: HTTP 401 UNAUTHORIZED not authorized (check the credentials) unauthorized"
    assert caught.value.status == 401


def test_credentials_never_reach_another_host() -> None:
    """A blob redirected to storage elsewhere gets no Authorization header."""
    import httpx

    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.host == "storage.example":
            return httpx.Response(200, content=b"data")
        if "Authorization" not in request.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})
        return httpx.Response(307, headers={"Location": "https://storage.example/blob?sig=1"})

    with Registry("reg.example", Credentials("u", "p"), transport=httpx.MockTransport(handler)) as client, \
            client.open_blob("r", "sha256:" + "a" * 64) as chunks:
        assert b"".join(chunks) == b"data"
    assert sent[-1].url.host == "storage.example" and "Authorization" not in sent[-1].headers
    assert sent[1].headers["Authorization"].startswith("Basic ")


@pytest.mark.parametrize("auth", ["basic", "bearer"])
def test_one_client_in_many_threads_shares_its_login_and_counts_every_request(fake: FakeRegistry, auth: str) -> None:
    fake.auth = auth
    index = cache_index(fake, "src/cache", "main", layers=6)
    with Registry(fake.host, Credentials("u", "p")) as client, ThreadPoolExecutor(8) as pool:
        # every thread's first request is refused at once, before any has learnt how to log in
        sizes = list(pool.map(lambda d: client.blob_size("src/cache", d.digest), index.descriptors() * 5))
        assert sizes == [d.size for d in index.descriptors()] * 5
        assert client.counters.requests == len(fake.log)
        assert client.counters.tokens == len(fake.token_requests) <= 8
