"""Blob uploads left open, remembered across runs, so a seed that was stopped resumes mid-blob.

One small JSON file per upload (mode 0600, in a 0700 directory under the user's cache directory), named after
a hash of the registry host, repository and blob digest. It holds the upload's ``Location`` (the registry's
own handle on the upload, which may carry signed state) and the offset it had reached; never a credential.
A journal without a directory keeps uploads in memory only: they resume within one run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import attrs

#: an upload older than this is not resumed: registries purge abandoned uploads (distribution: after 7 days).
MAX_AGE = 3 * 24 * 3600.0


@attrs.frozen
class OpenUpload:
    """An upload a registry holds for us.

    Attributes:
        location: the URL to continue it at (the last ``Location`` the registry gave).
        offset: the bytes it had accepted when we last heard from it.
        started: when it was opened (seconds since the epoch).
    """

    location: str = attrs.field(repr=False)
    offset: int
    started: float


class UploadJournal:
    """Open uploads by (host, repository, digest): in ``directory`` when one is given, else in memory."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory else None
        self._memory: dict[str, OpenUpload] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"UploadJournal({str(self.directory) if self.directory else None!r})"

    @staticmethod
    def _key(host: str, repository: str, digest: str) -> str:
        return hashlib.sha256(f"{host}/{repository}@{digest}".encode()).hexdigest()[:40]

    def get(self, host: str, repository: str, digest: str) -> OpenUpload | None:
        """The upload we left open for this blob, if any (and not too old to be worth asking about)."""
        key = self._key(host, repository, digest)
        with self._lock:
            found = self._memory.get(key)
        if found is None and self.directory is not None:
            found = self._read(self.directory / f"{key}.json", host, repository, digest)
        if found is None or time.time() - found.started > MAX_AGE:
            return None
        return found

    def put(self, host: str, repository: str, digest: str, upload: OpenUpload) -> None:
        key = self._key(host, repository, digest)
        with self._lock:
            self._memory[key] = upload
        if self.directory is None:
            return
        doc = {"host": host, "repository": repository, "digest": digest, "location": upload.location,
               "offset": upload.offset, "started": upload.started}
        with contextlib.suppress(OSError):  # a journal that can't be written only costs a resume
            self._write(self.directory / f"{key}.json", json.dumps(doc).encode())

    def drop(self, host: str, repository: str, digest: str) -> None:
        key = self._key(host, repository, digest)
        with self._lock:
            self._memory.pop(key, None)
        if self.directory is not None:
            with contextlib.suppress(OSError):
                (self.directory / f"{key}.json").unlink()

    @staticmethod
    def _read(path: Path, host: str, repository: str, digest: str) -> OpenUpload | None:
        try:
            doc: Any = json.loads(path.read_bytes())
            if (doc["host"], doc["repository"], doc["digest"]) != (host, repository, digest):
                return None
            return OpenUpload(str(doc["location"]), int(doc["offset"]), float(doc["started"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload.")  # mkstemp makes it 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
