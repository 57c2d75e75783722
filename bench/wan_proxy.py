"""A TCP proxy on 127.0.0.1 that makes a loopback server look far away: a delay in each direction, a window
of bytes in flight per direction (as TCP's is), an optional bandwidth cap, and, for tests, injected faults.

Used by bench/registry_ops.py (in front of the harness's registries) and by tests/e2e/test_wan.py. It runs
its own asyncio loop in a daemon thread; ``with Proxy("127.0.0.1:5000", delay=0.025) as p:`` gives ``p.host``.

The model, per connection and direction: bytes read from one side are held ``delay`` seconds, then written to
the other, at most ``rate`` bytes a second; at most ``window`` bytes are held, so one connection moves at most
``window / delay`` bytes a second, as a real link with that round trip does. With no delay, no cap and no
faults the proxy only counts: the bytes are spliced from socket to socket in the kernel (``os.splice``), so
it takes none of the CPU that the tools it sits between would otherwise compete for. Faults:

- ``reset_after=N``: the connection that carries the Nth byte towards the server is reset (RST to the
  client), once;
- ``answer``: HTTP requests (client to server) are read as requests; the first ``times`` whose method and
  path match get a canned answer (say ``503`` with ``Retry-After: 1``) and never reach the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import socket
import struct
import threading
import time
from collections import deque
from typing import Any

import attrs

READ = 256 << 10


@attrs.define
class Answer:
    """A canned HTTP answer for matching requests.

    Attributes:
        method: the request method to match.
        path: a regular expression the request path must match (``re.search``).
        status: the status to answer.
        headers: extra response headers (``Retry-After``).
        times: how many matching requests get it; the rest pass.
        hits: how many got it so far.
    """

    method: str
    path: str
    status: int = 503
    headers: dict[str, str] = attrs.field(factory=dict)
    times: int = 1
    hits: int = 0


@attrs.define
class Counters:
    """What went through.

    Attributes:
        up: bytes towards the server.
        down: bytes towards the client.
        connections: connections accepted.
        resets: connections reset by a fault.
        requests: requests seen (only while ``answer`` rules are set), as ``(time.monotonic(), method, path)``,
            answered by a rule or not.
    """

    up: int = 0
    down: int = 0
    connections: int = 0
    resets: int = 0
    requests: list[tuple[float, str, str]] = attrs.field(factory=list)


class Proxy:
    """One upstream ``host:port`` behind a new port on 127.0.0.1."""

    def __init__(self, upstream: str, *, delay: float = 0.0, rate: float | None = None, window: int = 4 << 20,
                 reset_after: int | None = None, answer: list[Answer] | None = None) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.delay, self.rate, self.window = delay, rate, window
        self.reset_after, self.answer = reset_after, list(answer or [])
        self.counters = Counters()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="wan-proxy")
        self.server: asyncio.AbstractServer | None = None
        self.host = ""
        self._writers: set[asyncio.StreamWriter] = set()
        self._splicer: _Splicer | None = None

    def describe(self) -> str:
        """The settings, for a benchmark's output."""
        if not (self.delay or self.rate or self.reset_after is not None or self.answer):
            return "0 ms, no cap: bytes counted and spliced in the kernel"
        parts = [f"{self.delay * 1000:g} ms each way ({2 * self.delay * 1000:g} ms RTT)",
                 f"window {self.window >> 20} MiB per connection and direction"]
        parts.append(f"cap {self.rate / 1e6:g} MB/s per connection and direction" if self.rate else "no bandwidth cap")
        return ", ".join(parts)

    def __enter__(self) -> Proxy:
        if not (self.delay or self.rate or self.reset_after is not None or self.answer):
            self._splicer = _Splicer(self.upstream, self.counters)
            self.host = self._splicer.host
            return self
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop).result(10)
        self.host = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._splicer is not None:
            self._splicer.close()
            self.loop.close()
            return

        async def close() -> None:
            assert self.server is not None
            self.server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    # --- one connection ---------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._connection(reader, writer)
        except asyncio.CancelledError:  # the proxy is closing
            writer.transport.abort()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        state = {"closed": False}
        tasks = [asyncio.ensure_future(self._pump(reader, up_writer, writer, True, state)),
                 asyncio.ensure_future(self._pump(up_reader, writer, None, False, state))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.sleep(self.delay)  # let what is in flight the other way arrive
        for task in tasks:
            task.cancel()
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort() if state["closed"] else _close(w)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, client: asyncio.StreamWriter | None,
                    up: bool, state: dict[str, bool]) -> None:
        """Copy one direction through the delay line, the window and the cap (and, upwards, the faults)."""
        held: deque[tuple[float, bytes]] = deque()
        held_bytes = 0
        room, arrived = asyncio.Event(), asyncio.Event()
        room.set()
        parser = _Requests(self, client) if up and self.answer else None
        done = False

        async def read() -> None:
            nonlocal held_bytes, done
            while True:
                data = await src.read(READ)
                if not data:
                    break
                if parser is not None:
                    data = parser.feed(data)
                sent = self.counters.up + held_bytes + len(data)
                if up and self.reset_after is not None and sent >= self.reset_after:
                    self.reset_after = None
                    self.counters.resets += 1
                    state["closed"] = True
                    assert client is not None
                    _reset(client)
                    dst.transport.abort()
                    return
                held.append((time.monotonic() + self.delay, data))
                held_bytes += len(data)
                arrived.set()
                if held_bytes >= self.window:
                    room.clear()
                    await room.wait()
            done = True
            arrived.set()

        reading = asyncio.ensure_future(read())
        free_at = time.monotonic()
        try:
            while True:
                if not held:
                    if done or reading.done():
                        break
                    arrived.clear()
                    await arrived.wait()
                    continue
                due, data = held[0]
                now = time.monotonic()
                if due > now:
                    await asyncio.sleep(due - now)
                if self.rate:
                    free_at = max(free_at, time.monotonic()) + len(data) / self.rate
                    await asyncio.sleep(max(0.0, free_at - time.monotonic()))
                held.popleft()
                held_bytes -= len(data)
                if held_bytes < self.window:
                    room.set()
                dst.write(data)
                if up:
                    self.counters.up += len(data)
                else:
                    self.counters.down += len(data)
                await dst.drain()
            if not state["closed"] and dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError):
            state["closed"] = True
        finally:
            reading.cancel()


