"""Retries: 429/5xx answers, Retry-After and dropped connections, for the requests that can be sent again.
"""

from __future__ import annotations

import httpx
import pytest

from cacheport.errors import RegistryError
from cacheport.oci.registry import Registry
from cacheport.oci.retry import retry_after, send_with_retries
from cacheport.oci.upload import UploadPolicy
from tests.fakes.registry import FAST, FakeRegistry, blob_of, cache_index


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    assert retry_after("3") == 3.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after("soon") is None and retry_after(None) is None


def test_a_503_with_retry_after_is_retried_after_waiting_that_long(fake: FakeRegistry) -> None:
    fake.faults.append(("GET", r"/v2/$", 503, {"Retry-After": "2"}))
    waits: list[float] = []
    with Registry(fake.host) as client:
        response = send_with_retries(lambda: client._client.get("/v2/"), FAST, sleep=waits.append)
    assert response.status_code == 200 and waits == [2.0]


def test_429_and_5xx_are_retried_a_bounded_number_of_times_then_one_line_names_the_registry(fake: FakeRegistry) -> None:
    fake.faults += [("GET", "/tags/list", 429, {}), ("GET", "/tags/list", 502, {})]
    with Registry(fake.host, retry=FAST) as client:
        cache_index(fake, "r/c", "main")
        assert client.list_tags("r/c") == ["main"]
        fake.faults += [("GET", "/tags/list", 503, {})] * 10
        with pytest.raises(RegistryError) as caught:
            client.list_tags("r/c")
    message = str(caught.value)
    assert message.startswith(f"{fake.host}: GET /v2/r/c/tags/list: HTTP 503") and "gave up after 4 tries" in message
    assert "\n" not in message and caught.value.status == 503
    assert [m for m, p in fake.log if "tags/list" in p].count("GET") == 2 + 1 + 4


def test_a_retry_after_beyond_the_cap_is_not_waited_for(fake: FakeRegistry) -> None:
    fake.faults.append(("GET", r"/v2/$", 503, {"Retry-After": "3600"}))
    with Registry(fake.host, retry=FAST) as client, pytest.raises(RegistryError, match="HTTP 503"):
        client.ping()
    assert len(fake.log) == 1


def test_a_dropped_connection_is_retried_for_requests_that_can_be_sent_again() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, json={"tags": ["a"]})

    with Registry("reg.example", transport=httpx.MockTransport(handler), retry=FAST) as client:
        assert client.list_tags("r") == ["a"]
    assert calls == ["GET", "GET"]


def test_a_patch_or_a_streamed_body_is_never_sent_twice_by_the_retry_layer(fake: FakeRegistry) -> None:
    fake.faults.append(("PATCH", "/uploads/", 503, {}))
    data, blob = blob_of(5000)
    in_patches = UploadPolicy(chunked_from=4096, patch_min=4096, patch_max=4096)
    with Registry(fake.host, retry=FAST, upload_policy=in_patches) as client, \
            pytest.raises(RegistryError, match="HTTP 503"):
        client.upload_blob("r/c", blob.digest, blob.size, iter([data]))
    assert [m for m, _ in fake.log].count("PATCH") == 1
