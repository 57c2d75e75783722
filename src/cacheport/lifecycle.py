"""The cache as it sits in its backend: ``status`` (what is there), ``prune`` (delete what is stale) and the
registry checks of ``doctor`` (reachable, credentials, and whether the configured format is accepted).

Registry access goes through :mod:`cacheport.distribution`; which repository and credentials come from the
backend's own export entry, as ``seed`` computes them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs

from cacheport.backend import Check
from cacheport.distribution import OCI_INDEX, OCI_MANIFEST, Descriptor, Manifest, Registry, sha256_digest
from cacheport.errors import ConfigError, RegistryError
from cacheport.plan import Plan
from cacheport.refs import branch_tag
from cacheport.seed import CACHECONFIG, Side, is_cache_index

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
_DURATION = re.compile(r"(\d+)([smhdw])\Z")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@attrs.frozen
class CacheTag:
    """One tag in a cache repository.

    Attributes:
        tag: the tag.
        digest: the manifest it points at.
        format: ``index`` (BuildKit's default), ``image-manifest``, or None when it is not a cache.
        size: bytes of everything the manifest points at.
        updated: the newest ``buildkit/createdat`` among its layers, when BuildKit recorded one.
        role: ``this branch``, ``MR target``, ``default branch`` or empty.
    """

    tag: str
    digest: str
    format: str | None
    size: int
    updated: datetime | None
    role: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "digest": self.digest, "format": self.format, "size": self.size,
                "updated": self.updated.isoformat() if self.updated else None, "role": self.role or None}


def cache_format(manifest: Manifest) -> str | None:
    """Which of BuildKit's two cache formats a manifest is in, if any."""
    if manifest.is_index:
        return "index" if is_cache_index(manifest) else None
    config = manifest.json.get("config") or {}
    return "image-manifest" if config.get("mediaType") == CACHECONFIG else None


def created_at(descriptors: Iterable[Descriptor]) -> datetime | None:
    """The newest ``buildkit/createdat`` annotation (RFC 3339, nanoseconds cut to what Python reads)."""
    found = []
    for d in descriptors:
        text = d.annotations.get("buildkit/createdat")
        if not text:
            continue
        text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
        try:
            found.append(datetime.fromisoformat(text))
        except ValueError:
            continue
    return max(found) if found else None


def roles(plan: Plan, key: str | None) -> dict[str, str]:
    """Tag -> why it matters to this job (its branch, the MR target, the default branch)."""
    ctx = plan.context
    out: dict[str, str] = {}
    for name, role in ((ctx.default_branch, "default branch"), (ctx.target_branch, "MR target"),
                       (ctx.branch, "this branch")):
        if name:
            out[branch_tag(name, key, ctx)] = role
    return out


def registry_for(side: Side) -> Registry:
    return Registry(side.ref.host, side.credentials, insecure=side.insecure)


def list_cache(side: Side, plan: Plan, key: str | None) -> list[CacheTag]:
    """Every tag in the side's repository, with what it holds."""
    known = roles(plan, key)
    out = []
    with registry_for(side) as reg:
        for tag in sorted(reg.list_tags(side.ref.repository)):
            manifest = reg.get_manifest(side.ref.repository, tag)
            if manifest is None:
                continue
            out.append(CacheTag(tag, manifest.digest, cache_format(manifest), manifest.size,
                                created_at(manifest.descriptors()), known.get(tag, "")))
    return out


def parse_age(text: str) -> timedelta:
    """``14d``, ``12h``, ``2w``, ``90m`` or ``30s``."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise ConfigError(f"--older-than {text!r}: expected a number and a unit: s, m, h, d or w (e.g. 14d)")
    try:
        return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        raise ConfigError(f"--older-than {text!r}: too long") from None


@attrs.frozen
class Pruning:
    """What prune decided for one tag.

    Attributes:
        tag: the cache tag.
        delete: whether it goes.
        reason: why (or why not), in a few words.
    """

    tag: CacheTag
    delete: bool
    reason: str


def _same_branch(tag: str, branch_tag: str) -> bool:
    """``tag`` is ``branch_tag`` itself or the same branch under some key (``arm64-main``)."""
    return tag == branch_tag or tag.endswith(f"-{branch_tag}")


def choose(tags: Sequence[CacheTag], *, named: Iterable[str] = (), older_than: timedelta | None = None,
           live_branch_tags: set[str] | None = None, keep: Iterable[str] = (), now: datetime | None = None,
           default_tag: str | None = None) -> list[Pruning]:
    """Decide, for each cache tag, whether prune deletes it. Pure.

    The default branch's tags (under every key) and ``keep`` are never deleted unless ``named``; a tag that
    shares its manifest with a tag that stays is kept too, because registries delete manifests, not tags.
    A tag counts as its branch's under any key, so pruning one key's tags never takes another's live ones.
    """
    now = now or datetime.now(UTC)
    named, keep = set(named), set(keep)
    decisions: dict[str, Pruning] = {}
    for t in tags:
        if t.format is None:
            decisions[t.tag] = Pruning(t, False, "not a cache")
        elif t.tag in named:
            decisions[t.tag] = Pruning(t, True, "named")
        elif t.role == "default branch" or (default_tag and _same_branch(t.tag, default_tag)) or t.tag in keep:
            decisions[t.tag] = Pruning(t, False, "kept" if t.tag in keep else "default branch (name it to delete)")
        elif older_than is not None and t.updated is not None and now - t.updated > older_than:
            decisions[t.tag] = Pruning(t, True, f"not updated for {(now - t.updated).days} days")
        elif live_branch_tags is not None and not any(_same_branch(t.tag, b) for b in live_branch_tags):
            decisions[t.tag] = Pruning(t, True, "its branch is gone")
        else:
            decisions[t.tag] = Pruning(t, False, "recent" if older_than is not None else "branch exists")
    staying = {p.tag.digest for p in decisions.values() if not p.delete}
    return [attrs.evolve(p, delete=False, reason="shares its manifest with a tag that stays")
            if p.delete and p.tag.digest in staying else p for p in decisions.values()]


def remote_branches(cwd: Path, remote: str = "origin") -> list[str]:
    """Branch names on ``remote`` (``git ls-remote --heads``)."""
    import subprocess

    try:
        out = subprocess.run(["git", "ls-remote", "--heads", remote], cwd=cwd, capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"--branches-gone: could not run git ls-remote: {exc}") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["failed"])[-1]
        raise ConfigError(f"--branches-gone: git ls-remote --heads {remote}: {last}")
    return [line.split("refs/heads/", 1)[1] for line in out.stdout.splitlines() if "refs/heads/" in line]


# --- doctor ----------------------------------------------------------------------------------------------------


def registry_checks(side: Side, environ: Mapping[str, str]) -> list[Check]:
    """Reachable, credentials, and a round trip of a tiny cache in the format the backend exports."""
    where = f"{side.ref.host}/{side.ref.repository}"
    with registry_for(side) as reg:
        try:
            reg.ping()
        except RegistryError as exc:
            if exc.status in (401, 403):
                who = f"as {side.credentials.username}" if side.credentials else "without credentials"
                return [Check("registry", True, f"{side.ref.host} answers"),
                        Check("credentials", False, f"{side.ref.host} refuses {who}: {exc}",
                              "check the variables the backend's username-env/password-env name, or docker login")]
            return [Check("registry", False, f"{side.ref.host} does not answer: {exc}",
                          "check the host and port, the network, and TLS (the backend's insecure option)")]
        checks = [Check("registry", True, f"{side.ref.host} answers"),
                  Check("credentials", True, f"accepted ({side.credentials.username})" if side.credentials
                        else "none needed to read")]
        checks.append(_format_round_trip(reg, side, where))
    return checks


def synthetic_cache(image_manifest: bool, oci: bool = True) -> tuple[list[tuple[Descriptor, bytes]], Manifest]:
    """A tiny cache in one of BuildKit's two formats: its blobs and its manifest."""
    import gzip

    layer = gzip.compress(b"\0" * 1024, mtime=0)  # an empty tar archive
    config = json.dumps({"layers": [{"blob": sha256_digest(layer), "parent": -1}],
                         "records": [{"digest": "sha256:" + "0" * 64, "layers": [{"layer": 0}]}]}).encode()
    layer_d = Descriptor(OCI_LAYER, sha256_digest(layer), len(layer))
    config_d = Descriptor(CACHECONFIG, sha256_digest(config), len(config))
    blobs = [(layer_d, layer), (config_d, config)]

    def desc(d: Descriptor) -> dict[str, Any]:
        return {"mediaType": d.media_type, "digest": d.digest, "size": d.size}

    if image_manifest:
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": desc(config_d), "layers": [desc(layer_d)]}
    else:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc(layer_d), desc(config_d)]}
    return blobs, Manifest.from_json(doc)


