"""Copying blobs between store sessions: a mount on one host moves no bytes, a refused mount streams, and a
streamed copy holds flat chunks.
"""

from __future__ import annotations

import hashlib

import pytest

from cacheport.oci.auth import Credentials
from cacheport.oci.copy import copy_blob
from cacheport.oci.registry import Registry
from cacheport.oci.repository import RegistryRepository
from cacheport.oci.upload import CHUNK
from tests.fakes.registry import FakeRegistry, cache_index


def test_mount_on_the_same_host_moves_no_bytes(fake: FakeRegistry) -> None:
    fake.auth = "bearer"
    index = cache_index(fake, "old/cache", "main")
    with Registry(fake.host, Credentials("u", "p")) as client:
        old, new = RegistryRepository(client, "old/cache"), RegistryRepository(client, "new/cache")
        for blob in index.descriptors():
            assert copy_blob(old, new, blob) == ("mounted", 0)
            # a mount is one round trip whether or not the blob is there already
            assert copy_blob(old, new, blob) == ("mounted", 0)
        assert client.counters.bytes_uploaded == client.counters.bytes_downloaded == 0
        assert client.counters.blobs_mounted == 2 * len(index.descriptors())
    # the mount's token covers both repositories, as a real token server is asked for
    assert ["repository:new/cache:pull,push", "repository:old/cache:pull"] in [q.get("scope") for q in fake.token_requests]


@pytest.mark.parametrize("mount", ["202", "404"])
def test_a_refused_mount_falls_back_to_streaming(mount: str) -> None:
    with FakeRegistry(mount=mount) as fake:
        fake.blobs["old/cache"] = {}
        data = b"x" * 5000
        digest = fake.add_blob("elsewhere", data)  # the named source does not have it: the mount fails
        with Registry(fake.host) as client:
            from cacheport.oci.format import Descriptor

            how, _sent = copy_blob(RegistryRepository(client, "elsewhere"), RegistryRepository(client, "new/cache"),
                                   Descriptor("l", digest, len(data)))
            assert how == "uploaded"
            assert client.counters.blobs_mounted == 0 and client.counters.bytes_uploaded == len(data)
        assert fake.blobs["new/cache"][digest] == data
        if mount == "202":
            assert not fake.uploads, "the upload a failed mount opened is cancelled"


def test_streamed_copy_uses_flat_chunks(fake: FakeRegistry) -> None:
    data = hashlib.sha256(b"seed").digest() * (3 * CHUNK // 32 + 7)  # a bit over 3 MiB
    digest = fake.add_blob("a/c", data)
    with FakeRegistry() as other, Registry(fake.host) as source, Registry(other.host) as target:
        from cacheport.oci.format import Descriptor

        sizes: list[int] = []
        how, _sent = copy_blob(RegistryRepository(source, "a/c"), RegistryRepository(target, "b/c"),
                               Descriptor("l", digest, len(data)), progress=sizes.append)
        assert how == "uploaded"
        assert other.blobs["b/c"][digest] == data
    assert max(sizes) <= CHUNK and sum(sizes) == len(data) == target.counters.bytes_uploaded


def test_a_manifest_refused_for_a_blob_the_registry_called_present_is_sent_again_with_its_blobs() -> None:
    """Pulp, with two caches copied into one repository at once, can answer a blob present (or mounted) and then
    refuse the manifest that names it: the blobs go again, and the manifest is written."""
    import threading

    from cacheport.oci.copy import Copier, Reporter

    with FakeRegistry() as fake:
        index = cache_index(fake, "old/cache", "main")
        # the mount answers 201 without the blob arriving: the registry says it has what it does not
        fake.faults.append(("POST", r"/v2/new/cache/blobs/uploads/\?.*mount=", 201, {"Location": "/v2/new/cache/x"}))
        with Registry(fake.host) as client:
            old, new = RegistryRepository(client, "old/cache"), RegistryRepository(client, "new/cache")
            copier = Copier(2, Reporter(), threading.Event())
            try:
                copier.cache(old, new, index, index, "main")
            finally:
                copier.close()
        assert "main" in fake.manifests["new/cache"]
        assert set(fake.blobs["new/cache"]) == {d.digest for d in index.descriptors()}
        assert [m for m, p in fake.log if m == "PUT" and "/manifests/main" in p] == ["PUT", "PUT"]
