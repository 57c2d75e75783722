"""A fake registry: the distribution API over real HTTP on 127.0.0.1, with the three auth styles real
registries use (none, Basic, Docker bearer tokens from a realm), the mount behaviours of distribution (201/202)
and Pulp (404), injected faults and dropped connections; and the blobs and sources tests upload.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cacheport.oci.format import OCI_INDEX, Descriptor, Manifest, sha256_digest
from cacheport.oci.retry import RetryPolicy


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


FAST = RetryPolicy(attempts=4, base=0.01, cap=5.0)


def blob_of(size: int, seed_: bytes = b"x") -> tuple[bytes, Descriptor]:
    data = hashlib.sha256(seed_).digest() * (size // 32 + 1)
    data = data[:size]
    return data, Descriptor("application/octet-stream", sha256_digest(data), size)


class Source:
    """A blob's bytes readable from any offset, in small chunks; remembers the offsets it was opened at."""

    def __init__(self, data: bytes, step: int = 1 << 16) -> None:
        self.data, self.step, self.opened = data, step, list[int]()

    @contextmanager
    def open(self, offset: int) -> Iterator[Iterator[bytes]]:
        self.opened.append(offset)
        yield iter([self.data[i:i + self.step] for i in range(offset, len(self.data), self.step)])


def source_of(data: bytes) -> Source:
    return Source(data)
