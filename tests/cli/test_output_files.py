"""Files cacheport reads and writes, and what it says about them: ``-o`` through links, onto devices, a full
disk, ``$GITHUB_OUTPUT``; config files that are not UTF-8 or are nested too deeply; unknown backends and
mistyped flags. Each error is one line naming its source; nothing is written half.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cacheport.cli import output as common
from tests.e2e.harness import clean_environ
from tests.fakes.hostile import MARKER, Result, assert_clean, base_env, run_cli

AZBLOB = ["-b", "azblob", "--set", "account_url=https://acct.blob.core.windows.net"]


def one_error(result: Result, *fragments: str) -> None:
    assert_clean(result)
    err = result.err
    lines = [line for line in err.splitlines() if not line.startswith("cacheport: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("cacheport: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- -o ---------------------------------------------------------------------------------------------------------

def test_o_through_a_symlink_writes_the_target_and_keeps_the_link(tmp_path: Path) -> None:
    env = base_env(tmp_path, AZURE_STORAGE_ACCOUNT_KEY=MARKER)
    work = tmp_path / "work"
    (work / "real.txt").write_text("old\n")
    (work / "real.txt").chmod(0o644)
    (work / "link.txt").symlink_to("real.txt")
    (work / "dangling").symlink_to("new.txt")
    result = run_cli(["args", *AZBLOB, "-o", "link.txt"], env, work)
    assert result.code == 0, result
    assert (work / "link.txt").is_symlink() and MARKER in (work / "real.txt").read_text()
    assert stat.S_IMODE((work / "real.txt").stat().st_mode) == 0o600
    assert run_cli(["args", "-o", "dangling"], env, work).code == 0
    assert (work / "dangling").is_symlink() and "--cache-to" in (work / "new.txt").read_text()
    assert sorted(p.name for p in work.iterdir()) == ["dangling", "link.txt", "new.txt", "real.txt"]


def test_o_dev_stdout_prints_and_leaves_the_link_alone(tmp_path: Path) -> None:
    """As root, too (CI runs as root): /dev/stdout is streamed to, never replaced by a regular file."""
    before = os.readlink("/dev/stdout")
    out = subprocess.run([sys.executable, "-m", "cacheport", "args", "-o", "/dev/stdout"], capture_output=True,
                         text=True, cwd=tmp_path, env={**clean_environ(), "HOME": str(tmp_path)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("--cache-to=type=local,")
    assert os.path.islink("/dev/stdout") and os.readlink("/dev/stdout") == before


def test_a_write_that_fails_part_way_leaves_the_old_file(tmp_path: Path) -> None:
    """A real failure from the kernel: a file size limit (as a full disk would) cuts the temporary file."""
    target = tmp_path / "flags.txt"
    target.write_text("old\n")

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))

    out = subprocess.run([sys.executable, "-m", "cacheport", "args", "-o", str(target)], capture_output=True,
                         text=True, cwd=tmp_path, env={**clean_environ(), "HOME": str(tmp_path)}, timeout=60,
                         preexec_fn=small_files)
    assert out.returncode == 2
    assert out.stderr.startswith(f"cacheport: error: -o {target}: cannot write it: File too large")
    assert out.stderr.count("\n") == 1
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["flags.txt"]


@pytest.mark.parametrize(("target", "fragment"), [
    ("/dev/full", "No space left on device"),
    ("/proc/version", "cannot create a file in /proc"),
    ("missing/dir/flags.txt", "missing/dir: No such file or directory"),
    ("bad\0name", "is not a path: embedded null byte"),
])
def test_o_somewhere_it_cannot_write_is_one_line(target: str, fragment: str, tmp_path: Path) -> None:
    before = Path("/proc/version").read_text()
    result = run_cli(["args", "-o", target], base_env(tmp_path), tmp_path / "work")
    assert result.code == 2
    one_error(result, "-o", fragment)
    assert Path("/proc/version").read_text() == before
    assert list((tmp_path / "work").iterdir()) == []


def test_o_a_fifo_nobody_reads_fails_at_once_and_one_that_is_read_gets_the_flags(tmp_path: Path) -> None:
    work = tmp_path / "work"
    env = base_env(tmp_path)
    os.mkfifo(work / "fifo")
    result = run_cli(["args", "-o", "fifo"], env, work, seconds=20)
    one_error(result, "-o fifo: cannot write it: No such device or address")
    got: list[bytes] = []
    ready = threading.Event()

    def read() -> None:
        fd = os.open(work / "fifo", os.O_RDWR)  # a reader that is there before the writer, and waits for it
        ready.set()
        got.append(os.read(fd, 65536))
        os.close(fd)

    reader = threading.Thread(target=read)
    reader.start()
    ready.wait(10)
    assert run_cli(["args", "-o", "fifo"], env, work, seconds=20).code == 0
    reader.join(10)
    assert got and got[0].startswith(b"--cache-to=")


def test_o_a_terminal_shows_secrets_as_stars(tmp_path: Path) -> None:
    controller, terminal = os.openpty()
    try:
        result = run_cli(["args", *AZBLOB, "-o", os.ttyname(terminal)], base_env(tmp_path,
                         AZURE_STORAGE_ACCOUNT_KEY=MARKER), tmp_path / "work")
        assert result.code == 0, result
        shown = os.read(controller, 65536).decode()
    finally:
        os.close(controller)
        os.close(terminal)
    assert "secret_access_key=***" in shown and MARKER not in shown


# --- $GITHUB_OUTPUT -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tty", [False, True])
@pytest.mark.parametrize("actions", [False, True])
def test_github_output_gets_real_values_0600_and_masks_only_for_the_runner(tmp_path: Path, tty: bool,
                                                                           actions: bool) -> None:
    output = tmp_path / "github_output"
    output.write_text("earlier=1\n")
    output.chmod(0o644)
    env = base_env(tmp_path, AZURE_STORAGE_ACCOUNT_KEY=MARKER, GITHUB_OUTPUT=str(output),
                   **({"GITHUB_ACTIONS": "true"} if actions else {}))
    result = run_cli(["args", "--format", "github", *AZBLOB], env, tmp_path / "work", tty=tty)
    assert result.code == 0, result
    text = output.read_text()
    assert text.startswith("earlier=1\n") and f"secret_access_key={MARKER}" in text and "***" not in text
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert (f"::add-mask::{MARKER}" in result.out) == actions
    if not actions:
        assert_clean(result)


def test_an_append_that_fails_part_way_is_cut_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "github_output"
    output.write_text("earlier=1\n")
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        if len(data) > 10:
            real_write(fd, bytes(data[:10]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(Exception) as caught:
        common.write_file(output, "cache-from<<x\nlots of text\nx\n", append=True, source="$GITHUB_OUTPUT")
    assert str(caught.value) == f"$GITHUB_OUTPUT {output}: cannot write it: No space left on device"
    assert output.read_text() == "earlier=1\n"


# --- config files, unknown backends, flags --------------------------------------------------------------------

@pytest.mark.parametrize(("content", "fragment"), [
    (b"\xff\xfebackend = 'local'\n", "cacheport.toml: not UTF-8 text (byte 0xff at offset 0)"),
    (b"backend = '\xe9'\n", "not UTF-8 text"),
    (b"a = " + b"[" * 3000 + b"]" * 3000 + b"\n", "cacheport.toml: nested too deeply to read"),
    (b"a = " + b"{b = " * 3000 + b"1" + b"}" * 3000 + b"\n", "cacheport.toml: nested too deeply to read"),
    (b"[" + b"a." * 3000 + b"b]\n", "cacheport.toml"),
    (b"backend = 'local'\n[local]\nmode = 'max'\n\x00", "cacheport.toml: not valid TOML"),
])
@pytest.mark.parametrize("command", ["args", "explain", "status"])
def test_a_config_file_that_is_not_toml_is_one_line_naming_it(content: bytes, fragment: str, command: str,
                                                             tmp_path: Path) -> None:
    (tmp_path / "work" / "cacheport.toml").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "work" / "cacheport.toml").write_bytes(content)
    result = run_cli([command], base_env(tmp_path), tmp_path / "work")
    assert result.code == 2
    one_error(result, fragment)


@pytest.mark.parametrize(("toml", "env", "flags", "source"), [
    ('backend = "nope"\n', {}, [], "cacheport.toml backend: unknown backend 'nope'"),
    ('backend = "local"\n[migration]\nfrom = "nope"\n', {}, [], "cacheport.toml [migration] from: unknown backend"),
    ("", {"CACHEPORT_BACKEND": "nope"}, [], "CACHEPORT_BACKEND: unknown backend 'nope'"),
    ("", {}, ["--backend", "nope"], "--backend: unknown backend 'nope'"),
    ("", {"CACHEPORT_NOPE__REF": "x"}, [], "CACHEPORT_NOPE__REF: there is no backend 'nope'"),
])
def test_an_unknown_backend_says_which_setting_named_it(toml: str, env: dict[str, str], flags: list[str],
                                                       source: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir(parents=True, exist_ok=True)
    if toml:
        (work / "cacheport.toml").write_text(toml)
    result = run_cli(["args", *flags], base_env(tmp_path, **env), work)
    assert result.code == 2
    one_error(result, source)


@pytest.mark.parametrize(("argv", "fragment"), [
    (["args", "--bogus"], "No such option '--bogus'"),
    (["nosuch"], "No such command 'nosuch'"),
    (["status", "--format", "x"], "Invalid value for '--format'"),
    (["args", "--set", "foo"], "expected NAME=VALUE"),
    (["args", "-o"], "requires an argument"),
    (["prune", "--older-than"], "requires an argument"),
    (["seed", "--from"], "requires an argument"),
])
def test_a_usage_error_is_one_line_and_exit_status_2(argv: list[str], fragment: str, tmp_path: Path) -> None:
    result = run_cli(argv, base_env(tmp_path), tmp_path / "work")
    assert result.code == 2
    one_error(result, fragment, "--help')")
    assert "Usage:" not in result.err and "Try '" not in result.err