class _Splicer:
    """The proxy with nothing to add: a thread per connection and direction moving bytes with ``os.splice``
    (socket → pipe → socket, never through Python), counting them."""

    def __init__(self, upstream: tuple[str, int], counters: Counters) -> None:
        self.upstream, self.counters = upstream, counters
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True, name="wan-proxy").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.counters.connections += 1
                self.sockets |= {client, server}
            pair = [client, server]
            for src, dst, up in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, up, pair), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool, pair: list[socket.socket]) -> None:
        r, w = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
        try:
            while n := os.splice(src.fileno(), w, 1 << 20):
                with self.lock:  # counted before they can arrive, so a reader who has them sees them counted
                    if up:
                        self.counters.up += n
                    else:
                        self.counters.down += n
                while n:
                    n -= os.splice(r, dst.fileno(), n)
            dst.shutdown(socket.SHUT_WR)
        except OSError:  # a reset or a closed proxy: the other side sees it end too
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        finally:
            os.close(r)
            os.close(w)
            with self.lock:
                pair.append(src)  # both directions ended: the sockets can go
                if len(pair) == 4:
                    for sock in pair[:2]:
                        sock.close()
                        self.sockets.discard(sock)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept(), which close() alone does not
        self.listener.close()
        with self.lock:
            for sock in list(self.sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _Requests:
    """HTTP/1.1 requests in a stream towards the server: passes them on, or answers matching ones itself."""

    def __init__(self, proxy: Proxy, client: asyncio.StreamWriter | None) -> None:
        self.proxy, self.client = proxy, client
        self.buffer = b""
        self.body_left = 0
        self.dropping = False
        self.blind = False  # a chunked body: stop parsing, pass the rest through

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        self.buffer += data
        while self.buffer:
            if self.blind:
                out += self.buffer
                self.buffer = b""
                break
            if self.body_left:
                take = self.buffer[: self.body_left]
                self.buffer = self.buffer[len(take):]
                self.body_left -= len(take)
                if not self.dropping:
                    out += take
                if self.body_left == 0 and self.dropping:
                    self._answer()
                continue
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head, self.buffer = self.buffer[: end + 4], self.buffer[end + 4:]
            lines = head.decode("latin-1").split("\r\n")
            method, path = [*lines[0].split(" "), "", ""][:2]
            headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
            self.proxy.counters.requests.append((time.monotonic(), method, path))
            self.body_left = int(headers.get("content-length") or 0)
            self.blind = "chunked" in headers.get("transfer-encoding", "").lower()
            rule = next((a for a in self.proxy.answer if a.hits < a.times and a.method == method
                         and re.search(a.path, path)), None)
            self.dropping = rule is not None and not self.blind
            if self.dropping:
                assert rule is not None
                rule.hits += 1
                self.rule = rule
                if self.body_left == 0:
                    self._answer()
            else:
                out += head
        return bytes(out)

    def _answer(self) -> None:
        rule, self.dropping = self.rule, False
        headers = {"Content-Length": "0", **rule.headers}
        text = f"HTTP/1.1 {rule.status} Injected\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        assert self.client is not None
        self.client.write(text.encode())


def _reset(writer: asyncio.StreamWriter) -> None:
    sock: Any = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
    except (ConnectionError, OSError):
        writer.transport.abort()
