"""Cache mounts that survive the CI builder: the contents of ``RUN --mount=type=cache`` kept beside the layer cache.

BuildKit exports no cache mount, and a CI builder is new for every job, so ``pip install``, ``npm ci`` or
``go build`` would start from an empty mount every time. cacheport carries each mount's contents as one
compressed tar archive, stored through the backend's own store (:class:`cacheport.CacheStore`) as an OCI
artifact named beside the branch's layer cache, with the same names per branch, the same fallback chain and the
same trust rules as the layer cache.

The package is split by job; this module holds the records they share:

- :mod:`.dockerfile` (pure): which cache mounts a build reaches, read with a real Dockerfile parser.
- :mod:`.artifact` (pure): the artifact's media types, its manifest, and the name beside a layer cache's name.
- :mod:`.archive`: an archive's safety and size (hostile members refused, limits enforced), streaming.
- :mod:`cacheport.ops.mounts_store`: moving archives to and from a store session (nothing unchanged uploaded).
- :mod:`cacheport.ops.mounts_helper`: the helper builds that copy archives into and out of the builder's cache
  mounts.
- :mod:`cacheport.ops.mounts`: the whole restore / save around a build, whose outcomes the build report shows.
"""

from __future__ import annotations

from pathlib import Path

import attrs

#: What a :class:`MountOutcome` says happened.
ACTIONS = (
    "restored",   # contents put into the builder's mount, from ``name``
    "missed",     # no archive under any name of the fallback chain
    "saved",      # archive uploaded under ``name``
    "unchanged",  # the archive equals the stored one: nothing uploaded
    "refused",    # this job may not write (trust, read-only), or a hostile archive was refused
    "too-large",  # over a size limit: not saved (or not restored)
    "failed",     # a store, helper-image or builder error; the build goes on
    "skipped",    # not handled: a mount that can't be resolved, a backend without a store, mounts = "off"
)


@attrs.frozen
class CacheMount:
    """One ``RUN --mount=type=cache`` of the Dockerfile, resolved.

    Attributes:
        id: the mount's id (BuildKit's default: its target), after ``ARG`` / ``--build-arg`` substitution.
        target: where the step sees it.
        sharing: ``shared``, ``private`` or ``locked``.
        uid, gid: owner of the mount's root.
        mode: permission bits of the mount's root.
        stage: the stage it was found in (its name, or its index as text).
        line: the Dockerfile line of the ``RUN`` instruction (1-based), for warnings.
        owner_given: whether the flag gave ``uid``, ``gid`` or ``mode``. BuildKit then makes the mount's root with
            them, and that makes it another mount than one of the same id without them: a helper build must say
            them exactly when the Dockerfile does. None when unknown: then taken as given when any differs from
            its default.
    """

    id: str
    target: str
    sharing: str = "shared"
    uid: int = 0
    gid: int = 0
    mode: int = 0o755
    stage: str = ""
    line: int = 0
    owner_given: bool | None = None

    @property
    def sets_owner(self) -> bool:
        """Whether the mount's flag has ``uid``, ``gid`` or ``mode`` (see ``owner_given``)."""
        if self.owner_given is not None:
            return self.owner_given
        return (self.uid, self.gid, self.mode) != (0, 0, 0o755)


@attrs.frozen
class MountArchive:
    """One mount's contents as a compressed tar file on this machine.

    Attributes:
        mount: which mount.
        path: the file.
        digest: ``sha256:…`` of the file's bytes, as the artifact's layer names it.
        size: the file's size in bytes.
    """

    mount: CacheMount
    path: Path
    digest: str
    size: int


@attrs.frozen
class MountLimits:
    """Size limits; an archive over either is not saved (or restored), with one warning, and the build passes.

    Attributes:
        per_mount: bytes one mount's archive, and its expanded contents, may take.
        total: bytes all of a build's archives together may take.
    """

    per_mount: int = 2 << 30
    total: int = 4 << 30


@attrs.frozen
class MountOutcome:
    """What happened to one mount, for the build report (text, JSON, GitHub summary, GitLab section).

    Attributes:
        id: the mount's id.
        action: one of :data:`ACTIONS`.
        name: the store name restored from or saved to ("" when none).
        size: bytes moved (or that would have been).
        seconds: time taken.
        detail: one line: why (the warning, the refusal), never a secret.
    """

    id: str
    action: str = attrs.field(validator=attrs.validators.in_(ACTIONS))
    name: str = ""
    size: int = 0
    seconds: float = 0.0
    detail: str = ""
