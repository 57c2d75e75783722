"""A stand-in ``docker`` for tests of ``cacheport build``: one docker-container builder, and ``buildx build``
writes its arguments (as JSON) to a file instead of building."""

from __future__ import annotations

import sys
from pathlib import Path


def stand_in_docker(directory: Path, log: Path, *, every: bool = False) -> Path:
    """An executable ``directory/docker`` that records the last ``buildx build``'s arguments in ``log`` (with
    ``every``, each build's, one JSON list a line)."""
    docker = directory / "docker"
    docker.write_text(f"""#!{sys.executable}
import json, sys
args = sys.argv[1:]
if args[:2] == ["buildx", "inspect"]:
    print("Name:   ci\\nDriver: docker-container\\n\\nNodes:\\nName: ci0\\nBuildKit version: v0.32.2")
elif args[:2] == ["buildx", "build"]:
    open({str(log)!r}, {"a" if every else "w"!r}).write(json.dumps(args) + {"chr(10)" if every else "''"})
""")
    docker.chmod(0o755)
    return docker
