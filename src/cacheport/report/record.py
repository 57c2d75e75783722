"""One build's record for the cache's history: what a build did with its cache, kept beside the cache so that
``cacheport history`` can show the trend. Compact JSON with a schema version; the name a record is stored under.

Pure: the record is made from a :class:`~cacheport.report.BuildReport`, the job's context and the environment
handed in; reading one checks every field, so a corrupt or hostile record is one line of
:class:`~cacheport.errors.RecordError`, never a crash.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from cacheport.errors import NewerRecordError, RecordError
from cacheport.records import Context
from cacheport.refs import slug
from cacheport.report.model import HIT, BuildReport, one_line
from cacheport.report.render import describe

#: The record format's version: a reader refuses a record with a higher one (written by a newer cacheport).
SCHEMA = 1
ARTIFACT_TYPE = "application/vnd.cacheport.build-record.v1"
MEDIA_TYPE = "application/vnd.cacheport.build-record.v1+json"
#: Every record's name starts with this, in a registry repository beside the cache tags or in a directory.
PREFIX = "cacheport-history-"
MAX_SIZE = 64 << 10
#: The start of every cacheport's record artifact type: one other than :data:`ARTIFACT_TYPE` is a newer one's.
ARTIFACT_FAMILY = "application/vnd.cacheport.build-record."
#: The most ``--prune-bad`` reads of a record over :data:`MAX_SIZE` to learn whether a newer cacheport wrote it.
PROBE_SIZE = 1 << 20
_MAX_ITEMS = 64
_NAME = re.compile(rf"{PREFIX}(?P<branch>[a-z0-9][a-z0-9-]*)-(?P<stamp>\d{{17}})-(?P<id>[0-9a-f]{{8}})\Z")
_BRANCH_SLUG = 50  # a tag holds 128 characters: the prefix, the slug, a 17-digit stamp and an 8-digit id fit


@attrs.frozen
class Use:
    """One import, export or cache mount in a record.

    Attributes:
        cache: where it lives, for a person (:func:`cacheport.report.describe`; never a credential).
        kind: ``import``, ``export`` or ``mount``.
        status: the report's word (``hit``, ``missed``, ``written``, ...) or a mount's action.
        seconds: time taken, when known.
        size: bytes written (exports) or moved (mounts), when known.
        reason: why, in one line; empty when all went well.
    """

    cache: str
    kind: str
    status: str
    seconds: float | None = None
    size: int | None = None
    reason: str = ""


@attrs.frozen
class BuildRecord:
    """What one build did with its cache, and where and when it ran.

    Attributes:
        id: 8 hex digits, unique among records written at the same millisecond.
        time: when the record was made (UTC).
        source: ``build`` (``cacheport build``) or ``report`` (``cacheport report`` of a build run by hand).
        project, branch, key, backend, provider, job, job_url: where it ran.
        status: ``succeeded``, ``failed`` or ``unknown``.
        wall_seconds: the build's time.
        steps: ``(total, cached, executed)``, when known.
        first_run: the first step BuildKit executed rather than took from the cache ("" when none ran).
        uses: the imports, exports and mounts, in that order.
        version: the cacheport that wrote it.
    """

    id: str
    time: datetime
    source: str
    project: str
    branch: str | None
    backend: str
    status: str
    wall_seconds: float | None = None
    steps: tuple[int, int, int] | None = None
    first_run: str = ""
    uses: tuple[Use, ...] = ()
    key: str | None = None
    provider: str = ""
    job: str | None = None
    job_url: str | None = None
    version: str = ""

    @property
    def name(self) -> str:
        """The name it is stored under: its branch, its time and its id, so two writers never share one."""
        return record_name(self.branch, self.time, self.id)

    def of(self, kind: str) -> list[Use]:
        return [u for u in self.uses if u.kind == kind]

    @property
    def hit(self) -> bool:
        """Some import was read."""
        return any(u.status == HIT for u in self.of("import"))

    @property
    def cached_share(self) -> float | None:
        """The share of steps that came from the cache, when the steps are known."""
        return self.steps[1] / self.steps[0] if self.steps and self.steps[0] else None

    @property
    def export_seconds(self) -> float:
        return sum(u.seconds or 0.0 for u in self.of("export"))

    @property
    def export_bytes(self) -> int | None:
        sizes = [u.size for u in self.of("export") if u.size is not None]
        return sum(sizes) if sizes else None


def job_url(environ: Mapping[str, str]) -> str | None:
    """The CI job's page: GitLab's ``CI_JOB_URL``, GitHub's run page; None elsewhere."""
    if environ.get("CI_JOB_URL"):
        return environ["CI_JOB_URL"]
    server, repo, run = (environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server}/{repo}/actions/runs/{run}" if server and repo and run else None