def _format_round_trip(reg: Registry, side: Side, where: str) -> Check:
    kind = "image-manifest" if side.image_manifest else "index"
    tag = "cacheport-doctor"  # one fixed scratch tag: a registry that can't delete keeps one, not one per run
    blobs, manifest = synthetic_cache(side.image_manifest, side.oci_mediatypes)
    try:
        for d, data in blobs:
            if reg.blob_size(side.ref.repository, d.digest) is None:
                reg.upload_blob(side.ref.repository, d.digest, d.size, [data])
        reg.put_manifest(side.ref.repository, tag, manifest)
        back = reg.get_manifest(side.ref.repository, tag)
    except RegistryError as exc:
        fix = ("use image-manifest=true and oci-mediatypes=true for this registry" if kind == "index"
               else "check that the credentials may push to this repository")
        return Check("format", False, f"{where} rejects a cache in the {kind} format: {exc}; a build with "
                     "ignore-error=true would store nothing and still pass", fix)
    cleaned = ""
    try:
        if not reg.delete_manifest(side.ref.repository, manifest.digest):
            cleaned = f" (the scratch tag {tag} was already gone)"
    except RegistryError as exc:
        cleaned = f"; note: the scratch tag {tag} stays, the registry would not delete it ({exc})"
    if back is None or back.digest != manifest.digest:
        return Check("format", False, f"{where} accepted a {kind} cache but did not return it as written",
                     "this registry changes cache manifests; try image-manifest=true")
    return Check("format", True, f"{where} accepts a cache in the {kind} format{cleaned}")


# --- local directories -----------------------------------------------------------------------------------------


def local_status(directory: Path) -> dict[str, Any]:
    """Size of a local cache directory, and the blobs no manifest refers to any more."""
    blobs_dir = directory / "blobs" / "sha256"
    files = {f"sha256:{p.name}": p.stat().st_size for p in blobs_dir.glob("*")} if blobs_dir.is_dir() else {}
    used: set[str] = set()
    todo = [d["digest"] for d in _json_file(directory / "index.json").get("manifests", [])]
    while todo:
        digest = todo.pop()
        if digest in used:
            continue
        used.add(digest)
        doc = _json_file(blobs_dir / digest.split(":", 1)[1])
        todo += [d["digest"] for d in (doc.get("manifests") or []) + (doc.get("layers") or [])]
        if isinstance(doc.get("config"), dict):
            todo.append(doc["config"]["digest"])
    stale = {d: s for d, s in files.items() if d not in used}
    return {"directory": str(directory), "exists": directory.is_dir(), "size": sum(files.values()),
            "blobs": len(files), "stale_blobs": len(stale), "stale_size": sum(stale.values())}


def _json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
