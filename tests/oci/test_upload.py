"""Blob uploads: one PUT or PATCHes as the UploadPolicy says, resumed from the registry's offset after a
break or from the journal after a stop, and the journal itself. The real registry behind a latency proxy:
tests/e2e/test_wan.py.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cacheport.errors import Interrupted, RegistryError
from cacheport.oci.auth import Credentials
from cacheport.oci.format import sha256_digest
from cacheport.oci.registry import Registry
from cacheport.oci.upload import OpenUpload, UploadJournal, UploadPolicy, _Take
from tests.fakes.registry import FAST, FakeRegistry, blob_of, source_of


def test_take_hands_out_runs_of_an_exact_length_without_holding_more_than_one_chunk() -> None:
    take = _Take(iter([b"abc", b"defgh", b"", b"ij"])).take
    assert [b"".join(take(n, "h")) for n in (4, 4, 2)] == [b"abcd", b"efgh", b"ij"]
    take = _Take(iter([b"x" * 10])).take
    assert [b"".join(take(n, "h")) for n in (3, 3, 3, 1)] == [b"xxx", b"xxx", b"xxx", b"x"]
    with pytest.raises(RegistryError, match="ended 1 bytes early"):
        b"".join(take(1, "h"))


def test_chunked_upload_keeps_the_registry_state(fake: FakeRegistry) -> None:
    data = bytes(range(256)) * 40
    seen: list[int] = []
    with Registry(fake.host, upload_policy=UploadPolicy(chunked_from=4096, patch_min=4096, patch_max=4096)) as client:
        client.upload_blob("r/c", sha256_digest(data), len(data), iter([data[:3000], data[3000:]]),
                           progress=seen.append)
    assert fake.blobs["r/c"][sha256_digest(data)] == data
    assert len(fake.methods("PATCH")) == 3
    assert sum(seen) == len(data)


def test_an_upload_of_the_wrong_size_is_an_error(fake: FakeRegistry) -> None:
    data = b"abc"
    with Registry(fake.host) as client, pytest.raises(RegistryError):
        client.upload_blob("r/c", sha256_digest(data), 5, iter([data]))


def test_a_large_blob_goes_in_patches_and_a_reset_mid_patch_resumes_from_the_registrys_offset(
        fake: FakeRegistry) -> None:
    policy = UploadPolicy(chunked_from=1 << 16, patch_min=1 << 16, patch_max=1 << 16)
    data, blob = blob_of(5 * (1 << 16) + 123)
    fake.cut_at = 20_000  # the registry keeps this much of the first PATCH, then the connection drops
    source = source_of(data)
    with Registry(fake.host, retry=FAST, upload_policy=policy) as client:
        sent = client.upload_resumable("r/c", blob.digest, blob.size, source.open)
        assert client.counters.blobs_uploaded == 1
    assert fake.blobs["r/c"][blob.digest] == data  # byte-identical (and the registry checked the digest)
    assert len(fake.methods("POST")) == 1, "the same upload was continued, not restarted"
    assert [m for m, p in fake.log if "/uploads/" in p].count("GET") == 1  # asked once where it stood
    assert source.opened == [0, 20_000], "the source is read again from the offset the registry reported"
    assert sent >= blob.size  # what went out before the drop, plus the rest


def test_no_patch_is_more_than_a_tenth_of_its_blob_so_a_hard_kill_loses_at_most_that(
        fake: FakeRegistry) -> None:
    policy = UploadPolicy(chunked_from=1 << 16, patch_min=1 << 16,
                          patch_max=1 << 20,  # what the rate alone would allow, here
                          patch_seconds=1e6)  # whatever this machine's speed
    data, blob = blob_of(40 * (1 << 16))
    with Registry(fake.host, retry=FAST, upload_policy=policy) as client:
        client.upload_resumable("r/c", blob.digest, blob.size, source_of(data).open)
    assert fake.blobs["r/c"][blob.digest] == data
    # the first at _PATCH_MIN, then a tenth of the blob (4 × 64 KiB) each: 1 + ⌈39/4⌉, not 1 + ⌈39/16⌉
    assert len(fake.methods("PATCH")) == 11


def test_a_token_that_expires_mid_upload_is_renewed_and_the_upload_goes_on_from_where_it_stood(
        fake: FakeRegistry) -> None:
    policy = UploadPolicy(chunked_from=1 << 20, patch_min=2 << 20)  # streamed, not held: it can't be sent again
    fake.auth, fake.expire_on_patch = "bearer", 1  # the first PATCH meets a token that has just expired
    data, blob = blob_of(5 << 20)
    with Registry(fake.host, Credentials(fake.user, fake.password), retry=FAST, upload_policy=policy) as client:
        sent = client.upload_resumable("r/c", blob.digest, blob.size, source_of(data).open)
    assert fake.blobs["r/c"][blob.digest] == data
    assert fake.tokens_issued >= 2, "a new token after the expiry"
    assert sent >= blob.size


def test_an_upload_left_open_by_an_earlier_run_is_continued_from_the_journal(
        fake: FakeRegistry, tmp_path: Path) -> None:
    policy = UploadPolicy(chunked_from=1 << 16, patch_min=1 << 16, patch_max=1 << 16)
    data, blob = blob_of(4 * (1 << 16))
    patches = {"n": 0}

    def stop_after_two() -> bool:
        patches["n"] = len(fake.methods("PATCH"))
        return patches["n"] >= 2

    with Registry(fake.host, uploads=UploadJournal(tmp_path / "j"), upload_policy=policy) as first, \
            pytest.raises(Interrupted):
        first.upload_resumable("r/c", blob.digest, blob.size, source_of(data).open, stopping=stop_after_two)
    assert blob.digest not in fake.blobs.get("r/c", {})
    [state] = list((tmp_path / "j").iterdir())
    assert stat.S_IMODE(state.stat().st_mode) == 0o600 and stat.S_IMODE((tmp_path / "j").stat().st_mode) == 0o700
    assert json.loads(state.read_text())["offset"] == 2 * (1 << 16)
    again = source_of(data)
    with Registry(fake.host, uploads=UploadJournal(tmp_path / "j"), upload_policy=policy) as second:
        sent = second.upload_resumable("r/c", blob.digest, blob.size, again.open)
    assert again.opened == [2 * (1 << 16)] and sent == 2 * (1 << 16)
    assert fake.blobs["r/c"][blob.digest] == data and len(fake.methods("POST")) == 1
    assert not list((tmp_path / "j").iterdir()), "a finished upload is forgotten"


def test_an_upload_the_registry_lost_starts_again_from_zero(fake: FakeRegistry, tmp_path: Path) -> None:
    data, blob = blob_of(3 * (1 << 16))
    journal = UploadJournal(tmp_path)
    journal.put(fake.host, "r/c", blob.digest, OpenUpload(f"http://{fake.host}/v2/r/c/blobs/uploads/gone?_state=x", 99, 1e10))
    with Registry(fake.host, uploads=journal, upload_policy=UploadPolicy(chunked_from=1 << 16)) as client:
        assert client.upload_resumable("r/c", blob.digest, blob.size, source_of(data).open) == blob.size
    assert fake.blobs["r/c"][blob.digest] == data


def test_a_small_blob_is_one_put_and_a_reset_sends_it_again_whole(fake: FakeRegistry) -> None:
    data, blob = blob_of(200_000)
    fake.cut_at = 50_000
    with Registry(fake.host, retry=FAST) as client:
        sent = client.upload_resumable("r/c", blob.digest, blob.size, source_of(data).open)
    assert fake.blobs["r/c"][blob.digest] == data and sent > blob.size
    assert not fake.methods("PATCH") and len(fake.methods("POST")) == 2


def test_the_journal_holds_no_credentials_and_ignores_stale_or_foreign_entries(tmp_path: Path) -> None:
    journal = UploadJournal(tmp_path)
    journal.put("h", "r", "sha256:1", OpenUpload("http://h/v2/r/blobs/uploads/u?_state=s", 10, 1e10))
    assert journal.get("h", "r", "sha256:1") == OpenUpload("http://h/v2/r/blobs/uploads/u?_state=s", 10, 1e10)
    assert UploadJournal(tmp_path).get("h", "r", "sha256:1") is not None  # a new run reads it back
    assert UploadJournal(tmp_path).get("h", "r", "sha256:2") is None
    journal.put("h", "r", "sha256:3", OpenUpload("http://h/x", 1, 0.0))  # opened in 1970: expired
    assert UploadJournal(tmp_path).get("h", "r", "sha256:3") is None
    assert "password" not in "".join(p.read_text() for p in tmp_path.iterdir())
