"""A hostile registry for tests, on 127.0.0.1, and a listener on 127.0.0.2 that records what reaches it.

The registry serves the distribution API; the first part of a repository's path picks its behaviour
(``/v2/<behaviour>/cache/...``), so one server covers every trick with one behaviour per path. Anything not
named in :data:`BEHAVIOURS` is a plain, well-behaved registry holding one small cache under the tag ``main``.
The recorder answers token requests (``{"token": "t0k"}``) and anything else with an empty tag list, and
keeps every request, so tests can say exactly where credentials went.

:func:`run_cli` runs ``cacheport.cli.main`` in this process with a given environment and working directory,
under a watchdog, and returns its exit status and output; a traceback is an exception out of it.
"""

from __future__ import annotations

import base64
import gzip
import io
import itertools
import json
import os
import re
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from cacheport.masking import mask, secret_forms
from cacheport.oci.format import CACHECONFIG, OCI_INDEX, OCI_LAYER, sha256_digest

USER, TOKEN = "u", "t0k"
ESCAPES = "\x1b[2J\x1b[31mPWNED\x07\x1b]0;title\x07"

#: behaviour -> what the registry does on that path.
BEHAVIOURS = {
    "realm-elsewhere": "401 with a Bearer realm on another host over plain HTTP (the recorder on 127.0.0.2)",
    "realm-own-host": "401 with a Bearer realm on its own host over plain HTTP (allowed: the registry's own)",
    "realm-not-url": "401 with a realm that is not a URL",
    "realm-file": "401 with a file:// realm",
    "token-list": "a token service that answers a JSON list",
    "token-endless": "a token service whose answer never ends",
    "redirect-loop": "every request redirected to itself",
    "redirect-elsewhere": "Basic auth, then a redirect to the recorder (which must get no credentials)",
    "gzip-lie": "Content-Encoding: gzip on a body that is plain JSON",
    "errors-dict": 'HTTP 400 with {"errors": {...}} where a list belongs',
    "errors-strings": 'HTTP 400 with {"errors": ["a", "b"]}',
    "tags-number": '{"tags": 5}',
    "tags-mixed": '{"tags": ["main", 5, null]}',
    "tags-escape": "a tag name holding terminal escape sequences",
    "not-json": "an HTML page where JSON belongs",
    "deep-json": "JSON nested 100,000 levels deep",
    "no-digest": "a cache index whose entries have no digest",
    "link-self": "a Link: rel=next to the same page",
    "link-foreign": "a Link: rel=next to the recorder on another host",
    "link-endless": "a Link: rel=next to a new page, forever",
    "endless-body": "a tag list that never ends",
    "slow-body": "a tag list sent one byte every 0.2 s",
    "echo": "Basic auth, then HTTP 403 whose message echoes our Authorization header and terminal escapes",
    "blob-endless": "a cache whose layer blob never ends",
    "bad-digest-header": "a Docker-Content-Digest header that is not a digest",
    "mediatype-escape": "a manifest whose own mediaType holds terminal escapes (and no Content-Type)",
}


@attrs.frozen
class Seen:
    """One request a server received.

    Attributes:
        method: the HTTP method.
        path: the path and query.
        authorization: its Authorization header, or "".
    """

    method: str
    path: str
    authorization: str


def _cache() -> tuple[dict[str, bytes], bytes]:
    layer = gzip.compress(b"\0" * 1024, mtime=0)
    config = json.dumps({"layers": [{"blob": sha256_digest(layer)}]}).encode()
    blobs = {sha256_digest(layer): layer, sha256_digest(config): config}
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_LAYER, "digest": sha256_digest(layer), "size": len(layer),
         "annotations": {"buildkit/createdat": "2026-01-01T00:00:00Z"}},
        {"mediaType": CACHECONFIG, "digest": sha256_digest(config), "size": len(config)},
    ]}).encode()
    return blobs, index


