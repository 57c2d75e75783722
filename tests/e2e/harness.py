"""The end-to-end harness as tests see it: the servers scripts/e2e-up started, and a reference build.

Reads ``$CACHEPORT_E2E_STATE/env`` (default /var/tmp/cacheport-e2e/env), or the same variables from the
environment. Without them the e2e tests skip, unless CACHEPORT_E2E=require, where a skip is a failure.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs

REQUIRED = ("CACHEPORT_E2E_DOCKER_HOST", "CACHEPORT_E2E_DOCKER_CONFIG", "CACHEPORT_E2E_DOCKER_BIN",
            "CACHEPORT_E2E_REGISTRY", "CACHEPORT_E2E_BUSYBOX")
RAN = "cacheport-ran:"
MANIFEST_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
ENGINE_KEYS = ("CACHEPORT_E2E_DOCKER_HOST", "CACHEPORT_E2E_DOCKER_BIN", "CACHEPORT_E2E_DOCKER_CONFIG")
# Where scripts/e2e-up records each BuildKit generation's engine: dockerd socket, docker client, DOCKER_CONFIG
# (whose cli-plugins/ holds that generation's buildx). Which tests run on which is decided in conftest.py.
GENERATION_KEYS = {
    "old": ENGINE_KEYS,  # Docker 26, buildx 0.13 (BuildKit 0.13), from Debian trixie
    "current": ("CACHEPORT_E2E_CURRENT_DOCKER_HOST", "CACHEPORT_E2E_CURRENT_DOCKER_BIN",
                "CACHEPORT_E2E_CURRENT_DOCKER_CONFIG"),  # Docker 28.5, buildx 0.29 (BuildKit 0.25), Debian sid
}


# BuildKit itself (scripts/e2e-buildkit.sh): the image for buildx's docker-container driver, tagged on a loopback
# registry; the buildkitd.toml that marks the loopback registries plain HTTP; the standalone buildkitd's socket for
# the remote driver. Where ../shared/buildkit is missing, e2e-up writes BUILDKIT_MISSING (why) instead.
BUILDKIT_KEYS = ("CACHEPORT_E2E_BUILDKIT_IMAGE", "CACHEPORT_E2E_BUILDKITD_CONFIG", "CACHEPORT_E2E_BUILDKIT_ADDR")
BUILDKIT_MISSING = "CACHEPORT_E2E_BUILDKIT_MISSING"


def buildkit_not_provisioned(env: Mapping[str, str], mode: str) -> str:
    """Why the tests on our own BuildKit are left out of the run (e2e-up could not provision it), or "".

    Never under ``CACHEPORT_E2E=require`` (``mode``): there they run, and their fixture fails saying why, since a
    test that CI does not run is a skip, and a skip there is a failure (s3 and azblob are tested only there).
    """
    why = env.get(BUILDKIT_MISSING, "")
    if mode == "require" or not why or env.get(BUILDKIT_KEYS[0]):
        return ""
    return why


def _variables(prefix: str, state: Path) -> dict[str, str]:
    """Variables starting with ``prefix``: from the environment, else from ``state/env`` (``export K='v'`` lines)."""
    found = {k: v for k, v in os.environ.items() if k.startswith(prefix)}
    env_file = state / "env"
    if env_file.is_file():
        for line in env_file.read_text().splitlines():
            if line.startswith("export ") and "=" in line:
                key, _, value = line[len("export "):].partition("=")
                found.setdefault(key, shlex.split(value)[0] if value else "")
    return found


def read_env() -> tuple[dict[str, str], str]:
    """The harness variables, and why they are missing (empty when all are there)."""
    found = _variables("CACHEPORT_E2E_", Path(os.environ.get("CACHEPORT_E2E_STATE", "/var/tmp/cacheport-e2e")))
    missing = [k for k in REQUIRED if not found.get(k)]
    if missing:
        return found, f"e2e harness not running (no {', '.join(missing)}; run scripts/e2e-up as root)"
    return found, ""


def bench_harness() -> Harness | None:
    """For a benchmark in ``bench/``: the harness, or None after saying on stderr why it is not running."""
    env, why = read_env()
    if why:
        print(why, file=sys.stderr)
        return None
    return Harness(env)


@attrs.frozen
class Result:
    """One ``cacheport build``: its exit code, its whole log, and the files it output."""

    code: int
    log: str
    out: Path

    @property
    def ran(self) -> list[str]:
        """The RUN steps that executed (each reference RUN prints a marker when it does)."""
        return [line for line in self.log.splitlines() if RAN in line and "echo" not in line]

    @property
    def cache(self) -> dict[str, dict[str, str]]:
        return cache_report(self.log)

    @property
    def rand(self) -> str:
        return (self.out / "rand").read_text()

    @property
    def layers(self) -> list[str]:
        """The image's layer digests, from the OCI archive a build with ``oci=True`` wrote beside ``out``."""
        with tarfile.open(f"{self.out}.oci.tar") as tar:
            def blob(digest: str) -> Any:
                found = tar.extractfile(f"blobs/{digest.replace(':', '/', 1)}")
                assert found is not None, digest
                return json.load(found)

            index = tar.extractfile("index.json")
            assert index is not None
            doc = blob(json.load(index)["manifests"][0]["digest"])
            # With attestations the image is one manifest of an index; the attestation's platform is unknown.
            while "manifests" in doc:
                doc = blob(next(m["digest"] for m in doc["manifests"]
                                if m.get("platform", {}).get("os") != "unknown"))
            return [layer["digest"] for layer in doc["layers"]]


