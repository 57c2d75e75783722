"""Which login each kind of build has (ops/logins.py): the warnings of ``args`` and ``build``, doctor's docker
checks, and the private docker config ``cacheport build`` logs in to. Real builds are in
tests/e2e/test_credentials.py."""

from __future__ import annotations

import base64
import json
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from cacheport.errors import RegistryError
from cacheport.ops.logins import (
    args_warnings,
    build_environment,
    build_warnings,
    docker_checks,
    private_docker_config,
    registry_logins,
    store_login,
)
from cacheport.records import Login
from tests.fakes.hostile import MARKER, assert_clean, base_env, run_cli

REG = "reg.example:5000"
OWN = Login(REG, "CACHE_PW", username="ci")
TOKEN = Login(REG, "CI_JOB_TOKEN", username="gitlab-ci-token")


def docker_config(tmp_path: Path, config: dict[str, object]) -> dict[str, str]:
    folder = tmp_path / "docker-config"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(folder)}


def logged_in(tmp_path: Path) -> dict[str, str]:
    return docker_config(tmp_path, {"auths": {REG: {"auth": base64.b64encode(b"me:" + MARKER.encode()).decode()}}})


def test_build_warns_only_without_any_login_and_names_every_unset_variable(tmp_path: Path) -> None:
    nobody = docker_config(tmp_path, {})
    found = registry_logins([OWN, TOKEN], nobody)
    assert build_warnings(found) == [
        f"not logging in to {REG}: $CACHE_PW and $CI_JOB_TOKEN are not set, and docker has no login for {REG}; the "
        "build reads and writes its cache anonymously, and a refusal there does not fail the build"]
    assert build_warnings(registry_logins([OWN, TOKEN], {**nobody, "CI_JOB_TOKEN": "t"})) == []
    assert build_warnings(registry_logins([OWN], logged_in(tmp_path))) == []  # docker's own login is used


def test_args_warns_when_the_backend_has_a_login_that_docker_has_not(tmp_path: Path) -> None:
    nobody = docker_config(tmp_path, {})
    assert args_warnings(registry_logins([OWN], {**nobody, "CACHE_PW": MARKER})) == [
        f"docker is not logged in to {REG}, so docker buildx build reads and writes its cache anonymously, and a "
        f"refusal there does not fail the build; run `docker login {REG}`, or build with `cacheport build`, which "
        "logs in with $CACHE_PW"]
    assert args_warnings(registry_logins([OWN], nobody)) == []  # no login anywhere: cacheport build has none either
    assert args_warnings(registry_logins([OWN], logged_in(tmp_path))) == []


def test_a_broken_helper_is_said_once_in_one_line(tmp_path: Path) -> None:
    env = docker_config(tmp_path, {"credsStore": "desktop"})
    [found] = registry_logins([OWN], env)
    assert found.docker is None and "docker-credential-desktop" in found.problem
    [warning] = args_warnings([found])
    assert warning.startswith("docker's credential helper docker-credential-desktop (credsStore in ")
    assert warning.endswith(f"is not on PATH; install it, or remove that setting; docker buildx build will fail to "
                            f"log in to {REG}")
    [check] = docker_checks(registry_logins([OWN], {**env, "CACHE_PW": "x"}), env, f"{REG}/app/cache")
    assert not check.ok and check.detail == found.problem
    # Without a login of the backend's own, the store's check meets the same helper and says so itself.
    assert docker_checks([found], env, f"{REG}/app/cache") == []


def test_a_user_name_variable_that_is_unset_is_named(tmp_path: Path) -> None:
    login = Login(REG, "PW", username_env="USER_NAME")
    assert registry_logins([login], {**docker_config(tmp_path, {}), "PW": "x"})[0].missing == ("USER_NAME",)


def test_store_login_says_whose_credentials_doctor_tried(tmp_path: Path) -> None:
    nobody = docker_config(tmp_path, {})
    where = f"{REG}/team/cache"
    assert store_login(registry_logins([OWN], {**nobody, "CACHE_PW": "x"}), where, {}) == \
        "the login as 'ci' from $CACHE_PW"
    assert store_login(registry_logins([OWN], nobody), where, {}) == \
        f"anonymous access ($CACHE_PW is not set, and docker has no login for {REG})"
    assert store_login(registry_logins([OWN], logged_in(tmp_path)), where, {}) == \
        f"docker's login as 'me' (auths in {tmp_path / 'docker-config' / 'config.json'})"
    assert store_login(registry_logins([OWN], nobody), "other.example/team/cache", nobody) == ""
    assert store_login([], f"{REG}/team/cache", logged_in(tmp_path)).startswith("docker's login as 'me' (auths in ")
    assert store_login([], f"{REG}/team/cache", logged_in(tmp_path), registry=False) == ""