BLOBS, INDEX = _cache()


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up on an endless body is the point, not a failure worth a traceback


class _Server:
    def __init__(self, address: str, handler: type[BaseHTTPRequestHandler]) -> None:
        self.seen: list[Seen] = []
        self.server = _Quiet((address, 0), handler)
        self.server.daemon_threads = True
        self.server.owner = self  # type: ignore[attr-defined]
        self.host = f"{address}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def with_credentials(self) -> list[Seen]:
        return [s for s in self.seen if s.authorization.lower().startswith("basic")]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def owner(self) -> Any:
        return self.server.owner  # type: ignore[attr-defined]

    def log_message(self, *args: Any) -> None:
        pass

    def send(self, status: int, body: bytes | str | Any = b"", headers: Mapping[str, str] | None = None) -> None:
        if not isinstance(body, bytes | str):
            body = json.dumps(body)
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def endless(self, first: bytes = b'{"tags": ["', piece: bytes = b"x" * 65536, pause: float = 0.0) -> None:
        """A chunked body that goes on until the client hangs up."""
        import time

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in itertools.chain([first] if first else [], itertools.repeat(piece)):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                if pause:
                    time.sleep(pause)
        except OSError:
            pass
        self.close_connection = True

    def read_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                self.rfile.read(size + 2)
                if size == 0:
                    break

    def record(self) -> None:
        self.owner.seen.append(Seen(self.command, self.path, self.headers.get("Authorization", "")))


class _RecorderHandler(_Handler):
    def route(self) -> None:
        self.record()
        self.read_body()
        if urlsplit(self.path).path == "/token":
            self.send(200, {"token": TOKEN})
        else:
            self.send(200, {"name": "x", "tags": []}, {"Content-Type": "application/json"})

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = route


