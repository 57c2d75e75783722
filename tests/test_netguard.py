"""The guard that keeps tests off the network (tests/netguard.py): it refuses and records, here and in Python
subprocesses, and the conftest fixture fails the test that tried."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import netguard


def test_the_network_guard_refuses_and_records_a_lookup_and_a_connect() -> None:
    import socket

    with pytest.raises(PermissionError):
        socket.getaddrinfo("registry.example.com", 443)
    with socket.socket() as s, pytest.raises(PermissionError):
        s.connect(("192.0.2.1", 443))
    assert len(netguard.violations) == 2
    netguard.violations.clear()  # they were this test's own, on purpose
    Path(os.environ["NETGUARD_LOG"]).write_text("")


def test_the_network_guard_holds_in_python_subprocesses() -> None:
    code = "import socket\ntry:\n    socket.getaddrinfo('registry.example.com', 443)\nexcept PermissionError:\n" \
           "    print('refused')\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "refused"
    log = Path(os.environ["NETGUARD_LOG"])
    assert "registry.example.com" in log.read_text()
    log.write_text("")


def test_a_test_that_tries_the_network_fails(tmp_path: Path) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text("import socket\n\ndef test_lookup():\n    try:\n        socket.getaddrinfo('far-away.invalid', 443)\n"
                     "    except OSError:\n        pass  # swallowing the error does not hide the attempt\n")
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k not in ("NETGUARD_LOG", "PYTHONPATH")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                          str(probe)], capture_output=True, text=True, cwd=root, env=env, timeout=120)
    assert out.returncode == 1, out.stdout
    assert "the test tried to reach the network: name lookup of 'far-away.invalid'" in out.stdout


def test_a_run_removes_its_log_and_a_subprocess_outliving_it_is_still_refused(tmp_path: Path) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text("def test_nothing():\n    pass\n")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k not in ("NETGUARD_LOG", "PYTHONPATH")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                          str(probe)], capture_output=True, text=True, cwd=root, env={**env, "TMPDIR": str(tmp)},
                         timeout=120)
    assert out.returncode == 0, out.stdout
    assert not list(tmp.glob("cacheport-netguard-*"))
    # A server that a test left running keeps the run's variables: its log is gone, the guard still refuses.
    code = "import socket\ntry:\n    socket.getaddrinfo('registry.example.com', 443)\nexcept PermissionError:\n" \
           "    print('refused')\n"
    gone = {**os.environ, "NETGUARD_LOG": str(tmp / "cacheport-netguard-gone" / "violations")}
    late = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=gone)
    assert late.stdout.strip() == "refused"