def test_doctor_tries_dockers_own_login_without_the_backends(tmp_path: Path) -> None:
    env = {**logged_in(tmp_path), "CACHE_PW": MARKER + "-own", "CI_JOB_TOKEN": "t"}
    seen: list[Mapping[str, str]] = []

    def accepts(environ: Mapping[str, str]) -> None:
        seen.append(environ)

    def refuses(environ: Mapping[str, str]) -> None:
        raise RegistryError(f"{REG}: GET /v2/: HTTP 401 not authorized", 401)

    found = registry_logins([OWN, TOKEN], env)
    [ok] = docker_checks(found, env, f"{REG}/app/cache", accepts)
    assert ok.ok and ok.detail == f"docker's login for {REG} as 'me' is accepted (auths in {tmp_path}/docker-config/config.json)"
    assert seen[0]["CACHE_PW"] == "" and seen[0]["CI_JOB_TOKEN"] == ""  # only docker's login is left to use
    [refused] = docker_checks(found, env, f"{REG}/app/cache", refuses)
    assert not refused.ok and refused.detail.startswith(f"{REG} refuses docker's login as 'me' (auths in ")
    nobody = {**docker_config(tmp_path, {}), "CACHE_PW": "x"}
    [missing] = docker_checks(registry_logins([OWN], nobody), nobody, f"{REG}/app/cache", accepts)
    assert not missing.ok and missing.detail.endswith("(cacheport build logs in with $CACHE_PW)")
    assert missing.fix == f"`docker login {REG}`, or build with cacheport build"
    # In CI, jobs build with cacheport build or log docker in as a step of their own: said, not failed.
    [noted] = docker_checks(registry_logins([OWN], nobody), nobody, f"{REG}/app/cache", accepts, ci=True)
    assert noted.ok and noted.detail == (f"docker is not logged in to {REG} yet: cacheport build logs in with "
                                         f"$CACHE_PW; a docker buildx build $(cacheport args) step needs `docker "
                                         f"login {REG}` before it")
    # Without a login of the backend's own, the store's credentials check already used docker's, or none.
    assert docker_checks(registry_logins([OWN], logged_in(tmp_path)), {}, f"{REG}/app/cache", accepts) == []
    assert docker_checks(registry_logins([OWN], docker_config(tmp_path, {})), {}, f"{REG}/app/cache", accepts) == []


def test_the_private_docker_config_links_everything_but_the_logins(tmp_path: Path) -> None:
    user = tmp_path / "user-docker"
    (user / "cli-plugins").mkdir(parents=True)
    (user / "contexts").mkdir()
    config = {"auths": {"other.example": {"auth": "b3RoZXI6cHc="}}, "credsStore": "desktop",
              "credHelpers": {"ecr.example": "ecr-login"}, "currentContext": "remote"}
    (user / "config.json").write_text(json.dumps(config))
    before = (user / "config.json").read_bytes()
    with private_docker_config({"DOCKER_CONFIG": str(user), "KEEP": "1"}, [REG, "docker.io"]) as env:
        private = Path(env["DOCKER_CONFIG"])
        assert env["KEEP"] == "1" and private != user and env["BUILDX_CONFIG"] == str(user / "buildx")
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        assert stat.S_IMODE((private / "config.json").stat().st_mode) == 0o600
        assert (private / "cli-plugins").resolve() == (user / "cli-plugins").resolve()
        assert (private / "contexts").is_symlink()
        copied = json.loads((private / "config.json").read_text())
        assert copied == {**config, "credHelpers": {"ecr.example": "ecr-login", REG: "",
                                                    "https://index.docker.io/v1/": ""}}
    assert not private.exists()
    assert (user / "config.json").read_bytes() == before
    assert sorted(p.name for p in user.iterdir()) == ["cli-plugins", "config.json", "contexts"]


def test_a_build_without_a_login_to_make_keeps_the_users_docker_config(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path), "CACHE_PW": ""}
    with build_environment([OWN, TOKEN], environ) as env:
        assert env is environ
    with build_environment([OWN, TOKEN], {**environ, "CI_JOB_TOKEN": "t"}) as env:
        assert Path(env["DOCKER_CONFIG"]).name.startswith("cacheport-docker-")
        assert json.loads((Path(env["DOCKER_CONFIG"]) / "config.json").read_text()) == {"credHelpers": {REG: ""}}


