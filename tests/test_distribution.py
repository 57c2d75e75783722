"""The registry client: challenge parsing, credentials, and every operation against an in-process fake registry.

The fake speaks the distribution API over real HTTP on 127.0.0.1, with the three auth styles real registries
use (none, Basic, Docker bearer tokens from a realm) and the mount behaviours of distribution (201/202) and
Pulp (404). The real registries, Pulp and a real token server are in tests/e2e/test_seed.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from cacheport.errors import RegistryError
from cacheport.oci.auth import Credentials, docker_config_credentials, parse_challenge
from cacheport.oci.copy import copy_blob
from cacheport.oci.format import OCI_INDEX, OCI_MANIFEST, Manifest, sha256_digest
from cacheport.oci.reference import Reference, parse_reference
from cacheport.oci.registry import Registry
from cacheport.oci.repository import RegistryRepository
from cacheport.oci.upload import CHUNK, UploadPolicy, _Take

# --- a fake registry --------------------------------------------------------------------------------------------


class FakeRegistry:
    """A small distribution-API server on 127.0.0.1 (threads; stopped by the fixture)."""

    def __init__(self, auth: str = "none", mount: str = "201", user: str = "u", password: str = "p",
                 page: int = 0) -> None:
        self.auth, self.mount, self.user, self.password, self.page = auth, mount, user, password, page
        # faults to inject: (METHOD, path regex, status, headers), each answered once, in order of matching
        self.faults: list[tuple[str, str, int, dict[str, str]]] = []
        # a PATCH (or PUT with a body) that keeps this many bytes of its body, then drops the connection
        self.cut_at: int | None = None
        #: PATCHes to answer 401 to (once each) as if their token had just expired: a new token is needed.
        self.expire_on_patch = 0
        self.expired: set[str] = set()
        self.tokens_issued = 0
        self.lock = threading.Lock()
        self.blobs: dict[str, dict[str, bytes]] = {}
        self.manifests: dict[str, dict[str, tuple[str, bytes]]] = {}
        self.uploads: dict[str, tuple[str, bytearray]] = {}
        self.log: list[tuple[str, str]] = []
        self.token_requests: list[dict[str, list[str]]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> FakeRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    # what tests put in and read back
    def add_blob(self, repo: str, data: bytes) -> str:
        digest = sha256_digest(data)
        self.blobs.setdefault(repo, {})[digest] = data
        return digest

    def add_manifest(self, repo: str, tag: str, document: dict[str, Any]) -> Manifest:
        manifest = Manifest.from_json(document)
        store = self.manifests.setdefault(repo, {})
        store[tag] = store[manifest.digest] = (manifest.media_type, manifest.data)
        return manifest

    def methods(self, method: str) -> list[str]:
        return [path for m, path in self.log if m == method]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, status: int, code: str, headers: dict[str, str] | None = None) -> None:
                body = json.dumps({"errors": [{"code": code, "message": code.lower().replace("_", " ")}]})
                self._send(status, body.encode(), {"Content-Type": "application/json", **(headers or {})})

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _authorized(self, scopes: list[str]) -> bool:
                header = self.headers.get("Authorization", "")
                if fake.auth == "none":
                    return True
                if fake.auth == "basic":
                    ok = header == "Basic " + base64.b64encode(f"{fake.user}:{fake.password}".encode()).decode()
                    if not ok:
                        self._error(401, "UNAUTHORIZED", {"WWW-Authenticate": 'Basic realm="fake"'})
                    return ok
                granted: set[tuple[str, str]] = set()
                if header.startswith("Bearer ") and self.command == "PATCH" and fake.expire_on_patch:
                    fake.expire_on_patch -= 1
                    fake.expired.add(header)
                if header.startswith("Bearer ") and header not in fake.expired:
                    for scope in json.loads(base64.b64decode(header[7:])):
                        _type, name, actions = scope.rsplit(":", 2)[0].split(":")[0], *scope.split(":")[1:]
                        granted |= {(name, a) for a in actions.split(",")}
                wanted = {(s.split(":")[1], a) for s in scopes for a in s.split(":")[2].split(",")}
                if header.startswith("Bearer ") and wanted <= granted:
                    return True
                scope = f',scope="{" ".join(scopes)}"' if scopes else ""
                challenge = f'Bearer realm="http://{fake.host}/token",service="fake"{scope}'
                self._error(401, "UNAUTHORIZED", {"WWW-Authenticate": challenge})
                return False

            def _fault(self) -> bool:
                with fake.lock:
                    found = next((f for f in fake.faults if f[0] == self.command and re.search(f[1], self.path)), None)
                    if found is not None:
                        fake.faults.remove(found)
                if found is None:
                    return False
                fake.log.append((self.command, self.path))
                self._body()
                self._error(found[2], "INJECTED", found[3])
                return True

            def _cut(self) -> bool:
                """Keep the start of an upload's body, as distribution 3 does, then drop the connection."""
                with fake.lock:
                    keep, fake.cut_at = fake.cut_at, None
                upload = urlsplit(self.path).path.rpartition("/uploads/")[2]
                if keep is None or upload not in fake.uploads:
                    fake.cut_at = keep
                    return False
                fake.log.append((self.command, self.path))
                fake.uploads[upload][1].extend(self.rfile.read(keep))
                self.close_connection = True
                self.connection.shutdown(2)
                return True

            def _route(self) -> None:
                if self._fault():
                    return
                if self.command in ("PATCH", "PUT") and "/uploads/" in self.path and fake.cut_at is not None \
                        and int(self.headers.get("Content-Length") or 0) > (fake.cut_at or 0) and self._cut():
                    return
                body = self._body() if self.command in ("PUT", "PATCH", "POST") else b""
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                path = url.path
                fake.log.append((self.command, self.path))
                if path == "/token":
                    return self._token(query)
                if path == "/v2/":
                    if self._authorized([]):
                        self._send(200, b"{}", {"Content-Type": "application/json"})
                    return
                repo, _, rest = path[len("/v2/"):].partition("/blobs/")
                kind = "blobs"
                if not rest:
                    repo, _, rest = path[len("/v2/"):].partition("/manifests/")
                    kind = "manifests"
                if not rest and path.endswith("/tags/list"):
                    repo, kind = path[len("/v2/"):-len("/tags/list")], "tags"
                write = self.command in ("PUT", "PATCH", "POST")
                scopes = [f"repository:{repo}:{'pull,push' if write else 'delete' if self.command == 'DELETE' else 'pull'}"]
                if kind == "blobs" and "mount" in query:
                    scopes.append(f"repository:{query['from'][0]}:pull")
                if not self._authorized(scopes):
                    return
                getattr(self, f"_{kind}")(repo, rest, query, body)

            def _token(self, query: dict[str, list[str]]) -> None:
                fake.token_requests.append(query)
                good = "Basic " + base64.b64encode(f"{fake.user}:{fake.password}".encode()).decode()
                if self.headers.get("Authorization") != good:
                    return self._error(401, "UNAUTHORIZED")
                fake.tokens_issued += 1  # each token differs, so an expired one can be told apart
                token = base64.b64encode(json.dumps([*query.get("scope", []), f"n:{fake.tokens_issued}:"]).encode()
                                         ).decode()
                self._send(200, json.dumps({"token": token}).encode(), {"Content-Type": "application/json"})

            def _tags(self, repo: str, rest: str, query: dict[str, list[str]], body: bytes) -> None:
                if repo not in fake.manifests:
                    return self._error(404, "NAME_UNKNOWN")
                tags = sorted(t for t in fake.manifests[repo] if not t.startswith("sha256:"))
                last = query.get("last", [""])[0]
                tags = [t for t in tags if t > last]
                headers = {"Content-Type": "application/json"}
                if fake.page and len(tags) > fake.page:
                    tags = tags[: fake.page]
                    headers["Link"] = f'</v2/{repo}/tags/list?{urlencode({"n": fake.page, "last": tags[-1]})}>; rel="next"'
                self._send(200, json.dumps({"name": repo, "tags": tags}).encode(), headers)

            def _manifests(self, repo: str, ref: str, query: dict[str, list[str]], body: bytes) -> None:
                store = fake.manifests.setdefault(repo, {})
                if self.command in ("GET", "HEAD"):
                    if ref not in store:
                        return self._error(404, "MANIFEST_UNKNOWN")
                    media_type, data = store[ref]
                    return self._send(200, data, {"Content-Type": media_type,
                                                  "Docker-Content-Digest": sha256_digest(data)})
                if self.command == "PUT":
                    doc = json.loads(body)
                    missing = [d["digest"] for d in [doc.get("config") or {}, *doc.get("layers", []),
                                                     *doc.get("manifests", [])]
                               if d and d["digest"] not in fake.blobs.get(repo, {}) and d["digest"] not in store]
                    if missing:
                        return self._error(400, "MANIFEST_BLOB_UNKNOWN")
                    digest = sha256_digest(body)
                    store[ref] = store[digest] = (self.headers["Content-Type"], body)
                    return self._send(201, headers={"Docker-Content-Digest": digest, "Location": f"/v2/{repo}/manifests/{digest}"})
                if self.command == "DELETE":
                    if ref not in store:
                        return self._error(404, "MANIFEST_UNKNOWN")
                    for key in [k for k, v in store.items() if sha256_digest(v[1]) == ref]:
                        del store[key]
                    return self._send(202)
                self._error(405, "UNSUPPORTED")

            def _blobs(self, repo: str, rest: str, query: dict[str, list[str]], body: bytes) -> None:
                have = fake.blobs.setdefault(repo, {})
                if rest.startswith("sha256:"):
                    if rest not in have:
                        return self._error(404, "BLOB_UNKNOWN")
                    data = have[rest]
                    return self._send(200, data, {"Content-Length": str(len(data)),
                                                  "Docker-Content-Digest": rest})
                if self.command == "POST" and "mount" in query:
                    digest, source = query["mount"][0], query["from"][0]
                    if fake.mount == "201" and digest in fake.blobs.get(source, {}):
                        have[digest] = fake.blobs[source][digest]
                        return self._send(201, headers={"Location": f"/v2/{repo}/blobs/{digest}"})
                    if fake.mount == "404":  # Pulp
                        return self._error(404, "BLOB_UNKNOWN")
                if self.command == "POST":
                    upload = uuid.uuid4().hex
                    fake.uploads[upload] = (repo, bytearray())
                    return self._send(202, headers={"Location": f"/v2/{repo}/blobs/uploads/{upload}?_state=s{upload}",
                                                    "Range": "0-0"})
                upload = rest.removeprefix("uploads/")
                if upload not in fake.uploads or query.get("_state") != [f"s{upload}"]:
                    return self._error(404, "BLOB_UPLOAD_UNKNOWN")
                if self.command == "DELETE":
                    del fake.uploads[upload]
                    return self._send(204)
                _repo, data = fake.uploads[upload]
                if self.command == "GET":  # where an upload stands, as distribution 3 reports it
                    return self._send(204, headers={"Location": f"/v2/{repo}/blobs/uploads/{upload}?_state=s{upload}",
                                                    "Range": f"0-{max(len(data) - 1, 0)}"})
                if self.command == "PATCH":
                    start = int(self.headers.get("Content-Range", "0-0").split("-")[0])
                    if start != len(data):
                        return self._error(416, "BLOB_UPLOAD_INVALID")
                    data += body
                    return self._send(202, headers={"Location": f"/v2/{repo}/blobs/uploads/{upload}?_state=s{upload}",
                                                    "Range": f"0-{len(data) - 1}"})
                data += body
                digest = query["digest"][0]
                if sha256_digest(bytes(data)) != digest:
                    return self._error(400, "DIGEST_INVALID")
                have[digest] = bytes(data)
                del fake.uploads[upload]
                self._send(201, headers={"Location": f"/v2/{repo}/blobs/{digest}", "Docker-Content-Digest": digest})

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _route

        return Handler


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    with FakeRegistry() as registry:
        yield registry


