"""Secrets and terminal escapes in what cacheport streams and prints: a build's log, a docker client that answers
garbage, python-on-whales' debug switch, and the masking itself.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from cacheport.masking import mask, printable, secret_forms, terminal_safe
from tests.fakes.hostile import MARKER, assert_clean, base_env, run_cli, stand_in_docker


def test_doctor_with_a_docker_whose_answers_are_garbage(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    stand_in_docker(Path(env["CACHEPORT_DOCKER"]), version="garbage", buildx="garbage")
    result = run_cli(["doctor", "-b", "local"], env, tmp_path / "work")
    assert_clean(result)
    assert result.code == 1 and "✗ docker: the docker client answered `docker version`, but its answer was not" \
        in result.out


def test_build_with_a_docker_whose_answers_are_garbage_still_builds(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    stand_in_docker(Path(env["CACHEPORT_DOCKER"]), version="garbage", buildx="garbage")
    result = run_cli(["build", "-b", "local", "."], env, tmp_path / "work")
    assert_clean(result)
    assert result.code == 0, result
    assert "could not inspect the current buildx builder (docker buildx inspect printed no builder name" in result.err
    assert "\\x1b[2J" in result.err and "\\x1b]0;title" in result.err  # the log's escapes, shown escaped


def _echoing_docker(path: Path) -> None:
    """A docker whose login fails echoing the base64 of what it got, and whose buildx fails echoing its argv."""
    path.write_text("#!/bin/sh\n"
                    'case "$1" in\n'
                    '  login) pw=$(cat); printf "Error: unauthorized: %s\\n" "$(printf "%s:%s" "$4" "$pw" | base64)"'
                    " >&2; exit 1 ;;\n"
                    '  buildx) if [ "$2" = build ]; then echo "ERROR: invalid cache options: $*" >&2; exit 1; fi;'
                    " exit 1 ;;\n"
                    "  *) exit 1 ;;\n"
                    "esac\n")
    path.chmod(0o755)


def test_build_output_never_shows_a_secret_nor_its_base64(tmp_path: Path) -> None:
    env = base_env(tmp_path, AZURE_STORAGE_ACCOUNT_KEY=MARKER, REG_PW=MARKER + "-login")
    _echoing_docker(Path(env["CACHEPORT_DOCKER"]))
    result = run_cli(["build", "-b", "azblob", "--set", "account_url=https://acct.blob.core.windows.net", "."],
                     env, tmp_path / "work")
    assert result.code == 1
    assert "invalid cache options" in result.err and "secret_access_key=***" in result.err
    assert_clean(result)
    login = run_cli(["build", "-b", "registry", "--set", "ref=127.0.0.1:1/app/cache", "--set", "username=u",
                     "--set", "password-env=REG_PW", "."], env, tmp_path / "work")
    assert "login to 127.0.0.1:1 failed (Error: unauthorized: " in login.err
    assert_clean(login, secrets=(MARKER + "-login",))


@pytest.mark.parametrize("command", ["build", "doctor"])
def test_python_on_whales_debug_is_refused_in_one_line(command: str, tmp_path: Path) -> None:
    env = base_env(tmp_path, PYTHON_ON_WHALES_DEBUG="1", AZURE_STORAGE_ACCOUNT_KEY=MARKER)
    stand_in_docker(Path(env["CACHEPORT_DOCKER"]), version="echo-env", buildx="echo-env")
    argv = [command, "-b", "azblob", "--set", "account_url=http://127.0.0.1:1", "--set", "account_name=acct"]
    result = run_cli(argv + (["."] if command == "build" else []), env, tmp_path / "work")
    assert_clean(result)
    assert "PYTHON_ON_WHALES_DEBUG is set" in result.out + result.err
    assert result.code == (2 if command == "build" else 1)


def test_printable_and_masking_are_what_a_person_may_see() -> None:
    assert printable("a\x1b[31mb\u202ec\nd") == "a\\x1b[31mb\\u202ec d"
    forms = secret_forms(["hunter2-secret"])
    for user in ("u", "us", "usr"):
        encoded = base64.b64encode(f"{user}:hunter2-secret".encode()).decode()
        assert mask(encoded, forms) != encoded
    assert mask("short pw", secret_forms(["pw"])) == "short pw"  # too short to tell from text
    assert terminal_safe("\x1b[31mred\x1b[0m \x1b]52;c;Zm9v\x07\r\n") == "\x1b[31mred\x1b[0m \\x1b]52;c;Zm9v\\x07\r\n"
