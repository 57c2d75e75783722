"""The credential rule against a real distribution registry with ``auth: token`` whose token service is on another
loopback address (127.0.0.2), over plain HTTP: the registry password never goes there, until that host is
declared in CACHEPORT_INSECURE_REGISTRIES; then status and doctor's round trip work through it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import unavailable
from .harness import Harness, TokenRegistry, clean_environ, gitlab_env


@pytest.fixture(scope="module")
def elsewhere(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    """A distribution registry on 127.0.0.1 whose realm is a token issuer on 127.0.0.2."""
    if shutil.which("openssl") is None:
        unavailable("openssl is needed to sign the test token issuer's JWTs")
    with harness.token_registry(tmp_path_factory.mktemp("elsewhere"), realm_host="127.0.0.2") as registry:
        yield registry


def cacheport(harness: Harness, cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**clean_environ(), **harness.docker_env, **env})


def login(r: TokenRegistry, repo: str) -> dict[str, str]:
    return {"CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{r.host}/{repo}",
            "CACHEPORT_REGISTRY__USERNAME": r.user, "CACHEPORT_REGISTRY__PASSWORD_ENV": "TOKEN_PW",
            "TOKEN_PW": r.password}


def test_the_password_never_goes_to_a_plain_http_realm_on_another_host(harness: Harness, tmp_path: Path,
                                                                        elsewhere: TokenRegistry) -> None:
    r = elsewhere
    r.issuer.requests.clear()
    refused = cacheport(harness, tmp_path, "status", env=login(r, "team/cache"))
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        f"cacheport: error: {r.host}: credentials not sent to its token service {r.realm}: it is plain HTTP on "
        f"another host ({r.realm.split('/')[2]}); declare that host in CACHEPORT_INSECURE_REGISTRIES if you trust it")
    assert r.issuer.requests == []  # nothing reached the token service at all
    assert r.password not in refused.stdout + refused.stderr


def test_declared_insecure_the_realm_gets_them_and_a_round_trip_works(harness: Harness, tmp_path: Path,
                                                                      elsewhere: TokenRegistry) -> None:
    r = elsewhere
    r.issuer.requests.clear()
    env = {**login(r, f"team-{uuid.uuid4().hex[:8]}/cache"), "CACHEPORT_INSECURE_REGISTRIES": "127.0.0.2"}
    status = cacheport(harness, tmp_path, "status", env=env)
    assert status.returncode == 0, status.stderr
    assert "0 cache(s)" in status.stdout
    assert r.issuer.requests, "the declared token service was asked"
    doctor = cacheport(harness, tmp_path, "doctor", env=env)
    assert "✓ credentials: accepted" in doctor.stdout, doctor.stdout
    assert "✓ format:" in doctor.stdout, doctor.stdout
    assert r.password not in doctor.stdout + doctor.stderr


@pytest.fixture(scope="module")
def token(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    """A distribution registry with ``auth: token`` whose token service is on 127.0.0.1 too."""
    if shutil.which("openssl") is None:
        unavailable("openssl is needed to sign the test token issuer's JWTs")
    with harness.token_registry(tmp_path_factory.mktemp("token")) as registry:
        yield registry


def desktop(tmp: Path, r: TokenRegistry, store: str = "cacheport-test") -> dict[str, str]:
    """A docker config whose credsStore is a stand-in credential helper (as Docker Desktop sets up) that knows the
    registry's login, and nothing in ``auths``."""
    bin_dir, config = tmp / "helper-bin", tmp / "docker-config"
    bin_dir.mkdir(exist_ok=True)
    config.mkdir(exist_ok=True)
    logins = {r.host: {"ServerURL": r.host, "Username": r.user, "Secret": r.password}}
    helper = bin_dir / f"docker-credential-{store}"
    helper.write_text(f"#!{sys.executable}\nimport json, sys\nlogins = {logins!r}\nserver = sys.stdin.read().strip()\n"
                      "if sys.argv[1] != 'get' or server not in logins:\n"
                      "    print('credentials not found in native keychain'); sys.exit(1)\n"
                      "print(json.dumps(logins[server]))\n")
    helper.chmod(0o755)
    (config / "config.json").write_text(json.dumps({"auths": {r.host: {}}, "credsStore": store}))
    return {"DOCKER_CONFIG": str(config), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_status_and_doctor_log_in_through_dockers_credential_helper(harness: Harness, tmp_path: Path,
                                                                      token: TokenRegistry) -> None:
    r = token
    env = {"CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{r.host}/team-{uuid.uuid4().hex[:8]}/cache"}
    anonymous = cacheport(harness, tmp_path, "status", env=env)
    assert anonymous.returncode == 1 and "refused a token anonymously" in anonymous.stderr, anonymous.stderr
    r.issuer.requests.clear()
    helped = {**env, **desktop(tmp_path, r)}
    status = cacheport(harness, tmp_path, "status", env=helped)
    assert status.returncode == 0, status.stderr
    assert "0 cache(s)" in status.stdout
    assert r.issuer.requests, "the token service granted a token for the helper's login"
    doctor = cacheport(harness, tmp_path, "doctor", env=helped)
    assert "✓ credentials: accepted" in doctor.stdout, doctor.stdout
    assert "✓ format:" in doctor.stdout, doctor.stdout
    assert f"✓ credentials: accepted (docker's login as {r.user!r} (credential helper " in doctor.stdout
    assert r.password not in status.stdout + status.stderr + doctor.stdout + doctor.stderr
    # With a login of the backend's own too, doctor tries docker's separately: what a plain buildx build gets.
    own = login(r, env["CACHEPORT_REGISTRY__REF"].split("/", 1)[1])
    alone = cacheport(harness, tmp_path, "doctor", env={**own, "DOCKER_CONFIG": str(tmp_path / "no-logins")})
    assert "✓ credentials: accepted (the login as 'seeder' from $TOKEN_PW)" in alone.stdout, alone.stdout
    assert (f"✗ docker login: docker is not logged in to {r.host}: docker buildx build $(cacheport args) reads "
            "and writes its cache anonymously, and a refusal there does not fail the build (cacheport build logs "
            "in with $TOKEN_PW)\n") in alone.stdout, alone.stdout
    assert alone.returncode == 1
    both = cacheport(harness, tmp_path, "doctor", env={**own, **desktop(tmp_path, r)})
    assert f"✓ credentials: accepted (the login as {r.user!r} from $TOKEN_PW)" in both.stdout, both.stdout
    assert (f"✓ docker login: docker's login for {r.host} as {r.user!r} is accepted (credential helper "
            "docker-credential-cacheport-test)") in both.stdout, both.stdout
    assert r.password not in both.stdout + both.stderr


def test_build_logs_in_without_leaving_the_password_in_the_users_docker_config(
        every_generation: dict[str, Harness], tmp_path: Path) -> None:
    """cacheport build's login goes to a private DOCKER_CONFIG: the export with auth works, the user's own config
    (a context of theirs made current, reaching the engine only through it; buildx as a plugin there) keeps
    working, and no password lands in it, on both BuildKit generations."""
    for name, h in every_generation.items():
        reg = h.env["CACHEPORT_E2E_AUTH_REGISTRY"]
        user, password = h.env["CACHEPORT_E2E_AUTH_USER"], h.env["CACHEPORT_E2E_AUTH_PASSWORD"]
        mine = tmp_path / name / "docker"
        mine.mkdir(parents=True)
        (mine / "cli-plugins").symlink_to(Path(h.env["CACHEPORT_E2E_DOCKER_CONFIG"]) / "cli-plugins")
        # Their logins live in a credential helper (as on Docker Desktop), which must not get the build's.
        helper_bin = tmp_path / name / "bin"
        helper_bin.mkdir()
        helper = helper_bin / "docker-credential-cacheport-e2e"
        helper.write_text(f"#!{sys.executable}\nimport sys\nwith open({str(helper) + '.asked'!r}, 'a') as log:\n"
                          "    log.write(sys.argv[1] + ' ' + sys.stdin.read().replace('\\n', ' ') + '\\n')\n"
                          "print('credentials not found in native keychain'); sys.exit(1)\n")
        helper.chmod(0o755)
        (mine / "config.json").write_text(json.dumps({"credsStore": "cacheport-e2e"}))
        docker = {**clean_environ(), "DOCKER_CONFIG": str(mine)}
        for step in (["context", "create", "cacheport-e2e", "--docker", f"host={h.env['CACHEPORT_E2E_DOCKER_HOST']}"],
                     ["context", "use", "cacheport-e2e"]):
            subprocess.run([h.env["CACHEPORT_E2E_DOCKER_BIN"], *step], env=docker, check=True, capture_output=True)
        before = sorted(p.name for p in mine.iterdir())
        repo = f"creds-{name}-{uuid.uuid4().hex[:8]}"
        env = {**gitlab_env(f"{reg}/{repo}", "main", CI_REGISTRY_USER=user, CI_REGISTRY_PASSWORD=password),
               "DOCKER_CONFIG": str(mine), "DOCKER_HOST": "", "PATH": f"{helper_bin}{os.pathsep}{h.docker_env['PATH']}"}
        result = h.build(h.project(tmp_path / name), env=env)
        assert result.code == 0, result.log
        assert result.cache["export"] == {f"registry {reg}/{repo}/cache:main": "written"}, result.log
        assert h.tags(reg, f"{repo}/cache", auth=(user, password)) == ["main"]
        assert "could not inspect" not in result.log, result.log  # the builder, through their context
        stored = "".join(p.read_text(errors="replace") for p in mine.rglob("*") if p.is_file() and
                         "cli-plugins" not in p.parts)
        for form in (password, base64.b64encode(f"{user}:{password}".encode()).decode()):
            assert form not in stored and form not in result.log
        config = json.loads((mine / "config.json").read_text())
        assert config.get("currentContext") == "cacheport-e2e" and not config.get("auths"), config
        asked = Path(f"{helper}.asked").read_text() if Path(f"{helper}.asked").exists() else ""
        assert "store" not in asked and password not in asked, asked
        # buildx keeps its state (build records, activity) where it always does: the user's folder.
        assert {p.name for p in mine.iterdir()} - {"buildx"} == set(before)