def test_the_private_docker_config_of_a_user_without_one(tmp_path: Path) -> None:
    with private_docker_config({"HOME": str(tmp_path)}, [REG]) as env:
        assert json.loads((Path(env["DOCKER_CONFIG"]) / "config.json").read_text()) == {"credHelpers": {REG: ""}}
    assert not (tmp_path / ".docker").exists()


def _recording_docker(path: Path, record: Path) -> None:
    """A docker whose login stores the password where DOCKER_CONFIG says, as docker does, and records where."""
    path.write_text("#!/bin/sh\n"
                    'case "$1" in\n'
                    f'  login) pw=$(cat); echo "login $DOCKER_CONFIG" >> {record};'
                    ' printf \'{"auths":{"%s":{"password":"%s"}}}\' "$5" "$pw" > "$DOCKER_CONFIG/config.json";'
                    " echo 'Login Succeeded' ;;\n"
                    f'  buildx) if [ "$2" = build ]; then echo "build $DOCKER_CONFIG $(ls "$DOCKER_CONFIG"|tr "\\n" " ")"'
                    f" >> {record}; fi; exit 0 ;;\n"
                    "  *) exit 1 ;;\n"
                    "esac\n")
    path.chmod(0o755)


def test_build_logs_in_to_a_private_config_and_leaves_none_behind(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "home" / ".docker"
    (user / "cli-plugins").mkdir(parents=True)
    env = base_env(tmp_path, REG_PW=MARKER)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    record = tmp_path / "record"
    _recording_docker(Path(env["CACHEPORT_DOCKER"]), record)
    argv = ["build", "-b", "registry", "--set", "ref=127.0.0.1:1/app/cache", "--set", "username=u", "--set",
            "password-env=REG_PW", "."]
    result = run_cli(argv, env, tmp_path / "work")
    assert_clean(result)
    assert result.code == 0, result
    login, build = record.read_text().splitlines()
    private = login.split()[1]
    assert private.startswith(str(tmp_path / "tmp" / "cacheport-docker-"))
    assert build.split()[1:] == [private, "cli-plugins", "config.json"]
    assert not Path(private).exists() and list((tmp_path / "tmp").iterdir()) == []
    assert sorted(p.name for p in user.iterdir()) == ["cli-plugins"]  # no config.json with the password


@pytest.mark.parametrize("store, user_helpers, after", [
    ("other", {REG: "desk"}, {REG: "desk"}),
    ("other", {}, {}),
    ("gone", {}, {REG: ""}),  # a helper that is not there would fail the build: anonymous instead
])
def test_a_failed_login_gives_the_build_the_user_s_own_helper_back(tmp_path: Path, store: str,
                                                                   user_helpers: dict[str, str],
                                                                   after: dict[str, str]) -> None:
    """The private config sets the user's helper for the registry aside, so that docker login writes there; when
    that login fails, the build still has the user's own login (credHelpers, else credsStore)."""
    import sys

    env = base_env(tmp_path, REG_PW=MARKER, CACHEPORT_HISTORY="off",  # the build's record would go to REG
                   **docker_config(tmp_path, {"credsStore": store, "credHelpers": user_helpers}))
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    for name in ("desk", "other"):
        (helpers / f"docker-credential-{name}").write_text("#!/bin/sh\nexit 1\n")
        (helpers / f"docker-credential-{name}").chmod(0o755)
    env["PATH"] = f"{helpers}:{env['PATH']}"
    record = tmp_path / "record"
    Path(env["CACHEPORT_DOCKER"]).write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "if sys.argv[1] == 'login':\n    sys.stderr.write('Error: connection refused\\n')\n    sys.exit(1)\n"
        "if sys.argv[1:3] == ['buildx', 'build']:\n"
        "    config = json.load(open(os.path.join(os.environ['DOCKER_CONFIG'], 'config.json')))\n"
        f"    open({str(record)!r}, 'w').write(json.dumps(config['credHelpers']))\n"
        "sys.exit(0 if sys.argv[1:3] == ['buildx', 'build'] else 1)\n")
    argv = ["build", "-b", "registry", "--set", f"ref={REG}/app/cache", "--set", "username=u", "--set",
            "password-env=REG_PW", "."]
    result = run_cli(argv, env, tmp_path / "work")
    assert_clean(result)
    assert f"cacheport: warning: login to {REG} failed (Error: connection refused); building without it" in \
        result.err.splitlines()
    assert json.loads(record.read_text()) == after


