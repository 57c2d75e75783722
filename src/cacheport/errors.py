"""cacheport's exception classes. Every error a user can cause is one of these; the CLI prints it as one line."""

from __future__ import annotations

from collections.abc import Iterable


class CacheportError(Exception):
    """Base class: a problem the user can fix; printed as one line, exit status 2."""

    exit_code = 2


class EntryError(CacheportError, ValueError):
    """A cache entry string does not follow buildx's CSV rules."""


class ConfigError(CacheportError):
    """A setting in a file, the environment or a flag has a wrong name, type or value."""


class PluginError(CacheportError):
    """A plugin is broken, duplicated or not installed."""


class UnknownBackendError(PluginError):
    """A backend name matches no registered backend."""


class ContextError(CacheportError):
    """The CI environment is incomplete or contradictory."""


class RenderError(CacheportError):
    """A plan cannot be expressed in the requested output format."""


class RegistryError(CacheportError):
    """A registry refused, failed or could not be reached; the message is one line (exit status 1)."""

    exit_code = 1

    def __init__(self, message: str, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class SignatureError(CacheportError):
    """A cache's signature is missing, malformed, by an unknown key, wrong, or made for another cache."""


class CredentialHelperError(RegistryError):
    """docker's credential helper for a registry is missing, failed, or answered something else (exit status 1)."""


class Interrupted(CacheportError):
    """A copy was stopped (Ctrl-C, SIGTERM) at a safe point; running it again resumes (exit status 130)."""

    exit_code = 130


class ConversionError(CacheportError):
    """A cache manifest cannot be turned into the format the target needs."""


class MountError(CacheportError):
    """A cache mount's archive or artifact is hostile, too large, or not one this cacheport reads."""


class MountTooLarge(MountError):
    """A cache mount's archive expands to more than its size limit."""


class ReportError(CacheportError):
    """A build record (metadata file, history document) is not what buildx writes."""


class RecordError(CacheportError):
    """A build record of the cache's history is unreadable, hostile, or from a newer cacheport."""


class NewerRecordError(RecordError):
    """A build record written by a newer cacheport: readable by it, so never deleted as a bad one."""


class OversizedRecordError(RecordError):
    """A build record larger than the reader reads: what it holds (a newer cacheport's record?) is not known."""


class NoHistoryError(ReportError):
    """This buildx keeps no build history (older than 0.21)."""


def close_matches(word: str, choices: Iterable[str], n: int = 1) -> list[str]:
    """The choices closest to a mistyped word, best first (none when nothing is close)."""
    import difflib

    return difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)


def did_you_mean(word: str, choices: Iterable[str], n: int = 1) -> str:
    """`` (did you mean 'x'?)`` for the choices closest to a mistyped word, or ``""`` when none is close."""
    close = close_matches(word, choices, n)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