def record_of(report: BuildReport, context: Context, backend: str, environ: Mapping[str, str], *, now: datetime,
              source: str = "build", key: str | None = None, mounts: Sequence[Any] = (),
              version: str = "", clean: Callable[[str], str] = str) -> BuildRecord:
    """The record of a build from its report; its cache mounts are the report's, or ``mounts``
    (:class:`cacheport.mounts.MountOutcome` items) when given. ``clean`` is applied to the text that came from
    BuildKit or a store (reasons, the first step run): a record is read by every job that can pull the cache."""
    uses = [Use(describe(i.entry), "import", i.status, i.seconds, None, clean(i.reason)) for i in report.imports]
    uses += [Use(describe(e.entry), "export", e.status, e.seconds, e.size, clean(e.reason)) for e in report.exports]
    uses += [Use(f"mount {m.id}", "mount", m.action, m.seconds, m.size, clean(m.detail))
             for m in mounts or report.mounts]
    steps = report.steps
    return BuildRecord(
        id=secrets.token_hex(4), time=now.astimezone(UTC), source=source, project=context.project,
        branch=context.branch, backend=backend, status=report.status, wall_seconds=report.wall_seconds,
        steps=(steps.total, steps.cached, steps.executed) if steps else None,
        first_run=clean(report.first_run),
        uses=tuple(uses), key=key, provider=context.provider,
        job=context.job, job_url=job_url(environ), version=version)


def record_name(branch: str | None, when: datetime, rid: str) -> str:
    """``cacheport-history-<branch slug>-<UTC time to the millisecond>-<id>``: a valid tag and file name."""
    stamp = when.astimezone(UTC).strftime("%Y%m%d%H%M%S%f")[:17]
    return f"{PREFIX}{branch_slug(branch)}-{stamp}-{rid}"


def branch_slug(branch: str | None) -> str:
    """How a branch is named in its records' names (what :func:`parse_name` gives back)."""
    return slug(branch or "none", _BRANCH_SLUG)


def is_record(name: str) -> bool:
    """Whether a name in a store is a build record's (not a cache: status, prune and seed leave it alone)."""
    return name.startswith(PREFIX)


def parse_name(name: str) -> tuple[str, str] | None:
    """``(branch slug, sortable stamp)`` of a record's name; None for any other name."""
    match = _NAME.match(name)
    return (match.group("branch"), match.group("stamp") + match.group("id")) if match else None