def cache_index(fake: FakeRegistry, repo: str, tag: str, layers: int = 2, annotations: bool = True) -> Manifest:
    """A BuildKit-style index-format cache: layer entries, then the cacheconfig entry."""
    entries = []
    for i in range(layers):
        data = f"layer {i} of {repo}:{tag}".encode() * (i + 1)
        entries.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": fake.add_blob(repo, data),
                        "size": len(data),
                        **({"annotations": {"buildkit/createdat": f"2026-01-0{i + 1}T00:00:00Z"}} if annotations else {})})
    config = json.dumps({"layers": [], "records": []}).encode()
    entries.append({"mediaType": "application/vnd.buildkit.cacheconfig.v0", "digest": fake.add_blob(repo, config),
                    "size": len(config)})
    return fake.add_manifest(repo, tag, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})


# --- pure parts -------------------------------------------------------------------------------------------------


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
    assert expected.reference == (expected.digest or expected.tag or "latest")


@pytest.mark.parametrize("ref", ["", "r.example/", "r.example/app@nodigest"])
def test_parse_reference_rejects(ref: str) -> None:
    with pytest.raises(RegistryError, match="not an image reference"):
        parse_reference(ref)


def test_docker_config_credentials(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({
        "auths": {
            "https://reg.example.com/v1/": {"auth": base64.b64encode(b"alice:s3:cret").decode()},
            "other.example": {"username": "bob", "password": "pw"},
            "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:tok").decode()},
            "broken.example": {"auth": "!!!"},
        },
        "credsStore": "desktop",
    }))
    env = {"DOCKER_CONFIG": str(tmp_path)}
    assert docker_config_credentials("reg.example.com", env) == Credentials("alice", "s3:cret")
    assert docker_config_credentials("other.example", env) == Credentials("bob", "pw")
    assert docker_config_credentials("registry-1.docker.io", env) == Credentials("hub", "tok")
    assert docker_config_credentials("broken.example", env) is None
    assert docker_config_credentials("unknown.example", env) is None
    assert docker_config_credentials("reg.example.com", {"DOCKER_CONFIG": str(tmp_path / "none")}) is None
    assert "s3:cret" not in repr(Credentials("alice", "s3:cret"))


