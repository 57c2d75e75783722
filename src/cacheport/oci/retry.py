"""The one retry rule: how often, and after how long, to try again when a registry or the network failed for now
(:class:`RetryPolicy`, counted by :class:`Backoff`), and :func:`send_with_retries` for one request.

"For now" is a 408, 429 or 5xx answer (``Retry-After`` honoured), or a connection refused, reset or timed out.
Only requests that can be sent again unchanged are retried here (never a PATCH, never a streamed body); a blob
upload retries itself, from the offset the registry reports, under the same rule (:mod:`.upload`).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable

import attrs
import httpx

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: the extension key on a returned response: how many times it was sent.
TRIES = "cacheport.tries"


@attrs.frozen
class RetryPolicy:
    """How hard to try one request.

    Attributes:
        attempts: tries in all, the first included (1: never retry).
        connect_attempts: tries in all when no connection could be made at all (refused, unresolvable, timed
            out): a host that is simply wrong should not take a minute to say so.
        budget: seconds from the first try after which no new try starts.
        base: the first wait in seconds; it doubles with each retry, with jitter (half to all of it).
        cap: the longest single wait; a ``Retry-After`` longer than this (or than the budget left) ends the
            retries at once, rather than asking again early.
    """

    attempts: int = 6
    connect_attempts: int = 3
    budget: float = 90.0
    base: float = 0.5
    cap: float = 20.0

    def wait(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        backoff = min(self.cap, self.base * 2.0 ** (retry - 1)) * random.uniform(0.5, 1.0)
        return max(backoff, retry_after) if retry_after is not None else backoff


ONCE = RetryPolicy(attempts=1, connect_attempts=1)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: ``120`` or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_transient(exc: Exception) -> bool:
    """A failure of the connection, not of the request: worth another try."""
    return isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)


class Backoff:
    """The tries of one operation under a policy: each failed try asks how long to wait before the next, and
    learns when there is none. The one retry rule: requests (:func:`send_with_retries`) and resumed blob uploads
    both count their tries here."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy, self.clock = policy, clock
        self.began, self.tries = clock(), 1

    def next_wait(self, after: float | None = None, attempts: int | None = None) -> float | None:
        """Seconds to wait before the next try (at least ``after``, a ``Retry-After``), or None when the policy
        has run out: ``attempts`` (or the policy's) tries made, or the next would start past its budget."""
        policy = self.policy
        if self.tries >= min(policy.attempts, attempts or policy.attempts) or (after or 0.0) > policy.cap:
            return None
        delay = policy.wait(self.tries, after)
        if self.clock() - self.began + delay > policy.budget:
            return None
        self.tries += 1
        return delay


def send_with_retries(send: Callable[[], httpx.Response], policy: RetryPolicy, *,
                      sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic) -> httpx.Response:
    """``send()`` until it gives an answer that is not transient, or the policy runs out.

    Returns the last response (``response.extensions[TRIES]`` says how many tries it took); re-raises the last
    transport error when every try failed that way. A streamed response being retried is closed first.
    """
    backoff = Backoff(policy, clock)
    while True:
        try:
            response = send()
        except Exception as exc:
            if not is_transient(exc):
                raise
            connecting = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            delay = backoff.next_wait(None, policy.connect_attempts if connecting else None)
            if delay is None:
                raise
        else:
            delay = None
            if response.status_code in RETRY_STATUSES:
                delay = backoff.next_wait(retry_after(response.headers.get("retry-after")))
            if delay is None:
                response.extensions[TRIES] = backoff.tries
                return response
            response.close()
        sleep(delay)