def to_json(record: BuildRecord) -> bytes:
    """The record as compact JSON (what is stored)."""
    doc = {
        "schema": SCHEMA, "id": record.id, "time": record.time.strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z",
        "source": record.source, "cacheport": record.version, "project": record.project, "branch": record.branch,
        "key": record.key, "backend": record.backend, "provider": record.provider, "job": record.job,
        "job_url": record.job_url, "status": record.status, "wall_seconds": record.wall_seconds,
        "steps": dict(zip(("total", "cached", "executed"), record.steps, strict=True)) if record.steps else None,
        "first_run": record.first_run or None,
        "uses": [{k: v for k, v in attrs.asdict(u).items() if v not in (None, "")} for u in record.uses],
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _text(doc: Mapping[str, Any], key: str, *, required: bool = False, limit: int = 300) -> str | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise RecordError(f"{key!r} is not {'a non-empty' if required else 'a'} string")
    return one_line(value)[:limit]


def _number(doc: Mapping[str, Any], key: str, kind: type = float) -> Any:
    value = doc.get(key)
    if value is None:
        return None
    # not value >= 0 refuses NaN too (json.loads takes it), which would reach every chart drawn from the store
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1e12:
        raise RecordError(f"{key!r} is not a number of {'seconds' if kind is float else 'units'}")
    return float(value) if kind is float else int(value)


def oversized_why(data: bytes) -> str | None:
    """Why a record over :data:`MAX_SIZE` (read up to :data:`PROBE_SIZE` + 1 bytes) is corrupt for any cacheport:
    not JSON, or JSON of a schema this one reads; None when that is not known (a newer cacheport's, or too large
    to tell), and it is kept."""
    if len(data) > PROBE_SIZE:
        return None
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return "not JSON"
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if isinstance(schema, int) and not isinstance(schema, bool) and 1 <= schema <= SCHEMA:
        return f"over {MAX_SIZE} bytes, the most a record may be"
    return None


def parse_record(data: bytes) -> BuildRecord:
    """A record read back; anything but what :func:`to_json` writes is a one-line :class:`RecordError`."""
    if len(data) > MAX_SIZE:
        raise RecordError(f"over {MAX_SIZE} bytes, the most a record may be")  # the reader stops past it
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise RecordError("not JSON") from None
    if not isinstance(doc, dict):
        raise RecordError("not a JSON object")
    schema = doc.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise RecordError("it has no schema version")
    if schema > SCHEMA:
        raise NewerRecordError(f"written by a newer cacheport ({_text(doc, 'cacheport') or 'unknown version'}, "
                          f"record schema {schema}; this one reads {SCHEMA}): upgrade cacheport")
    rid = _text(doc, "id", required=True) or ""
    if not re.fullmatch(r"[0-9a-f]{8}", rid):
        raise RecordError("'id' is not 8 hex digits")
    try:
        when = datetime.strptime(_text(doc, "time", required=True) or "", "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise RecordError("'time' is not a UTC time (YYYY-MM-DDTHH:MM:SS.fffZ)") from None
    steps_doc = doc.get("steps")
    steps = None
    if steps_doc is not None:
        if not isinstance(steps_doc, dict):
            raise RecordError("'steps' is not an object")
        counts = [_number(steps_doc, k, int) for k in ("total", "cached", "executed")]
        if None in counts or counts[1] + counts[2] > counts[0]:
            raise RecordError("'steps' does not add up (cached + executed > total)")
        steps = (counts[0], counts[1], counts[2])
    uses_doc = doc.get("uses") or []
    if not isinstance(uses_doc, list) or len(uses_doc) > 3 * _MAX_ITEMS:
        raise RecordError("'uses' is not a list of imports, exports and mounts")
    uses = []
    for item in uses_doc:
        if not isinstance(item, dict):
            raise RecordError("an item of 'uses' is not an object")
        kind = _text(item, "kind", required=True)
        if kind not in ("import", "export", "mount"):
            raise RecordError(f"an item of 'uses' has kind {kind!r}")
        uses.append(Use(_text(item, "cache", required=True) or "", kind, _text(item, "status", required=True) or "",
                        _number(item, "seconds"), _number(item, "size", int), _text(item, "reason") or ""))
    status = _text(doc, "status", required=True)
    source = _text(doc, "source", required=True)
    return BuildRecord(
        id=rid, time=when, source=source or "", project=_text(doc, "project", required=True) or "",
        branch=_text(doc, "branch", limit=255), backend=_text(doc, "backend", required=True) or "",
        status=status or "", wall_seconds=_number(doc, "wall_seconds"), steps=steps,
        first_run=_text(doc, "first_run") or "", uses=tuple(uses), key=_text(doc, "key"),
        provider=_text(doc, "provider") or "", job=_text(doc, "job"), job_url=_text(doc, "job_url", limit=500),
        version=_text(doc, "cacheport") or "")
