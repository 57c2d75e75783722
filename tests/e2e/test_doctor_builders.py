"""``cacheport doctor`` on builders of our own BuildKit (scripts/e2e-buildkit.sh): on a good setup every check
passes; on each bad one exactly the check that should fail does, with its one-line fix.

- ``docker-container`` on both generations: buildx 0.13 hides the builder's buildkitd.toml (doctor reads it out
  of the container), buildx 0.29 shows it in ``buildx inspect``.
- ``remote``: the standalone buildkitd, whose config stays on its own host.
- A registry of our own that speaks TLS with a private CA (``openssl`` makes it): trusted only by a builder whose
  buildkitd.toml names the CA.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .harness import Harness, clean_environ, gitlab_env


def doctor(h: Harness, cwd: Path, builder: str, ref: str) -> subprocess.CompletedProcess[str]:
    env = {"CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": ref, **gitlab_env("x/y", "main")}
    return subprocess.run([sys.executable, "-m", "cacheport", "doctor", "--builder", builder], cwd=cwd,
                          capture_output=True, text=True, env={**clean_environ(), **h.docker_env, **env}, timeout=300)


def lines(out: str, name: str) -> list[str]:
    """The check lines called ``name``, each with its fix line when it has one."""
    text = out.splitlines()
    return [line + (f"\n{text[i + 1]}" if i + 1 < len(text) and text[i + 1].startswith("    fix: ") else "")
            for i, line in enumerate(text) if line[2:].startswith(f"{name}: ")]


@contextmanager
def container_builder(h: Harness, tmp: Path, config: str | None, network_host: bool = True) -> Iterator[str]:
    """A docker-container builder of the provisioned image with our own buildkitd.toml (``config``, or none)."""
    opts = f"image={h.env['CACHEPORT_E2E_BUILDKIT_IMAGE']}" + (",network=host" if network_host else "")
    how = ["--driver", "docker-container", "--driver-opt", opts]
    if config is not None:
        (tmp / "buildkitd.toml").write_text(config)
        how += ["--buildkitd-config", str(tmp / "buildkitd.toml")]  # buildx 0.13 knows it too (beside --config)
    name = f"cacheport-e2e-doctor-{uuid.uuid4().hex[:8]}"
    h.docker("buildx", "create", "--name", name, *how)
    try:
        yield name
    finally:
        h.docker("buildx", "rm", name, check=False)


@contextmanager
def tls_registry(h: Harness, tmp: Path) -> Iterator[tuple[str, Path]]:
    """A distribution registry on loopback that speaks only TLS, with a certificate from a CA of its own:
    ``(host:port, the CA's certificate)``; stopped on exit (by its PID)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=cacheport-e2e-ca")
    openssl("req", *ec, "-keyout", "key.pem", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (tmp / "san").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "cert.pem", "-days", "1", "-extfile", "san")
    port = closed_port()
    (tmp / "registry.yml").write_text(
        f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {tmp / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {tmp / 'cert.pem'}\n    key: {tmp / 'key.pem'}\n")
    with (tmp / "registry.log").open("w") as log:
        proc = subprocess.Popen([h.env["CACHEPORT_E2E_REGISTRY_BIN"], "serve", str(tmp / "registry.yml")],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.1)
            yield f"127.0.0.1:{port}", tmp / "ca.pem"
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def repo() -> str:
    return f"e2e/doctor-builders/{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("gen", ["old", "current"])
def test_a_good_docker_container_builder_passes_every_check(buildkit: Harness, every_generation: dict[str, Harness],
                                                             gen: str, tmp_path: Path) -> None:
    h, reg = every_generation[gen], buildkit.env["CACHEPORT_E2E_REGISTRY"]
    with h.builder("docker-container") as name:
        out = doctor(h, tmp_path, name, f"{reg}/{repo()}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert lines(out.stdout, "buildkit") == [f"✓ buildkit: {name!r} runs BuildKit 0.32.2, which knows every cache "
                                             "attribute the plan uses"]
    assert lines(out.stdout, "network") == [f"✓ network: {name!r} reaches {reg}"]
    # Read on buildx 0.13 out of the container, on 0.29 from buildx inspect: the provisioned config either way.
    [trust] = lines(out.stdout, "trust")
    assert trust.startswith(f"✓ trust: {name!r} talks to {reg}") and trust.endswith("buildkitd.toml says http = true")


@pytest.mark.parametrize("gen", ["old", "current"])
def test_a_builder_that_speaks_https_to_a_plain_http_registry_fails_trust_with_the_fix(
        buildkit: Harness, every_generation: dict[str, Harness], gen: str, tmp_path: Path) -> None:
    # What any plain-HTTP registry that is not on loopback looks like to BuildKit: it speaks HTTPS unless told.
    h, reg = every_generation[gen], buildkit.env["CACHEPORT_E2E_REGISTRY"]
    with container_builder(h, tmp_path, f'[registry."{reg}"]\n  http = false\n') as name:
        out = doctor(h, tmp_path, name, f"{reg}/{repo()}")
    assert out.returncode == 1, out.stdout + out.stderr
    assert lines(out.stdout, "network") == [f"✓ network: {name!r} reaches {reg}"]
    assert lines(out.stdout, "trust") == [
        f"✗ trust: {name!r} does not trust {reg}: BuildKit speaks HTTPS to it, and it answers in plain HTTP; its "
        "buildkitd.toml says http = false\n"
        f'    fix: set http = true under [registry."{reg}"] in a buildkitd.toml and recreate the builder with it '
        "(`docker buildx create --buildkitd-config FILE …`)"]
    assert len([line for line in out.stdout.splitlines() if line.startswith("✗")]) == 1


def test_a_docker_container_builder_off_the_host_network_fails_network_with_the_fix(
        buildkit: Harness, tmp_path: Path) -> None:
    reg = buildkit.env["CACHEPORT_E2E_REGISTRY"]
    with container_builder(buildkit, tmp_path, None, network_host=False) as name:
        out = doctor(buildkit, tmp_path, name, f"{reg}/{repo()}")
    assert out.returncode == 1, out.stdout + out.stderr
    [network] = lines(out.stdout, "network")
    assert network.startswith(f"✗ network: {name!r} can't reach {reg}: dial tcp {reg}: connect: connection "
                              "refused\n    fix: 127.0.0.1 inside a docker-container builder is its own container: "
                              "recreate it with `--driver-opt network=host`"), network
    assert lines(out.stdout, "trust") == []  # nothing answered, so nothing to say about trust
    assert "✓ registry:" in out.stdout  # this machine reaches it: only the builder does not


def test_a_remote_builder_passes_and_says_its_config_stays_with_the_daemon(buildkit: Harness, tmp_path: Path) -> None:
    reg = buildkit.env["CACHEPORT_E2E_REGISTRY"]
    with buildkit.builder("remote") as name:
        out = doctor(buildkit, tmp_path, name, f"{reg}/{repo()}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert lines(out.stdout, "buildkit")[0].startswith(f"✓ buildkit: {name!r} runs BuildKit 0.32.2")
    assert lines(out.stdout, "network") == [f"✓ network: {name!r} reaches {reg}"]
    [trust] = lines(out.stdout, "trust")
    assert trust.startswith("✓") and trust.endswith("can't be read from here (the remote driver's daemon keeps it)")


def test_a_remote_builder_and_a_closed_registry_port_fail_network(buildkit: Harness, tmp_path: Path) -> None:
    host = f"127.0.0.1:{closed_port()}"
    with buildkit.builder("remote") as name:
        out = doctor(buildkit, tmp_path, name, f"{host}/{repo()}")
    assert out.returncode == 1, out.stdout + out.stderr
    assert lines(out.stdout, "network") == [
        f"✗ network: {name!r} can't reach {host}: dial tcp {host}: connect: connection refused\n"
        f"    fix: check that {host} is up, and the network, DNS and proxy of the builder {name!r} (not of this "
        "machine)"]


@pytest.mark.parametrize(("told", "trusted", "says", "fix"), [
    # BuildKit speaks plain HTTP to a loopback registry unless told otherwise.
    ("", False, "BuildKit speaks plain HTTP to it, and it answers 400 (an HTTPS registry does); it has no "
     "buildkitd.toml, so BuildKit's defaults apply", 'set http = false and ca = ["/path/to/its-ca.pem"] under [registry."{host}"]'),
    ("http = false\n", False, "BuildKit does not trust its TLS certificate (tls: failed to verify certificate: x509: "
     "certificate signed by unknown authority); its buildkitd.toml says http = false", 'set ca = ["/path/to/its-ca.pem"] (or insecure = true)'),
    ('http = false\nca = ["{ca}"]\n', True, "talks to {host} the way it answers", ""),
])
def test_a_registry_with_a_private_ca_is_trusted_only_by_a_builder_told_its_ca(
        buildkit: Harness, tmp_path: Path, told: str, trusted: bool, says: str, fix: str) -> None:
    (tmp_path / "registry").mkdir()
    with tls_registry(buildkit, tmp_path / "registry") as (host, ca):
        config = f'[registry."{host}"]\n' + told.format(ca=ca) if told else None
        with container_builder(buildkit, tmp_path, config) as name:
            out = doctor(buildkit, tmp_path, name, f"{host}/{repo()}")
    assert lines(out.stdout, "network") == [f"✓ network: {name!r} reaches {host}"], out.stdout
    [trust] = lines(out.stdout, "trust")
    assert trust.startswith("✓" if trusted else "✗"), trust
    assert says.format(host=host) in trust and fix.format(host=host) in trust, trust
