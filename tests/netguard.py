"""A guard that fails a test when anything tries to reach an address that is not loopback.

:func:`install` patches the socket module of this process: ``connect``/``connect_ex``/``sendto`` to a non-loopback
address and ``getaddrinfo`` of a name that is not a loopback address or ``localhost`` (a DNS lookup is
network traffic too) raise and are recorded. Subprocesses get the same guard from ``netguard_site/sitecustomize.py``
(``PYTHONPATH``) writing to the file named by ``NETGUARD_LOG``, and proxy variables that point nowhere else.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from pathlib import Path
from typing import Any

violations: list[str] = []
_installed = False
SITE = Path(__file__).resolve().parent / "netguard_site"
#: Proxy settings for subprocesses: any HTTP client that honours them goes to a closed loopback port.
NOWHERE = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "ALL_PROXY": "http://127.0.0.1:9",
           "NO_PROXY": "127.0.0.1,127.0.0.2,localhost,::1"}


def loopback(host: object) -> bool:
    if host in (None, "", "localhost", b"localhost"):
        return True
    text = host.decode() if isinstance(host, bytes) else str(host)
    try:
        return ipaddress.ip_address(text.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return text.lower().endswith(".localhost")


def _refuse(what: str) -> OSError:
    violations.append(what)
    log = os.environ.get("NETGUARD_LOG")
    if log:
        with contextlib.suppress(OSError), open(log, "a") as fh:  # gone once the run that made it has ended
            fh.write(what + "\n")
    return PermissionError(f"test network guard: {what} is not loopback")


def install() -> None:
    """Patch this process's socket module (once)."""
    global _installed
    if _installed:
        return
    _installed = True
    real_connect, real_connect_ex, real_sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not loopback(address[0]):
            raise _refuse(f"connect to {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        check(self, args[-1])
        return real_sendto(self, data, *args)  # type: ignore[arg-type]

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not loopback(host):
            raise _refuse(f"name lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = sendto  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo


def subprocess_env(log: Path) -> dict[str, str]:
    """Variables that give a Python subprocess the same guard (and every HTTP client a proxy to nowhere)."""
    path = os.pathsep.join(p for p in (str(SITE), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "NETGUARD_LOG": str(log), **NOWHERE}
