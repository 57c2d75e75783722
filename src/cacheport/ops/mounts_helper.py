"""The helper builds that copy cache mounts into and out of a builder: their Dockerfile, their scripts, running
one with buildx, and reading what it left in ``/out``.

A helper build runs on the same builder as the user's build (the :class:`~cacheport.ops.docker.Docker` record's),
so it works on every driver: ``docker``, ``docker-container``, ``remote``. Restore bind-mounts the downloaded
archives (its build context) and extracts each into a cache mount of the same id, uid, gid and mode; save tars
each cache mount into ``/out`` and exports it with ``--output type=local``. Both bust their step cache with a
build argument: ``--no-cache`` would hand them empty cache mounts. Which mounts, which archives and what becomes
of each is :mod:`cacheport.ops.mounts`'s.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from cacheport.mounts import CacheMount, MountArchive
from cacheport.ops.docker import Docker, last_line

#: The helper image when ``mounts.helper-image`` names none. A helper image needs ``sh``, ``tar`` (with gzip),
#: ``find``, ``stat``, ``sort``, ``md5sum``, ``head`` and ``cut``, as busybox has them.
DEFAULT_HELPER = "busybox"
#: The build argument that makes every helper step run (``--no-cache`` would empty the cache mounts).
NONCE_ARG = "CACHEPORT_NONCE"
# What an id may hold to go into a --mount flag of a generated Dockerfile unquoted.
_SAFE = re.compile(r"[A-Za-z0-9._/:@+=~-]+")


def usable(mount: CacheMount) -> str:
    """Why a mount can't go into a helper build's ``--mount`` flag, or ``""``."""
    if not _SAFE.fullmatch(mount.id):
        return f"its id {mount.id!r} holds characters cacheport does not pass to a helper build"
    if mount.sharing not in ("shared", "private", "locked"):
        return f"its sharing {mount.sharing!r} is not shared, private or locked"
    return ""


def _mount_flag(mount: CacheMount, target: str) -> str:
    # uid/gid/mode only where the Dockerfile has them: with them, BuildKit keys the mount by the root it makes too.
    owner = f",uid={mount.uid},gid={mount.gid},mode={mount.mode:o}" if mount.sets_owner else ""
    return f"--mount=type=cache,id={mount.id},target={target},sharing={mount.sharing}{owner}"


#: The helper builds' own cache mount: per mount, what the last restore put there (``digest size fingerprint``).
STATE_ID = "cacheport-mounts-state"
# A mount's fingerprint: every entry's name, size, mtime, owner, mode and type, sorted.
_FINGERPRINT = ("""fp() { (cd "$1" && find . -exec stat -c '%n|%s|%Y|%u|%g|%a|%F' {} + | sort | md5sum """
                """| cut -d' ' -f1); }""")


def dockerfile(helper: str, mounts: Sequence[CacheMount]) -> str:
    """A helper build's Dockerfile: its context at ``/in`` (``helper.sh`` runs), mount ``n`` at ``/m/n``, the
    state at ``/s``; only ``/out`` is exported. The network is off: a helper never needs one."""
    flags = ["--network=none", "--mount=type=bind,source=.,target=/in",
             f"--mount=type=cache,id={STATE_ID},target=/s,sharing=locked",
             *(_mount_flag(m, f"/m/{n}") for n, m in enumerate(mounts))]
    return (f"FROM {helper} AS helper\n"
            f"ARG {NONCE_ARG}\n"
            f"RUN {' '.join(flags)} \\\n    sh /in/helper.sh\n"
            "FROM scratch\n"
            "COPY --from=helper /out/ /\n")


def restore_script(archives: Sequence[MountArchive]) -> str:
    """Mount ``n`` emptied and given ``/in/n.tar.gz``; ``/out/n.ok`` says it worked, ``/out/n.err`` what tar said.
    Always extracted, even when the state says the mount holds that archive already: on a builder other jobs
    use too, the state and the mount are theirs to write, and a restore must leave exactly the archive's
    contents. The state remembers the archive (digest, size) and the mount's fingerprint after it, for the save to
    know an untouched mount."""
    lines = ["set -u", "mkdir -p /out", _FINGERPRINT]
    for n, archive in enumerate(archives):
        stamp, digest = _stamp(archive.mount), shlex.quote(archive.digest)
        lines += [f"if (find /m/{n} -mindepth 1 -maxdepth 1 -exec rm -rf {{}} + && "
                  f"tar -xzf /in/{n}.tar.gz -C /m/{n} --numeric-owner) 2>/out/{n}.err; "
                  f"then echo {digest} {archive.size} \"$(fp /m/{n})\" >{stamp}; echo ok >/out/{n}.ok",
                  f"else rm -f {stamp}; fi"]
    return "\n".join(lines) + "\n"


def save_script(mounts: Sequence[CacheMount], limit: int) -> str:
    """Mount ``n`` as ``/out/n.tar.gz`` (owners, modes and links kept; tar never follows a link), cut after
    ``limit`` + 1 bytes so a huge mount never fills the disk it is exported to (the caller refuses what is
    longer); or ``/out/n.same`` (``digest size``) when it is as the last restore left it, an archive the store
    holds already; or ``/out/n.empty``; or ``/out/n.err`` with what tar said."""
    lines = ["set -u", "mkdir -p /out", _FINGERPRINT]
    for n, mount in enumerate(mounts):
        lines += [f"if read -r d z f <{_stamp(mount)} 2>/dev/null && [ \"$f\" = \"$(fp /m/{n})\" ]; "
                  f"then echo \"$d $z\" >/out/{n}.same",
                  f'elif [ -z "$(find /m/{n} -mindepth 1 -maxdepth 1 | head -n 1)" ]; then : >/out/{n}.empty',
                  # tar cut short by head (too large) is no failure: only one that failed with a small archive
                  f"elif (tar -czf - -C /m/{n} . 2>/out/{n}.err || : >/out/{n}.fail) | head -c {limit + 1} "
                  f">/out/{n}.tar.gz; [ -e /out/{n}.fail ] && [ \"$(stat -c %s /out/{n}.tar.gz)\" -le {limit} ]; "
                  f"then rm -f /out/{n}.tar.gz; fi"]
    return "\n".join(lines) + "\n"


def _stamp(mount: CacheMount) -> str:
    import hashlib

    return f"/s/{hashlib.sha256(mount.id.encode()).hexdigest()[:32]}"


def helper_build(docker: Docker, dockerfile: str, context: Path, out: Path, *, timeout: float = 3600) -> str:
    """Run one helper build on ``docker``'s builder, its ``/out`` exported into ``out``; ``""`` when it ran, else
    the last line buildx printed."""
    with tempfile.TemporaryDirectory(prefix="cacheport-helper-") as tmp:
        file = Path(tmp) / "Dockerfile"
        file.write_text(dockerfile, encoding="utf-8")
        args = ["buildx", "build", *docker.builder_args(), "--progress=plain", "--file", str(file),
                "--build-arg", f"{NONCE_ARG}={uuid.uuid4().hex}", "--output", f"type=local,dest={out}", str(context)]
        try:
            done = docker.run(*args, timeout=timeout)
        except (OSError, subprocess.SubprocessError) as exc:
            return str(exc) or type(exc).__name__
    if done.returncode == 0:
        return ""
    said = last_line(done.stderr or done.stdout)
    # BuildKit repeats the whole step before its reason, and buildx heads it with "ERROR: failed to solve:" (0.20
    # on: "ERROR: failed to build: failed to solve:"); the reason is what a report line needs.
    reason = said.rpartition("did not complete successfully: ")[2]
    reason = re.sub(r"^(error: )?(failed to build: )?(failed to solve: )?", "", reason, flags=re.IGNORECASE)
    return f"helper build failed: {reason}"


def read_same(path: Path) -> tuple[str, int] | None:
    """``(digest, size)`` of the archive a mount is as restored from, from the save's ``n.same``; None without."""
    try:
        digest, size = path.read_text(encoding="utf-8").split()
        return (digest, int(size)) if re.fullmatch(r"sha256:[0-9a-f]{64}", digest) else None
    except (OSError, ValueError):
        return None


def tar_said(path: Path) -> str:
    """What tar said in a helper build (its ``n.err``), as one line."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "no archive was written"
    return last_line(text) if text.strip() else "no archive was written"