class _RegistryHandler(_Handler):
    def route(self) -> None:
        self.record()
        self.read_body()
        owner: HostileRegistry = self.owner
        url = urlsplit(self.path)
        path = url.path
        if path == "/v2/":
            return self.send(200, {}, {"Content-Type": "application/json"})
        if path == "/token":
            return self.send(200, {"token": TOKEN}, {"Content-Type": "application/json"})
        if path == "/token-list":
            return self.send(200, [1, 2], {"Content-Type": "application/json"})
        if path == "/token-endless":
            return self.endless(b'{"token": "')
        behaviour = path[len("/v2/"):].partition("/")[0]
        repo, kind, ref = self._split(path[len("/v2/"):])
        auth = self.headers.get("Authorization", "")
        json_type = {"Content-Type": "application/json"}

        realms = {
            "realm-elsewhere": f"http://{owner.recorder}/token",
            "realm-own-host": f"http://{owner.host}/token",
            "realm-not-url": "::not a url::",
            "realm-file": "file:///etc/passwd",
            "token-list": f"http://{owner.host}/token-list",
            "token-endless": f"http://{owner.host}/token-endless",
        }
        if behaviour in realms and auth != f"Bearer {TOKEN}":
            challenge = f'Bearer realm="{realms[behaviour]}",service="hostile",scope="repository:{repo}:pull"'
            return self.send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "token required"}]},
                             {"WWW-Authenticate": challenge, **json_type})
        if behaviour in ("redirect-elsewhere", "echo") and not auth.startswith("Basic "):
            return self.send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "who are you"}]},
                             {"WWW-Authenticate": 'Basic realm="hostile"', **json_type})
        if behaviour == "redirect-loop":
            return self.send(302, b"", {"Location": self.path})
        if behaviour == "redirect-elsewhere":
            return self.send(307, b"", {"Location": f"http://{owner.recorder}{self.path}"})
        if behaviour == "echo":
            return self.send(403, {"errors": [{"code": "DENIED", "message": f"{ESCAPES} you sent {auth}",
                                               "detail": {"header": auth}}]}, json_type)
        if behaviour == "errors-dict":
            return self.send(400, {"errors": {"code": "BAD", "message": "a dict"}}, json_type)
        if behaviour == "errors-strings":
            return self.send(400, {"errors": ["a", "b"]}, json_type)
        if kind == "tags":
            tags: Any = ["main"]
            headers = dict(json_type)
            if behaviour == "tags-number":
                tags = 5
            elif behaviour == "tags-mixed":
                tags = ["main", 5, None]
            elif behaviour == "tags-escape":
                tags = ["main", f"x{ESCAPES}"]
            elif behaviour == "not-json":
                return self.send(200, "<html><body>Welcome to nginx!</body></html>", {"Content-Type": "text/html"})
            elif behaviour == "deep-json":
                return self.send(200, "[" * 100_000 + "]" * 100_000, json_type)
            elif behaviour == "gzip-lie":
                headers["Content-Encoding"] = "gzip"
            elif behaviour == "link-self":
                headers["Link"] = f'<{self.path}>; rel="next"'
            elif behaviour == "link-foreign":
                headers["Link"] = f'<http://{owner.recorder}{path}?n=1000&last=main>; rel="next"'
            elif behaviour == "link-endless":
                page = int(dict(p.split("=", 1) for p in url.query.split("&") if "=" in p).get("page", "0"))
                tags = [f"t{page}"]
                headers["Link"] = f'</v2/{repo}/tags/list?n=1&page={page + 1}>; rel="next"'
            elif behaviour == "endless-body":
                return self.endless()
            elif behaviour == "slow-body":
                return self.endless(b'{"tags": ["', b"x", pause=0.2)
            return self.send(200, {"name": repo, "tags": tags}, headers)
        if kind == "manifests":
            if self.command == "PUT":
                return self.send(201, b"", {"Docker-Content-Digest": "sha256:" + "0" * 64})
            if self.command == "DELETE":
                return self.send(202)
            if ref not in ("main", sha256_digest(INDEX), "cacheport-doctor"):
                return self.send(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]}, json_type)
            data = INDEX
            if behaviour == "no-digest":
                doc = json.loads(INDEX)
                for entry in doc["manifests"]:
                    del entry["digest"]
                data = json.dumps(doc).encode()
            if behaviour == "mediatype-escape":
                data = json.dumps({"schemaVersion": 2, "mediaType": f"x{ESCAPES}", "manifests": []}).encode()
            digest = "../../../v2/other/manifests/x" if behaviour == "bad-digest-header" else sha256_digest(data)
            media_type = "application/json" if behaviour == "mediatype-escape" else OCI_INDEX
            return self.send(200, data, {"Content-Type": media_type, "Docker-Content-Digest": digest})
        if kind == "blobs":
            if ref.startswith("uploads"):
                if self.command == "POST":
                    return self.send(202, b"", {"Location": f"/v2/{repo}/blobs/uploads/1?_state=s"})
                return self.send(201, b"", {"Location": f"/v2/{repo}/blobs/x"})
            if ref not in BLOBS:
                return self.send(404, {"errors": [{"code": "BLOB_UNKNOWN", "message": "unknown"}]}, json_type)
            if behaviour == "blob-endless" and self.command == "GET":
                return self.endless(b"", b"\0" * 65536)
            return self.send(200, BLOBS[ref], {"Docker-Content-Digest": ref})
        return self.send(404, {"errors": [{"code": "NAME_UNKNOWN", "message": "unknown"}]}, json_type)

    @staticmethod
    def _split(rest: str) -> tuple[str, str, str]:
        if rest.endswith("/tags/list"):
            return rest[: -len("/tags/list")], "tags", ""
        for kind in ("manifests", "blobs"):
            repo, sep, ref = rest.partition(f"/{kind}/")
            if sep:
                return repo, kind, ref
        return rest, "", ""

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = route