def test_take_hands_out_runs_of_an_exact_length_without_holding_more_than_one_chunk() -> None:
    take = _Take(iter([b"abc", b"defgh", b"", b"ij"])).take
    assert [b"".join(take(n, "h")) for n in (4, 4, 2)] == [b"abcd", b"efgh", b"ij"]
    take = _Take(iter([b"x" * 10])).take
    assert [b"".join(take(n, "h")) for n in (3, 3, 3, 1)] == [b"xxx", b"xxx", b"xxx", b"x"]
    with pytest.raises(RegistryError, match="ended 1 bytes early"):
        b"".join(take(1, "h"))


def test_manifest_descriptors_and_size() -> None:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "c", "digest": "sha256:1", "size": 10},
           "layers": [{"mediaType": "l", "digest": "sha256:2", "size": 5, "annotations": {"a": "b"}}]}
    manifest = Manifest.from_json(doc)
    assert not manifest.is_index
    assert [d.digest for d in manifest.descriptors()] == ["sha256:1", "sha256:2"]
    assert manifest.descriptors()[1].annotations == {"a": "b"}
    assert manifest.size == 15
    assert manifest.digest == sha256_digest(manifest.data) == Manifest.from_json(doc).digest


# --- against the fake -------------------------------------------------------------------------------------------


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
