"""Docker's own credentials (oci/credentials.py): ``auths`` entries and credential helpers, asked through stand-in
``docker-credential-*`` programs on PATH. The real token-auth registry is in tests/e2e/test_credentials.py."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cacheport.errors import CredentialHelperError
from cacheport.oci.auth import Credentials
from cacheport.oci.credentials import HUB_KEY, DockerLogin, docker_credentials, docker_login

SECRET = "hunter2-never-shown"


def helper(bin_dir: Path, name: str, body: str) -> None:
    """A stand-in ``docker-credential-NAME``: ``body`` runs with ``server`` (stdin) and ``action`` (argv) set."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(f"#!{sys.executable}\nimport json, sys\naction = sys.argv[1]\nserver = sys.stdin.read()\n"
                      f"{body}\n")
    script.chmod(0o755)


def environ(tmp_path: Path, config: dict[str, object]) -> dict[str, str]:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(tmp_path), "PATH": str(tmp_path / "bin")}


ANSWERS = (f"open(sys.argv[0] + '.asked', 'a').write(action + ' ' + server + '\\n')\n"
           f"print(json.dumps({{'ServerURL': server, 'Username': 'desk', 'Secret': '{SECRET}'}}))")


def test_auths_entries_when_no_helper_applies(tmp_path: Path) -> None:
    env = environ(tmp_path, {"auths": {
        "https://reg.example.com/v1/": {"auth": base64.b64encode(b"alice:s3:cret").decode()},
        "other.example": {"username": "bob", "password": "pw"},
        HUB_KEY: {"auth": base64.b64encode(b"hub:tok").decode()},
        "broken.example": {"auth": "!!!"},
    }})
    assert docker_credentials("reg.example.com", env) == Credentials("alice", "s3:cret")
    assert docker_credentials("other.example", env) == Credentials("bob", "pw")
    assert docker_credentials("registry-1.docker.io", env) == Credentials("hub", "tok")
    assert docker_credentials("broken.example", env) is None
    assert docker_credentials("unknown.example", env) is None
    assert docker_credentials("reg.example.com", {"DOCKER_CONFIG": str(tmp_path / "none")}) is None
    found = docker_login("other.example", env)
    assert found is not None and found.source == f"auths in {tmp_path / 'config.json'}"
    assert "pw" not in repr(found) and "s3:cret" not in repr(Credentials("alice", "s3:cret"))


def test_creds_store_is_asked_with_the_server_on_stdin(tmp_path: Path) -> None:
    helper(tmp_path / "bin", "desktop", ANSWERS)
    # As in docker, a credsStore beats what auths holds: Docker Desktop leaves empty placeholders there.
    env = environ(tmp_path, {"credsStore": "desktop", "auths": {"reg.example": {"username": "x", "password": "y"}}})
    assert docker_credentials("reg.example", env) == Credentials("desk", SECRET)
    assert docker_credentials("registry-1.docker.io", env) == Credentials("desk", SECRET)
    asked = (tmp_path / "bin" / "docker-credential-desktop.asked").read_text().splitlines()
    assert asked == ["get reg.example", f"get {HUB_KEY}"]
    assert docker_login("reg.example", env) == DockerLogin("reg.example", "desk", SECRET,
                                                           "credential helper docker-credential-desktop")


def test_cred_helpers_beat_creds_store_and_an_empty_name_means_auths(tmp_path: Path) -> None:
    helper(tmp_path / "bin", "ecr", ANSWERS.replace("'desk'", "'ecr-user'"))
    env = environ(tmp_path, {"credsStore": "missing", "credHelpers": {"ecr.example": "ecr", "plain.example": ""},
                             "auths": {"plain.example": {"username": "p", "password": "q"}}})
    assert docker_credentials("ecr.example", env) == Credentials("ecr-user", SECRET)
    assert docker_credentials("plain.example", env) == Credentials("p", "q")


@pytest.mark.parametrize("output", ["credentials not found in native keychain", ""])
def test_a_helper_with_nothing_for_the_server_means_no_login(tmp_path: Path, output: str) -> None:
    # docker-credential-helpers exit 1 with that message; docker-credential-pass answers empty credentials.
    body = (f"print({output!r}); sys.exit(1)" if output
            else "print(json.dumps({'ServerURL': '', 'Username': '', 'Secret': ''}))")
    helper(tmp_path / "bin", "store", body)
    assert docker_login("reg.example", environ(tmp_path, {"credsStore": "store"})) is None


def test_an_identity_token_is_no_password(tmp_path: Path) -> None:
    helper(tmp_path / "bin", "store", ANSWERS.replace("'desk'", "'<token>'"))
    env = environ(tmp_path, {"credsStore": "store"})
    assert docker_credentials("reg.example", env) is None
    found = docker_login("reg.example", env)
    assert found is not None and found.username == "<token>"


@pytest.mark.parametrize(("body", "says"), [
    (None, "docker's credential helper docker-credential-gone (credsStore in {config}) is not on PATH; install "
           "it, or remove that setting"),
    ("sys.stderr.write('keychain locked\\nmore\\n'); sys.exit(3)",
     "docker's credential helper docker-credential-gone (credsStore in {config}) failed for reg.example (exit "
     "status 3): keychain locked"),
    (f"print('{{\"Secret\": \"{SECRET}\"'); sys.exit(1)",
     "docker's credential helper docker-credential-gone (credsStore in {config}) failed for reg.example (exit "
     "status 1): no message"),
    (f"print('Username: u Secret: {SECRET}')",
     "docker's credential helper docker-credential-gone (credsStore in {config}) answered something for "
     "reg.example that is not credentials (JSON with Username and Secret)"),
    (f"print(json.dumps({{'Username': 1, 'Secret': '{SECRET}'}}))",
     "docker's credential helper docker-credential-gone (credsStore in {config}) answered something for "
     "reg.example that is not credentials (JSON with Username and Secret)"),
], ids=["missing", "failing", "failing-with-json", "garbage", "wrong-shape"])
def test_a_broken_helper_is_one_line_without_the_secret(tmp_path: Path, body: str | None, says: str) -> None:
    if body is not None:
        helper(tmp_path / "bin", "gone", body)
    env = environ(tmp_path, {"credsStore": "gone"})
    with pytest.raises(CredentialHelperError) as caught:
        docker_login("reg.example", env)
    assert str(caught.value) == says.format(config=tmp_path / "config.json")
    assert SECRET not in str(caught.value)


def test_status_with_a_broken_helper_says_one_line(clean_env: dict[str, str], tmp_path: Path) -> None:
    helper(tmp_path / "bin", "gone", f"print('Username: u Secret: {SECRET}')")
    env = {**clean_env, **environ(tmp_path, {"credsStore": "gone"}),
           "PATH": str(tmp_path / "bin") + os.pathsep + clean_env.get("PATH", "")}
    out = subprocess.run([sys.executable, "-m", "cacheport", "status", "--backend", "registry", "--set",
                          "ref=127.0.0.1:9/team/cache"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1:] == [
        f"cacheport: error: docker's credential helper docker-credential-gone (credsStore in {tmp_path}/config.json)"
        " answered something for 127.0.0.1:9 that is not credentials (JSON with Username and Secret)"]
    assert SECRET not in out.stdout + out.stderr