def _engines(env: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    return {name: tuple(env.get(k, "") for k in keys) for name, keys in GENERATION_KEYS.items()}


@attrs.define
class Harness:
    """The servers, with one engine (dockerd + its docker client and buildx) that builds go to.

    Attributes:
        env: the harness variables; ``CACHEPORT_E2E_DOCKER_*`` name the engine this harness uses.
        generation: which BuildKit generation that engine is (a key of GENERATION_KEYS), or ``""`` for another.
        engines: every generation's engine as scripts/e2e-up recorded it, kept across switches.
    """

    env: dict[str, str]
    generation: str = "old"
    engines: dict[str, tuple[str, ...]] = attrs.field(
        default=attrs.Factory(lambda self: _engines(self.env), takes_self=True))

    @property
    def docker_env(self) -> dict[str, str]:
        bin_dir = str(Path(self.env["CACHEPORT_E2E_DOCKER_BIN"]).parent)
        return {
            "DOCKER_HOST": self.env["CACHEPORT_E2E_DOCKER_HOST"],
            "DOCKER_CONFIG": self.env["CACHEPORT_E2E_DOCKER_CONFIG"],
            "CACHEPORT_DOCKER": self.env["CACHEPORT_E2E_DOCKER_BIN"],
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        }

    def with_docker_host(self, docker_host: str, docker_bin: str = "", docker_config: str = "") -> Harness:
        """The same harness with another dockerd; the same client and buildx unless given."""
        engine = dict(zip(ENGINE_KEYS, (docker_host, docker_bin, docker_config), strict=True))
        env = {**self.env, **{k: v for k, v in engine.items() if v}}
        return Harness(env, generation="", engines=self.engines)

    def on(self, generation: str) -> Harness:
        """The same servers with the given BuildKit generation's engine, client and buildx."""
        host, docker_bin, config = self.engines[generation]
        if not (host and docker_bin and config):
            missing = [k for k, v in zip(GENERATION_KEYS[generation], self.engines[generation], strict=True) if not v]
            raise LookupError(f"no {', '.join(missing)} (run scripts/e2e-up as root)")
        return attrs.evolve(self.with_docker_host(host, docker_bin, config), generation=generation)

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.env["CACHEPORT_E2E_DOCKER_BIN"], *args], capture_output=True, text=True,
                              env={**os.environ, **self.docker_env}, check=check, timeout=300)

    @contextmanager
    def builder(self, driver: str) -> Iterator[str]:
        """A new buildx builder of our own BuildKit, removed on exit: ``docker-container`` (the provisioned image,
        on the host's network, with the buildkitd.toml) or ``remote`` (the standalone buildkitd, its cache
        emptied). Not made the current builder: a build names it with ``--builder`` or ``BUILDX_BUILDER``."""
        image, config, addr = (self.env.get(k, "") for k in BUILDKIT_KEYS)
        if not (image and config and addr):
            raise LookupError(f"no {', '.join(k for k in BUILDKIT_KEYS if not self.env.get(k))} "
                              "(run scripts/e2e-up as root, with ../shared/buildkit beside the repository)")
        if driver == "docker-container":
            # buildx 0.13 calls it --config; later ones --buildkitd-config (--config is gone from their help).
            helped = self.docker("buildx", "create", "--help").stdout
            flag = "--buildkitd-config" if "--buildkitd-config" in helped else "--config"
            how = ["--driver", driver, "--driver-opt", f"image={image},network=host", flag, config]
        elif driver == "remote":
            how = ["--driver", driver, addr]
        else:
            raise ValueError(f"no BuildKit of our own for the {driver} driver")
        name = f"cacheport-e2e-{driver}-{uuid.uuid4().hex[:8]}"
        try:  # a failed bootstrap may leave the builder behind as well
            made = self.docker("buildx", "create", "--name", name, *how, "--bootstrap", check=False)
            assert made.returncode == 0, f"buildx create {name} failed: {made.stderr}"
            if driver == "remote":
                # Every remote builder is the one standalone buildkitd: empty its cache, as a new one's would be.
                self.docker("buildx", "prune", "-af", "--builder", name)
            yield name
        finally:
            self.docker("buildx", "rm", name, check=False)

    def prune(self) -> None:
        """Forget everything BuildKit has locally, so only an imported cache can make a build warm."""
        self.docker("buildx", "prune", "-af")

    def project(self, root: Path, name: str = "app", work: float = 4.0) -> Path:
        """A build context that pulls nothing, with RUN steps that print a marker and take ``work`` seconds."""
        ctx = root / name
        ctx.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.env["CACHEPORT_E2E_BUSYBOX"], ctx / "busybox")
        marker = uuid.uuid4().hex  # separate projects never share layers
        (ctx / "Dockerfile").write_text(
            "FROM scratch\n"
            "COPY busybox /bin/busybox\n"
            f'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && echo {RAN} install"]\n'
            f"RUN echo {RAN} slow && sleep {work / 2:g} && echo {marker} > /marker\n"
            f"RUN echo {RAN} random && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /rand && sleep {work / 2:g}\n"
        )
        return ctx

    def build(self, ctx: Path, *args: str, env: Mapping[str, str] | None = None, out: Path | None = None,
              extra: tuple[str, ...] = (), output: bool = True, oci: bool = False) -> Result:
        """``cacheport build`` in ``ctx``, writing the image's files to ``out`` (unless ``output`` is False) and,
        with ``oci``, the image as an OCI archive to ``out.oci.tar`` too (two exporters: BuildKit 0.13+)."""
        out = out or ctx.parent / f"out-{uuid.uuid4().hex[:8]}"
        outputs = [f"--output=type=local,dest={out}"] if output else []
        outputs += [f"--output=type=oci,dest={out}.oci.tar"] if oci else []
        cmd = [sys.executable, "-m", "cacheport", "build", ".", *args, "--", "--network=host", *outputs, *extra]
        # Cache mounts' helper builds start from the local helper image, never from one pulled from outside.
        helper = {"CACHEPORT_MOUNTS__HELPER_IMAGE": self.env["CACHEPORT_E2E_HELPER_IMAGE"]} if self.env.get(
            "CACHEPORT_E2E_HELPER_IMAGE") else {}
        proc = subprocess.run(cmd, cwd=ctx, capture_output=True, text=True, timeout=600,
                              env={**clean_environ(), **self.docker_env, **helper, **(env or {})})
        return Result(proc.returncode, proc.stdout + proc.stderr, out)

    def tags(self, registry: str, repo: str, auth: tuple[str, str] | None = None, *,
             records: bool = False) -> list[str]:
        """The tags a registry holds for a repository (none if it has never heard of it), without the build
        records of the cache's history (``cacheport-history-…``), or with them when ``records``."""
        return [t for t in self._tags(registry, repo, auth) if records or not t.startswith("cacheport-history-")]

    def _tags(self, registry: str, repo: str, auth: tuple[str, str] | None) -> list[str]:
        request = urllib.request.Request(f"http://{registry}/v2/{repo}/tags/list")
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return sorted(json.load(response).get("tags") or [])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise

    def manifest(self, registry: str, repo: str, tag: str, auth: tuple[str, str] | None = None) -> dict[str, object]:
        """The manifest (or index) a tag points at, as the registry serves it."""
        request = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{tag}")
        request.add_header("Accept", ", ".join(MANIFEST_TYPES))
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            doc: dict[str, object] = json.load(response)
            return doc

    @contextmanager
    def throwaway_registry(self, tmp: Path) -> Iterator[str]:
        """A registry of our own on a free loopback port, stopped on exit (by its PID)."""
        with registry_server(self.env["CACHEPORT_E2E_REGISTRY_BIN"], tmp) as host:
            yield host

    @contextmanager
    def token_registry(self, tmp: Path, realm_host: str = "127.0.0.1") -> Iterator[TokenRegistry]:
        """A registry with ``auth: token`` on a free loopback port, whose token service (a TokenIssuer with a
        fresh login) listens on ``realm_host``; both stopped on exit. Needs openssl."""
        user, password = "seeder", uuid.uuid4().hex
        issuer = TokenIssuer(tmp, user, password, realm_host)
        auth = (f"  token:\n    realm: {issuer.realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
                f"    rootcertbundle: {issuer.cert}\n")
        try:
            with registry_server(self.env["CACHEPORT_E2E_REGISTRY_BIN"], tmp, auth) as host:
                try:
                    urllib.request.urlopen(f"http://{host}/v2/", timeout=10).close()
                    challenge = ""
                except urllib.error.HTTPError as exc:
                    assert exc.code == 401
                    challenge = exc.headers.get("WWW-Authenticate", "")
                assert "Bearer" in challenge and issuer.realm in challenge, challenge
                yield TokenRegistry(host, issuer.realm, issuer, user, password)
        finally:
            issuer.close()


