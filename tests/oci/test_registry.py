"""The registry API client against the fake registry (tests/fakes/registry.py): every operation with each auth
style, manifests kept byte for byte, and one-line errors. The real registries, Pulp and a real token server are in
tests/e2e/test_seed.py.
"""

from __future__ import annotations

import json

import httpx
import pytest

from cacheport.errors import RegistryError
from cacheport.oci.auth import Credentials
from cacheport.oci.format import OCI_INDEX, Manifest, sha256_digest
from cacheport.oci.registry import Registry
from tests.fakes.registry import FakeRegistry, cache_index


@pytest.mark.parametrize("auth", ["none", "basic", "bearer"])
def test_every_operation_with_each_auth_style(auth: str) -> None:
    with FakeRegistry(auth=auth, page=2) as fake:
        index = cache_index(fake, "src/cache", "main")
        for tag in ("a", "b", "c", "d"):
            fake.add_manifest("src/cache", tag, index.json)
        creds = None if auth == "none" else Credentials("u", "p")
        with Registry(fake.host, creds) as client:
            client.ping()
            assert client.list_tags("src/cache") == ["a", "b", "c", "d", "main"]  # three pages of two
            assert client.list_tags("nothing/here") == []
            got = client.get_manifest("src/cache", "main")
            assert got is not None and got.data == index.data and got.media_type == OCI_INDEX
            assert client.get_manifest("src/cache", "nope") is None
            assert client.manifest_digest("src/cache", "main") == index.digest
            blob = index.descriptors()[0]
            assert client.blob_size("src/cache", blob.digest) == blob.size
            assert client.blob_size("src/cache", "sha256:" + "0" * 64) is None
            with client.open_blob("src/cache", blob.digest) as chunks:
                assert sha256_digest(b"".join(chunks)) == blob.digest
            data = b"new blob " * 1000
            client.upload_blob("dst/cache", sha256_digest(data), len(data), iter([data[:100], data[100:]]))
            assert fake.blobs["dst/cache"][sha256_digest(data)] == data
            assert client.delete_manifest("src/cache", "a") is True
            assert client.delete_manifest("src/cache", "a") is False
            assert client.counters.bytes_uploaded == len(data)
        if auth == "bearer":
            scopes = [q.get("scope", []) for q in fake.token_requests]
            assert ["repository:src/cache:pull"] in scopes
            assert ["repository:dst/cache:pull,push"] in scopes
            assert ["repository:src/cache:delete"] in scopes
            assert client.counters.tokens == len(fake.token_requests)


def test_manifest_put_keeps_the_bytes_and_the_digest(fake: FakeRegistry) -> None:
    index = cache_index(fake, "r/c", "main")
    odd = Manifest.from_bytes(b'{ "schemaVersion": 2,\n "mediaType": "%s", "manifests": %s }' % (
        OCI_INDEX.encode(), json.dumps(index.json["manifests"]).encode()))
    with Registry(fake.host) as client:
        assert client.put_manifest("r/c", "odd", odd) == odd.digest
        got = client.get_manifest("r/c", "odd")
    assert got is not None and got.data == odd.data and got.digest == odd.digest


def test_a_manifest_whose_content_does_not_match_its_digest_is_refused(fake: FakeRegistry) -> None:
    manifest = fake.add_manifest("r/c", "main", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    fake.manifests["r/c"][manifest.digest] = (OCI_INDEX, b'{"tampered": true}')
    with Registry(fake.host) as client, pytest.raises(RegistryError, match="has digest"):
        client.get_manifest("r/c", manifest.digest)


def test_an_unreachable_registry_is_one_line() -> None:
    with FakeRegistry() as fake:
        host = fake.host
    with Registry(host, timeout=5) as client, pytest.raises(RegistryError) as caught:
        client.ping()
    message = str(caught.value)
    assert message.startswith(f"{host} is unreachable: ") and "\n" not in message


def test_http_for_loopback_https_elsewhere_and_insecure_falls_back_to_http() -> None:
    import httpx

    assert Registry("127.0.0.1:5000").scheme == "http"
    assert Registry("localhost:5000").scheme == "http"
    assert Registry("registry.example.com").scheme == "https"
    seen: list[str] = []

    def plain_http_only(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.scheme == "https":
            raise httpx.ConnectError("wrong version number")
        return httpx.Response(200, json={})

    with Registry("reg.internal:5000", insecure=True, transport=httpx.MockTransport(plain_http_only)) as client:
        client.ping()
        client.ping()
    assert client.scheme == "http"
    assert seen == ["https://reg.internal:5000/v2/", "http://reg.internal:5000/v2/", "http://reg.internal:5000/v2/"]


def test_cacheport_args_imports_nothing_from_the_oci_package(clean_env: dict[str, str]) -> None:
    import subprocess
    import sys

    probe = ("import sys\nfrom cacheport.cli import main\n"
             "try:\n    main(['args'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith('cacheport.oci')))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=clean_env, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