class Recorder(_Server):
    """The listener on 127.0.0.2: answers token requests with a token, and records everything."""

    def __init__(self) -> None:
        super().__init__("127.0.0.2", _RecorderHandler)


class HostileRegistry(_Server):
    """The registry on 127.0.0.1: :data:`BEHAVIOURS` by repository path, a good registry elsewhere."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__("127.0.0.1", _RegistryHandler)
        self.recorder = recorder.host

    def ref(self, behaviour: str) -> str:
        return f"{self.host}/{behaviour}/cache"


@contextmanager
def servers() -> Iterator[tuple[HostileRegistry, Recorder]]:
    recorder = Recorder()
    registry = HostileRegistry(recorder)
    recorder.start()
    registry.start()
    try:
        yield registry, recorder
    finally:
        registry.stop()
        recorder.stop()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- running the CLI in this process --------------------------------------------------------------------------


class Hung(BaseException):
    """A command did not end in time (a BaseException, so that no ``except Exception`` swallows it)."""


@attrs.frozen
class Result:
    """What one run of the CLI did.

    Attributes:
        code: the exit status.
        out: what it printed on stdout.
        err: what it printed on stderr.
    """

    code: int
    out: str
    err: str


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_cli(argv: Sequence[str], env: Mapping[str, str], cwd: Path, *, seconds: float = 60,
            tty: bool = False) -> Result:
    """``cacheport ARGV`` in this process, in ``cwd`` with exactly ``env``; :class:`Hung` after ``seconds``."""
    from cacheport.cli import main

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    out: io.StringIO = _Terminal() if tty else io.StringIO()
    err = io.StringIO()

    def hung(_signum: int, _frame: object) -> None:
        raise Hung(f"cacheport {' '.join(argv)} did not end within {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    code = 0
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main(list(argv))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return Result(code, out.getvalue(), err.getvalue())


def stand_in_docker(path: Path, version: str = "exit", buildx: str = "exit") -> Path:
    """A ``docker`` that is not Docker: ``exit`` fails like an absent daemon; ``garbage`` answers exit 0 with
    output no Docker prints (escape sequences and all); ``echo-env`` prints its environment."""
    answers = {
        "exit": 'echo "Cannot connect to the Docker daemon at unix:///nowhere.sock" >&2; exit 1',
        "garbage": f"printf '%s\\n' '{ESCAPES}' 'not json {{'; exit 0",
        "echo-env": "env; exit 0",
    }
    path.write_text("#!/bin/sh\n"
                    'case "$1 $2" in\n'
                    f'  "buildx "*) {answers[buildx]} ;;\n'
                    f"  *) {answers[version]} ;;\n"
                    "esac\n")
    path.chmod(0o755)
    return path


# --- what every run must look like ---------------------------------------------------------------------------

MARKER = "Mk7-s3cr3t-value-9f2c"


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A bare environment (no CI), a home and a working directory under ``tmp_path``, a stand-in docker."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (tmp_path / "work").mkdir(exist_ok=True)
    docker = stand_in_docker(tmp_path / "docker")
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "CACHEPORT_DOCKER": str(docker), **extra}


def assert_clean(result: Result, *, secrets: tuple[str, ...] = (MARKER,)) -> None:
    """No traceback, no secret (nor its base64), no terminal escape; an error is one line."""
    text = result.out + result.err
    assert result.code in (0, 1, 2), result
    assert "Traceback" not in text and "internal error" not in text, text
    assert "\x07" not in text and "\x1b" not in re.sub(r"\x1b\[[0-9;]*m", "", text), text
    forms = secret_forms(secrets)
    assert mask(text, forms) == text, f"a secret reached the output: {text}"
    errors = [line for line in result.err.splitlines() if line.startswith("cacheport: error:")]
    assert len(errors) <= 1, result.err
    if result.code == 2:
        said = [line for line in result.err.splitlines() if not line.startswith("cacheport: warning: ")]
        assert said == errors, result.err