@contextmanager
def registry_server(registry_bin: str, tmp: Path, auth: str = "") -> Iterator[str]:
    """A distribution registry on a free loopback port, its config, data and log under ``tmp``, with ``auth``
    (the YAML under ``auth:``) if given; stopped on exit (by its PID)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {tmp / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + (f"auth:\n{auth}" if auth else "")
    )
    with (tmp / "registry.log").open("w") as log:
        proc = subprocess.Popen([registry_bin, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                    break
                except urllib.error.HTTPError:
                    break  # it answers (asking for a login is an answer)
                except OSError:
                    time.sleep(0.1)
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=20)


# --- a real token server ----------------------------------------------------------------------------------------

SERVICE, ISSUER = "cacheport-e2e", "cacheport-e2e-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """The Docker token service a registry with ``auth: token`` sends clients to: checks a Basic login, grants
    the requested scopes as an RS256 JWT signed with a throwaway key (openssl), whose certificate the registry
    trusts."""

    def __init__(self, tmp: Path, user: str, password: str, host: str = "127.0.0.1") -> None:
        self.tmp, self.user, self.password = tmp, user, password
        self.key, self.cert = tmp / "issuer.key", tmp / "issuer.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-subj", f"/CN={ISSUER}", "-days", "2"], check=True,
                       capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True,
                             capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[list[str]] = []
        self.server = ThreadingHTTPServer((host, 0), self._handler())
        self.server.daemon_threads = True
        self.realm = f"http://{host}:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode(),
                                   check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                good = "Basic " + base64.b64encode(f"{issuer.user}:{issuer.password}".encode()).decode()
                self._grant(query, self.headers.get("Authorization") == good)

            def do_POST(self) -> None:
                # containerd (BuildKit) asks with OAuth2's password grant, in a form body.
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
                ok = form.get("username") == [issuer.user] and form.get("password") == [issuer.password]
                self._grant(form, ok)

            def _grant(self, query: dict[str, list[str]], ok: bool) -> None:
                scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
                issuer.requests.append(scopes)
                if not ok:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                access = []
                for scope in scopes:
                    kind, _, rest = scope.partition(":")
                    name, _, actions = rest.rpartition(":")
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
                now = int(time.time())
                token = issuer.sign({"iss": ISSUER, "sub": issuer.user, "aud": query.get("service", [SERVICE])[0],
                                     "exp": now + 300, "nbf": now - 30, "iat": now - 30, "jti": uuid.uuid4().hex,
                                     "access": access})
                body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@attrs.frozen
class TokenRegistry:
    """A registry with ``auth: token`` (Harness.token_registry), its token service and the login it grants."""

    host: str
    realm: str
    issuer: TokenIssuer
    user: str
    password: str


class Downloads:
    """Files on 127.0.0.1 for a build's ``RUN --mount=type=cache`` step to fetch (a package index), counting each
    download, so that what a restored mount saved is a count, not a log line. ``delay`` seconds pass before each
    answer and ``bandwidth`` MB/s caps each download (a package index across a WAN); a file of ``size`` bytes
    repeats its own name. ``port`` is where it listens; stop it with :meth:`close`."""

    def __init__(self, size: int = 1000, delay: float = 0.0, bandwidth: float = 0.0) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        counts, chunk = self.counts, 16 << 10

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.strip("/")
                counts[name] += 1
                time.sleep(delay)
                body = (name.encode() * (size // max(len(name), 1) + 1))[:size]
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                for start in range(0, size, chunk):
                    self.wfile.write(body[start:start + chunk])
                    if bandwidth:
                        time.sleep(len(body[start:start + chunk]) / (bandwidth * 1e6))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def downloads_context(h: Harness, ctx: Path, port: int, files: list[str], mount_id: str,
                      target: str = "/root/.cache/dl", options: str = "") -> Path:
    """A build context (``ctx``) whose step fetches ``files`` from a :class:`Downloads` on ``port`` into the cache
    mount ``mount_id`` at ``target`` (with more of the mount's ``options``: ``uid=1000,gid=1000``), each only when
    the mount lacks it, as a package manager does, and copies them to ``/deps``: ``requirements.txt`` lists them."""
    ctx.mkdir(parents=True, exist_ok=True)
    if not (ctx / "busybox").exists():
        shutil.copy2(h.env["CACHEPORT_E2E_BUSYBOX"], ctx / "busybox")
    (ctx / "Dockerfile").write_text(
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin"]\n'
        "COPY requirements.txt /requirements.txt\n"
        f"RUN --mount=type=cache,id={mount_id},target={target}{',' + options if options else ''} \\\n"
        f"    echo {RAN} fetch && mkdir -p /deps && for f in $(cat /requirements.txt); do "
        f"[ -s {target}/$f ] || wget -q -O {target}/$f http://127.0.0.1:{port}/$f || exit 1; "
        f"cp {target}/$f /deps/; done\n"
    )
    (ctx / "requirements.txt").write_text("\n".join(files) + "\n")
    return ctx


def mount_said(log: str, mount_id: str, action: str, name: str = "") -> bool:
    """Whether a log says ``action`` happened to the cache mount ``mount_id`` (from or to ``name``): in a build's
    report (``mount  restored  ID from NAME``) or in ``cacheport mounts``' lines (``mount ID: restored from NAME``)."""
    place = rf" (?:from|to|at) {re.escape(name)}" if name else ""
    return re.search(rf"mount(?:\s+{action}\s+{re.escape(mount_id)}{place}| {re.escape(mount_id)}: {action}{place})",
                     log) is not None


def cache_report(log: str) -> dict[str, dict[str, str]]:
    """A build's closing cache report: ``{"import": {cache: status}, "export": {cache: status}}``, where a cache is
    ``registry HOST/REPO:TAG``, ``local DIR``, ``gha scope=S``, as the report names it (a CI runner may prefix
    each line with the job's name)."""
    found: dict[str, dict[str, str]] = {"import": {}, "export": {}}
    for line in log.splitlines():
        m = re.search(r"cacheport: cache:\s+(import|export) (\w+)\s+(.+?)\s*$", line)
        if m and m.group(2) != "none":
            where = m.group(3).split(": ", 1)[0].split(" (", 1)[0]
            found[m.group(1)][where] = m.group(2)
    return found


#: The harness's own variables (scripts/e2e-up, pulp-up, objstore-up and their env files): not cacheport's, which
#: warns about them as about any name it does not read, so no cacheport a test runs is handed them.
HARNESS_PREFIXES = ("CACHEPORT_E2E", "CACHEPORT_PULP_", "CACHEPORT_OBJSTORE_")


@dataclass
class RunPlan:
    """What conftest.py's plan says about the test that is running (set for each test; outside pytest, the
    defaults)."""

    history: bool = True  # its builds and commands keep history records


PLAN = RunPlan()


def clean_environ() -> dict[str, str]:
    """The test process's environment without any CI or cacheport settings, so each test sets its own; with
    ``CACHEPORT_HISTORY=off`` unless the plan has this test keep history records."""
    drop = ("CACHEPORT_", "CI_", "GITLAB_", "GITHUB_", "ACTIONS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and k not in ("CI", "DOCKER_HOST")}
    return env if PLAN.history else {**env, "CACHEPORT_HISTORY": "off"}


def github_env(tmp: Path, repository: str, branch: str, default: str = "main", **extra: str) -> dict[str, str]:
    """The variables a GitHub Actions job has for a push to ``branch``."""
    event = tmp / "event.json"
    event.write_text(json.dumps({"repository": {"default_branch": default, "full_name": repository}}))
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": repository,
        "GITHUB_REF": f"refs/heads/{branch}",
        "GITHUB_REF_NAME": branch,
        "GITHUB_REF_TYPE": "branch",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_EVENT_PATH": str(event),
        **extra,
    }


def gitlab_env(image: str, branch: str, default: str = "main", **extra: str) -> dict[str, str]:
    """The variables a GitLab job has, for a project whose registry image is ``image``."""
    return {
        "GITLAB_CI": "true",
        "CI_PROJECT_PATH": "group/app",
        "CI_REGISTRY_IMAGE": image,
        "CI_COMMIT_BRANCH": branch,
        "CI_COMMIT_REF_NAME": branch,
        "CI_DEFAULT_BRANCH": default,
        "CI_PIPELINE_SOURCE": "push",
        **extra,
    }


PULP_REQUIRED = ("CACHEPORT_E2E_PULP_URL", "CACHEPORT_E2E_PULP_REGISTRY", "CACHEPORT_E2E_PULP_USER",
                 "CACHEPORT_E2E_PULP_PASSWORD")


@attrs.frozen
class Pulp:
    """The real Pulp scripts/pulp-up started: its registry host, its API URL and an admin login."""

    url: str
    registry: str
    user: str
    password: str


def read_pulp_env() -> tuple[Pulp | None, str]:
    """The Pulp from ``CACHEPORT_E2E_PULP_*`` or ``$CACHEPORT_PULP_STATE/env``, and why it is unusable."""
    found = _variables("CACHEPORT_E2E_PULP_", Path(os.environ.get("CACHEPORT_PULP_STATE", "/var/tmp/cacheport-pulp")))
    missing = [k for k in PULP_REQUIRED if not found.get(k)]
    if missing:
        return None, f"Pulp not running (no {', '.join(missing)}; run scripts/pulp-up as root)"
    pulp = Pulp(found["CACHEPORT_E2E_PULP_URL"].rstrip("/"), found["CACHEPORT_E2E_PULP_REGISTRY"],
                found["CACHEPORT_E2E_PULP_USER"], found["CACHEPORT_E2E_PULP_PASSWORD"])
    try:
        urllib.request.urlopen(f"{pulp.url}/pulp/api/v3/status/", timeout=10).close()
    except OSError as exc:
        return None, f"Pulp at {pulp.url} does not answer: {exc}"
    return pulp, ""


OBJSTORE_REQUIRED = ("CACHEPORT_E2E_S3_ENDPOINT", "CACHEPORT_E2E_S3_BUCKET", "CACHEPORT_E2E_S3_REGION",
                     "CACHEPORT_E2E_S3_ACCESS_KEY_ID", "CACHEPORT_E2E_S3_SECRET_ACCESS_KEY",
                     "CACHEPORT_E2E_AZURE_URL", "CACHEPORT_E2E_AZURE_ACCOUNT", "CACHEPORT_E2E_AZURE_KEY",
                     "CACHEPORT_E2E_AZURE_CONTAINER")


@attrs.frozen
class ObjectStores:
    """The S3 (moto) and Azure Blob (Azurite) servers scripts/objstore-up started, with their credentials."""

    s3_endpoint: str
    s3_bucket: str
    s3_region: str
    s3_key_id: str
    s3_secret: str
    azure_url: str
    azure_account: str
    azure_key: str
    azure_container: str


def read_objstore_env() -> tuple[ObjectStores | None, str]:
    """The servers from ``CACHEPORT_E2E_S3_*``/``_AZURE_*`` or ``$CACHEPORT_OBJSTORE_STATE/env``, and why not."""
    state = Path(os.environ.get("CACHEPORT_OBJSTORE_STATE", "/var/tmp/cacheport-objstore"))
    found = {**_variables("CACHEPORT_E2E_S3_", state), **_variables("CACHEPORT_E2E_AZURE_", state)}
    missing = [k for k in OBJSTORE_REQUIRED if not found.get(k)]
    if missing:
        return None, f"object stores not running (no {', '.join(missing)}; run scripts/objstore-up as root)"
    stores = ObjectStores(*(found[k] for k in OBJSTORE_REQUIRED))
    for url in (stores.s3_endpoint, stores.azure_url):
        try:
            urllib.request.urlopen(url, timeout=10).close()
        except urllib.error.HTTPError:
            pass  # refusing an anonymous request proves it answers
        except OSError as exc:
            return None, f"{url} does not answer: {exc}"
    return stores, ""


def cold_then_warm(h: Harness, ctx: Path, *args: str, env: dict[str, str], driver: str = "",
                   oci: bool = False) -> tuple[Result, Result]:
    """A cold build, then a warm one that only the imported cache can make warm: after a prune, or, with
    ``driver``, each on a new builder of that driver (``--builder``), removed after it."""
    def build() -> Result:
        if not driver:
            h.prune()
            return h.build(ctx, *args, env=env, oci=oci)
        with h.builder(driver) as name:
            return h.build(ctx, *args, env=env, oci=oci, extra=("--builder", name))

    cold = build()
    assert cold.code == 0, cold.log
    assert cold.ran, "the cold build should have run its steps"
    warm = build()
    assert warm.code == 0, warm.log
    assert warm.ran == [], f"steps ran despite the imported cache:\n{warm.log}"
    assert warm.rand == cold.rand
    assert ": 4/4 steps cached, 0 executed" in warm.log
    said = set(warm.cache["import"].values())  # BuildKit says it read the cache (gha never says either way)
    assert "hit" in said or said == {"unknown"}, warm.log
    return cold, warm


def s3_keys(stores: ObjectStores) -> list[tuple[str, bool]]:
    """Every object moto ever held, with whether it was deleted since: from moto's own state API."""
    with urllib.request.urlopen(f"{stores.s3_endpoint}/moto-api/data.json", timeout=10) as response:
        return [(k.get("name", ""), bool(k.get("disposed"))) for k in json.load(response)["s3"].get("FakeKey", [])]


def pulp_env(pulp: Pulp, project: str, branch: str = "main", **extra: str) -> dict[str, str]:
    """A GitLab job whose cache backend is the real Pulp, logging in with the admin account."""
    return {
        **gitlab_env("registry.invalid/unused", branch, CI_PROJECT_PATH=project),
        "CACHEPORT_BACKEND": "pulp",
        "CACHEPORT_PULP__URL": pulp.url,  # http://127.0.0.1:PORT: plain HTTP, so registry.insecure=true
        "PULP_USERNAME": pulp.user,
        "PULP_PASSWORD": pulp.password,
        **extra,
    }