@pytest.mark.parametrize("docker_login", [False, True])
def test_build_names_the_unset_variable_unless_docker_is_logged_in(tmp_path: Path, docker_login: bool) -> None:
    env = base_env(tmp_path, CACHEPORT_HISTORY="off")  # the build's record would go to REG, not on this machine
    if docker_login:
        env.update(logged_in(tmp_path))
    _recording_docker(Path(env["CACHEPORT_DOCKER"]), tmp_path / "record")
    argv = ["build", "-b", "registry", "--set", f"ref={REG}/app/cache", "--set", "password-env=REG_PW", "."]
    result = run_cli(argv, env, tmp_path / "work")
    assert_clean(result)
    said = [line for line in result.err.splitlines() if "not logging in" in line]
    assert said == ([] if docker_login else [
        f"cacheport: warning: not logging in to {REG}: $REG_PW is not set, and docker has no login for {REG}; the "
        "build reads and writes its cache anonymously, and a refusal there does not fail the build"])
    assert "login" not in (tmp_path / "record").read_text()  # nothing to log in with: no docker login at all


def test_args_warns_once_on_stderr_and_prints_the_same_flags(tmp_path: Path) -> None:
    env = base_env(tmp_path, REG_PW=MARKER, DOCKER_CONFIG=str(tmp_path / "empty"))
    argv = ["args", "-b", "registry", "--set", f"ref={REG}/app/cache", "--set", "username=u", "--set",
            "password-env=REG_PW"]
    warned = run_cli(argv, env, tmp_path / "work")
    assert_clean(warned)
    assert [line for line in warned.err.splitlines() if "docker" in line] == [
        f"cacheport: warning: docker is not logged in to {REG}, so docker buildx build reads and writes its cache "
        f"anonymously, and a refusal there does not fail the build; run `docker login {REG}`, or build with "
        "`cacheport build`, which logs in with $REG_PW"]
    quiet = run_cli(argv, {**env, **logged_in(tmp_path)}, tmp_path / "work")
    assert "docker" not in quiet.err and quiet.out == warned.out and REG in quiet.out


def test_args_asks_no_credential_helper_and_counts_one_on_path_as_docker_s_login(tmp_path: Path) -> None:
    """A helper may wait a minute for a keychain; rendering flags must not. Only one missing from PATH is said."""
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    asked = tmp_path / "asked"
    program = bin_dir / "docker-credential-desk"
    program.write_text(f"#!{sys.executable}\nopen({str(asked)!r}, 'a').write('asked\\n')\n"
                       "print('{\"Username\": \"me\", \"Secret\": \"s\"}')\n")
    program.chmod(0o755)
    env = base_env(tmp_path, REG_PW=MARKER, **docker_config(tmp_path, {"credsStore": "desk"}))
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    argv = ["args", "-b", "registry", "--set", f"ref={REG}/app/cache", "--set", "username=u", "--set",
            "password-env=REG_PW"]
    found = run_cli(argv, env, tmp_path / "work")
    assert_clean(found)
    assert found.code == 0 and f"--cache-from=type=registry,ref={REG}/app/cache" in found.out
    assert "docker" not in found.err and not asked.exists()
    assert registry_logins([OWN], env)[0].docker is not None and asked.exists()  # doctor and build do ask it
    gone = run_cli(argv, {**env, **docker_config(tmp_path, {"credsStore": "gone"})}, tmp_path / "work")
    assert gone.out == found.out
    assert [line for line in gone.err.splitlines() if "docker" in line] == [
        "cacheport: warning: docker's credential helper docker-credential-gone (credsStore in "
        f"{tmp_path / 'docker-config' / 'config.json'}) is not on PATH; install it, or remove that setting; docker "
        f"buildx build will fail to log in to {REG}"]


def test_a_terminated_build_leaves_no_private_docker_config_behind(tmp_path: Path) -> None:
    """A cancelled CI job sends SIGTERM: the private config, which holds the build's passwords, still goes."""
    import os
    import signal
    import subprocess
    import sys

    script = (
        "import sys, time\n"
        "from cacheport.ops.logins import private_docker_config\n"
        f"with private_docker_config({{'HOME': {str(tmp_path)!r}}}, ['registry.example.com']) as env:\n"
        "    print(env['DOCKER_CONFIG'], flush=True)\n"
        "    time.sleep(60)\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None
        private = Path(proc.stdout.readline().strip())
        assert (private / "config.json").is_file()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) != 0
    assert not private.exists()
