"""``cacheport seed``: copy BuildKit caches from one registry-type backend to another, ahead of a switch.

Which refs come from the backends themselves (each is asked what it exports for a branch); the copying goes
through :mod:`cacheport.distribution`. Blobs first, the manifest last, so a target never references a missing
blob, and running it again resumes. An index-format cache becomes an image manifest when the target backend
exports ``image-manifest=true`` (Pulp accepts nothing else).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import click

from cacheport.backend import Backend, EntryRequest, Login
from cacheport.cli import plan_options
from cacheport.errors import CacheportError, ConversionError
from cacheport.render import human_size

if TYPE_CHECKING:
    from cacheport.distribution import Credentials, Descriptor, Manifest, Reference, Registry

CACHECONFIG = "application/vnd.buildkit.cacheconfig.v0"
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
# The same layer bytes under their OCI and Docker names, for a converted manifest's chosen media types.
_LAYER_TYPES = (
    ("application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip"),
    ("application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar"),
)


@attrs.frozen
class Side:
    """One end of a copy: where the cache is, how to reach it, and the format its backend writes.

    Attributes:
        backend: the backend's name.
        ref: the cache's image reference (host, repository, tag).
        insecure: plain HTTP (``registry.insecure=true`` in the backend's entry).
        image_manifest: the backend exports ``image-manifest=true``.
        oci_mediatypes: the backend does not export ``oci-mediatypes=false``.
        credentials: the login to use, or None (anonymous); never shown.
    """

    backend: str
    ref: Reference
    insecure: bool = False
    image_manifest: bool = False
    oci_mediatypes: bool = True
    credentials: Credentials | None = attrs.field(default=None, repr=False, eq=False)

    def with_tag(self, tag: str) -> Side:
        return attrs.evolve(self, ref=attrs.evolve(self.ref, tag=tag, digest=None))


@attrs.frozen
class Pair:
    """One cache to copy.

    Attributes:
        branch: the branch both refs belong to, or None (a tag no branch produces, copied by ``--all``).
        source: where it is read.
        target: where it is written.
    """

    branch: str | None
    source: Side
    target: Side

    @property
    def name(self) -> str:
        return self.branch if self.branch is not None else f"tag {self.source.ref.tag}"


@attrs.frozen
class Outcome:
    """What happened to one pair.

    Attributes:
        pair: the pair.
        status: ``copied``, ``up-to-date``, ``would-copy`` (dry run) or ``failed``.
        converted: the index was turned into an image manifest.
        uploaded: blobs sent (or that would be sent).
        mounted: blobs mounted from the source repository (or that would be tried).
        present: blobs the target already had.
        bytes_uploaded: bytes sent (or that would be sent).
        seconds: wall time.
        error: why it failed, in one line.
    """

    pair: Pair
    status: str
    converted: bool = False
    uploaded: int = 0
    mounted: int = 0
    present: int = 0
    bytes_uploaded: int = 0
    seconds: float = 0.0
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "branch": self.pair.branch,
            "source": str(self.pair.source.ref),
            "target": str(self.pair.target.ref),
            "status": self.status,
            "converted": self.converted,
            "blobs": {"uploaded": self.uploaded, "mounted": self.mounted, "present": self.present},
            "bytes_uploaded": self.bytes_uploaded,
            "seconds": round(self.seconds, 3),
            "error": self.error or None,
        }


# --- which refs ------------------------------------------------------------------------------------------------


def login_credentials(logins: Iterable[Login], host: str, environ: Mapping[str, str]) -> Credentials | None:
    """The first of a backend's logins for ``host`` whose password variable is set, as credentials."""
    from cacheport.distribution import Credentials

    for login in logins:
        if login.registry.lower() not in (host, "docker.io" if host == "registry-1.docker.io" else host):
            continue
        password = environ.get(login.password_env, "")
        user = (environ.get(login.username_env, "") if login.username_env else "") or login.username
        if password and user:
            return Credentials(user, password)
    return None


def export_side(backend: Backend, request: EntryRequest) -> Side:
    """Where ``backend`` exports the cache for the request's branch, and how to reach it."""
    from cacheport.distribution import docker_config_credentials, parse_reference

    if backend.cache_type != "registry":
        raise CacheportError(f"seed copies between registry-type backends; {backend.name!r} keeps its cache in "
                             f"{backend.cache_type!r} storage")
    result = backend.entries(request)
    exports = [e for e in result.exports if e.type == "registry" and e.get("ref")]
    if not exports:
        raise CacheportError(f"backend {backend.name!r} exports no registry cache for branch "
                             f"{request.context.branch!r}")
    entry = exports[0]
    ref = parse_reference(str(entry.get("ref")))
    credentials = (login_credentials(result.logins, ref.host, request.environ)
                   or docker_config_credentials(ref.host, request.environ))
    return Side(backend.name, ref, insecure=entry.get("registry.insecure") == "true",
                image_manifest=entry.get("image-manifest") == "true",
                oci_mediatypes=entry.get("oci-mediatypes") != "false", credentials=credentials)


def for_branch(backend: Backend, request: EntryRequest) -> Callable[[str], Side]:
    """``branch -> Side``: the backend's export for a push to that branch."""

    def side(branch: str) -> Side:
        context = attrs.evolve(request.context, branch=branch, target_branch=None, trusted=True)
        return export_side(backend, attrs.evolve(request, context=context))

    return side


def branch_pairs(old: Callable[[str], Side], new: Callable[[str], Side], branches: Sequence[str]) -> list[Pair]:
    """For each branch: what the old backend exports for it, copied to what the new one exports for it."""
    return _checked([Pair(b, old(b), new(b)) for b in dict.fromkeys(branches)])


def _fixed(side_for: Callable[[str], Side]) -> bool:
    # A ref with its own tag is one cache for every branch: two different branches give the same ref.
    return side_for("cacheport-probe-a").ref == side_for("cacheport-probe-b").ref


def tag_pairs(old: Callable[[str], Side], new: Callable[[str], Side], tags: Iterable[str]) -> list[Pair]:
    """``--all``: every tag in the old repository, matched to the branch that produces it.

    A tag is matched by asking the old backend for candidate branches (the tag itself, then the tag without
    each ``prefix-``, as a key prefix makes) until one gives exactly that tag; the target is then the new
    backend's ref for that branch. A tag no branch produces goes to the same tag in the new repository.
    """
    if _fixed(old):
        fixed = old("cacheport-probe-a")
        tags = [t for t in tags if t == fixed.ref.tag]
    probe_new = new("cacheport-probe-a")
    pairs = []
    for tag in tags:
        candidates = [tag] + [tag[i + 1:] for i, c in enumerate(tag) if c == "-" and tag[i + 1:]]
        for branch in candidates:
            side = old(branch)
            if side.ref.tag == tag and not side.ref.digest:
                pairs.append(Pair(branch, side, new(branch)))
                break
        else:
            source = old("cacheport-probe-a").with_tag(tag)
            pairs.append(Pair(None, source, probe_new if _fixed(new) else probe_new.with_tag(tag)))
    return _checked(pairs)


def _checked(pairs: list[Pair]) -> list[Pair]:
    seen: dict[Reference, Pair] = {}
    for pair in pairs:
        if pair.source.ref == pair.target.ref:
            raise CacheportError(f"{pair.name}: source and target are the same ref {pair.source.ref}; "
                                 "nothing to copy")
        if pair.target.ref in seen:
            raise CacheportError(f"{seen[pair.target.ref].name} and {pair.name} would both be copied to "
                                 f"{pair.target.ref}; seed them one at a time with --branch")
        seen[pair.target.ref] = pair
    return pairs


# --- format ----------------------------------------------------------------------------------------------------


def is_cache_index(manifest: Manifest) -> bool:
    """An index whose entries are BuildKit cache blobs (one is the cache config), not image manifests."""
    return manifest.is_index and any(d.media_type == CACHECONFIG for d in manifest.descriptors())


def to_image_manifest(index: Manifest, *, oci: bool = True) -> Manifest:
    """BuildKit's index-format cache as the image-manifest format: the cacheconfig entry becomes the config,
    the other entries the layers (in order, annotations kept), and the index's annotations the manifest's.

    This is what BuildKit itself writes with ``image-manifest=true``, and what Pulp accepts.
    """
    from cacheport.distribution import MANIFEST_TYPES, Manifest

    doc = index.json
    entries = [dict(e) for e in doc.get("manifests") or []]
    configs = [e for e in entries if e.get("mediaType") == CACHECONFIG]
    if not index.is_index or len(configs) != 1:
        raise ConversionError(f"{index.media_type or 'the manifest'} is not a BuildKit cache index (it needs "
                              f"exactly one {CACHECONFIG} entry); cannot convert it to an image manifest")
    nested = [e for e in entries if e.get("mediaType") in MANIFEST_TYPES]
    if nested:
        raise ConversionError(f"the cache index lists an image manifest ({nested[0].get('mediaType')}); "
                              "cannot convert it to an image manifest")
    layers = [{**e, "mediaType": _layer_type(str(e.get("mediaType", "")), oci)} for e in entries
              if e is not configs[0]]
    out: dict[str, Any] = {"schemaVersion": 2, "mediaType": _OCI_MANIFEST if oci else _DOCKER_MANIFEST,
                           "config": configs[0], "layers": layers}
    if doc.get("annotations"):
        out["annotations"] = doc["annotations"]
    return Manifest.from_json(out)


def _layer_type(media_type: str, oci: bool) -> str:
    for oci_name, docker_name in _LAYER_TYPES:
        if media_type in (oci_name, docker_name):
            return oci_name if oci else docker_name
    return media_type


# --- copying ---------------------------------------------------------------------------------------------------


class Reporter:
    """Where progress goes: a line per ref (the default), or a progress bar (:class:`BarReporter`)."""

    def start(self, pair: Pair, total: int) -> None:
        """A pair's copy begins; ``total`` bytes may have to be sent."""

    def advance(self, n: int) -> None:
        """``n`` more bytes went out."""

    def done(self, outcome: Outcome) -> None:
        """A pair is finished."""


class BarReporter(Reporter):
    """A rich progress bar on a terminal (stderr), one task per ref."""

    def __init__(self, progress: Any) -> None:
        self.progress, self.task = progress, None

    def start(self, pair: Pair, total: int) -> None:
        self.task = self.progress.add_task(pair.name, total=total or None)

    def advance(self, n: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)

    def done(self, outcome: Outcome) -> None:
        if self.task is not None:
            self.progress.update(self.task, total=max(outcome.bytes_uploaded, 1),
                                 completed=max(outcome.bytes_uploaded, 1))
        self.task = None


class Clients:
    """One registry client per (host, credentials, insecure), shared by every pair; closes them all."""

    def __init__(self, stack: ExitStack, factory: Callable[..., Registry] | None = None) -> None:
        self.stack, self.factory = stack, factory
        self.made: dict[tuple[Any, ...], Registry] = {}

    def __call__(self, side: Side) -> Registry:
        from cacheport.distribution import Registry

        creds = side.credentials
        key = (side.ref.host, side.insecure, creds.username if creds else None, creds.password if creds else None)
        if key not in self.made:
            make = self.factory or Registry
            self.made[key] = self.stack.enter_context(make(side.ref.host, creds, insecure=side.insecure))
        return self.made[key]

    def counters(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for client in self.made.values():
            for name, value in attrs.asdict(client.counters).items():
                total[name] = total.get(name, 0) + value
        return total


def copy_pair(pair: Pair, source: Registry, target: Registry, *, dry_run: bool = False,
              reporter: Reporter | None = None) -> Outcome:
    """Copy one cache: the blobs it needs that the target lacks, then its manifest (converted if needed).

    Never raises for the registries' sake: a failure is an Outcome with ``status="failed"`` and a reason.
    """
    reporter = reporter or Reporter()
    began = time.monotonic()
    src, dst = pair.source.ref, pair.target.ref
    try:
        manifest = source.get_manifest(src.repository, src.reference)
        if manifest is None:
            raise CacheportError(f"no cache at {src}")
        convert = pair.target.image_manifest and manifest.is_index
        out = to_image_manifest(manifest, oci=pair.target.oci_mediatypes) if convert else manifest
        if target.manifest_digest(dst.repository, dst.reference) == out.digest:
            outcome = Outcome(pair, "up-to-date", convert)
            reporter.done(outcome)
            return outcome
        blobs, children = _tree(source, src.repository, manifest)
        if dry_run:
            counts = {"uploaded": 0, "mounted": 0, "present": 0}
            size = 0
            for blob in blobs:
                if target.blob_size(dst.repository, blob.digest) is not None:
                    counts["present"] += 1
                elif source.host == target.host:
                    counts["mounted"] += 1
                else:
                    counts["uploaded"] += 1
                    size += blob.size
            outcome = Outcome(pair, "would-copy", convert, counts["uploaded"], counts["mounted"], counts["present"],
                              size, time.monotonic() - began)
            reporter.done(outcome)
            return outcome
        reporter.start(pair, sum(b.size for b in blobs))
        counts = {"uploaded": 0, "mounted": 0, "present": 0}
        size = 0
        for blob in blobs:
            how = target.copy_blob(source, src.repository, dst.repository, blob, progress=reporter.advance)
            counts[how] += 1
            size += blob.size if how == "uploaded" else 0
        for child in children:  # an image index's own manifests, before the index that names them
            target.put_manifest(dst.repository, child.digest, child)
        target.put_manifest(dst.repository, dst.reference, out)
        outcome = Outcome(pair, "copied", convert, counts["uploaded"], counts["mounted"], counts["present"], size,
                          time.monotonic() - began)
    except CacheportError as exc:
        outcome = Outcome(pair, "failed", seconds=time.monotonic() - began, error=str(exc))
    reporter.done(outcome)
    return outcome


def _tree(registry: Registry, repository: str, manifest: Manifest) -> tuple[list[Descriptor], list[Manifest]]:
    """The blobs a manifest needs, and (for an image index) its child manifests, children before parents."""
    from cacheport.distribution import MANIFEST_TYPES

    blobs: dict[str, Descriptor] = {}
    children: list[Manifest] = []
    for descriptor in manifest.descriptors():
        if descriptor.media_type in MANIFEST_TYPES:
            child = registry.get_manifest(repository, descriptor.digest)
            if child is None:
                raise CacheportError(f"{registry.host}/{repository}: {descriptor.digest} is missing")
            sub_blobs, sub_children = _tree(registry, repository, child)
            blobs.update((b.digest, b) for b in sub_blobs)
            children += [*sub_children, child]
        else:
            blobs.setdefault(descriptor.digest, descriptor)
    return list(blobs.values()), children


def seed(pairs: Sequence[Pair], *, dry_run: bool = False, reporter: Reporter | None = None,
         factory: Callable[..., Registry] | None = None, on_done: Callable[[Outcome], None] | None = None,
         ) -> tuple[list[Outcome], dict[str, int]]:
    """Copy every pair, in order; returns the outcomes and the clients' summed counters.

    Each registry is checked first, so an outage is one error rather than one failure per ref.
    """
    outcomes = []
    with ExitStack() as stack:
        clients = Clients(stack, factory)
        for side in {s.ref.host: s for p in pairs for s in (p.source, p.target)}.values():
            clients(side).ping()
        for pair in pairs:
            outcome = copy_pair(pair, clients(pair.source), clients(pair.target), dry_run=dry_run,
                                reporter=reporter)
            outcomes.append(outcome)
            if on_done is not None:
                on_done(outcome)
        return outcomes, clients.counters()


# --- the command -----------------------------------------------------------------------------------------------


def describe(outcome: Outcome) -> str:
    """One line for a person."""
    pair = outcome.pair
    where = f"{pair.name}: {pair.source.ref} → {pair.target.ref}"
    if outcome.status == "failed":
        return f"✗ {where}: {outcome.error}"
    conversion = " (index converted to an image manifest)" if outcome.converted else ""
    if outcome.status == "up-to-date":
        return f"= {where}: up to date{conversion}"
    verb = {"copied": ("uploaded", "mounted", "already there"),
            "would-copy": ("to upload", "to mount", "already there")}[outcome.status]
    parts = [f"{outcome.uploaded} blob(s) {verb[0]} ({human_size(outcome.bytes_uploaded)})"]
    if outcome.mounted:
        parts.append(f"{outcome.mounted} {verb[1]}")
    if outcome.present:
        parts.append(f"{outcome.present} {verb[2]}")
    mark = "✓" if outcome.status == "copied" else "~"
    tail = f" in {outcome.seconds:.1f}s" if outcome.status == "copied" else ", nothing written (dry run)"
    return f"{mark} {where}: {', '.join(parts)}{conversion}{tail}"


@contextmanager
def _reporter(enabled: bool) -> Iterator[Reporter]:
    if not enabled:
        yield Reporter()
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    # Lines printed meanwhile go above the bar when stdout is the same terminal, and straight out otherwise.
    with Progress(*columns, console=Console(stderr=True), transient=True,
                  redirect_stdout=sys.stdout.isatty()) as progress:
        yield BarReporter(progress)


@click.command("seed", epilog="""\b
Examples:
  cacheport seed --from gitlab --to pulp --branch main --branch develop
  cacheport seed --all --dry-run                  # from [migration] from to the configured backend
  cacheport seed --from gitlab --to registry --set registry.ref=harbor.example.com/app/cache --all
""")
@click.option("--from", "from_", metavar="OLD", help="The backend to copy from (default: [migration] from).")
@click.option("--to", metavar="NEW", help="The backend to copy to (default: the configured backend).")
@click.option("--branch", "branches", multiple=True, metavar="BRANCH", help="A branch whose cache to copy "
              "(repeatable).")
@click.option("--all", "all_tags", is_flag=True, help="Every cache tag in the old backend's repository.")
@click.option("--dry-run", is_flag=True, help="Show what would be copied; write nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@plan_options
def seed_command(from_: str | None, to: str | None, branches: tuple[str, ...], all_tags: bool, dry_run: bool,
                 fmt: str, backend: str | None, key: str | None, sets: list[tuple[str, str]],
                 read_only: bool | None, config_path: Path | None, verbose: int) -> None:
    """Copy cache from one registry-type backend to another, so the first build after a switch is warm.

    For each branch, what the old backend exports for it is copied to what the new one exports for it:
    blobs the target lacks (mounted on the same registry, streamed otherwise), then the manifest, converted
    to an image manifest when the new backend exports image-manifest=true (as Pulp needs). Running it again
    copies only what is missing. Exit status 0 when every ref was copied, 1 when one failed.
    """
    import json

    from cacheport.cli import _plugins, _warn
    from cacheport.config import default_cache_home, load_config, resolve_backend, resolve_globals, resolve_migration
    from cacheport.context import detect_context
    from cacheport.plan import select_backend

    if to and backend and to.lower() != backend.lower():
        raise CacheportError(f"--to {to} and --backend {backend} disagree; give one")
    if read_only:
        raise CacheportError("seed writes to the new backend; --read-only contradicts it (try --dry-run)")
    if bool(branches) == all_tags:
        raise CacheportError("say what to copy: --branch BRANCH (repeatable) or --all")
    cli_values: list[tuple[str, Any, str]] = [(n, v, f"--set {n}=") for n, v in sets]
    if to or backend:
        cli_values.append(("backend", to or backend, "--to"))
    if key is not None:
        cli_values.append(("key", key, "--key"))
    plugins = _plugins(verbose)
    cwd = Path.cwd()
    config = load_config(cwd, os.environ, config_path=config_path, cli=cli_values)
    context = detect_context(plugins.context_providers(), os.environ, cwd)
    if not context.trusted and not dry_run:
        raise CacheportError("not seeding from an untrusted job (a merge/pull request from a fork)")
    new, _chosen, warnings = select_backend(config, context, plugins)
    for warning in warnings:
        _warn(warning)
    old_name = from_ or resolve_migration(config)["from"].value
    if not old_name:
        raise CacheportError("no backend to copy from: give --from OLD, or set [migration] from = \"OLD\"")
    old = plugins.backend(str(old_name))
    if old.name == new.name:
        raise CacheportError(f"--from and --to both name {new.name!r}; nothing to copy")
    request = EntryRequest(
        {n: s.value for n, s in resolve_backend(config, new, selected=True).items()}, context,
        resolve_globals(config)["key"].value, str(default_cache_home(config.environ) / "cacheport"), config.environ)
    old_request = attrs.evolve(request, options={n: s.value for n, s in
                                                 resolve_backend(config, old, selected=False).items()})
    old_side, new_side = for_branch(old, old_request), for_branch(new, request)
    if all_tags:
        from cacheport.distribution import Registry

        probe = old_side("cacheport-probe-a")
        with Registry(probe.ref.host, probe.credentials, insecure=probe.insecure) as registry:
            tags = registry.list_tags(probe.ref.repository)
        pairs = tag_pairs(old_side, new_side, sorted(tags))
        if not pairs:
            click.echo(f"no cache tags in {probe.ref.host}/{probe.ref.repository}", err=True)
    else:
        pairs = branch_pairs(old_side, new_side, branches)

    began = time.monotonic()
    text = fmt == "text"
    with _reporter(sys.stderr.isatty()) as reporter:
        outcomes, counters = seed(pairs, dry_run=dry_run, reporter=reporter,
                                  on_done=(lambda o: click.echo(describe(o))) if text else None)
    seconds = time.monotonic() - began
    failed = [o for o in outcomes if o.status == "failed"]
    total = {
        "from": old.name, "to": new.name, "dry_run": dry_run,
        "refs": [o.as_dict() for o in outcomes],
        **{s.replace("-", "_"): sum(o.status == s for o in outcomes) for s in
           ("copied", "up-to-date", "would-copy", "failed")},
        "bytes_uploaded": counters.get("bytes_uploaded", 0),
        "blobs_uploaded": counters.get("blobs_uploaded", 0),
        "blobs_mounted": counters.get("blobs_mounted", 0),
        "blobs_present": counters.get("blobs_present", 0),
        "seconds": round(seconds, 3),
    }
    if not text:
        click.echo(json.dumps(total, indent=2))
    elif dry_run:
        click.echo(f"dry run: {len(outcomes) - len(failed)} ref(s) checked, nothing written")
    else:
        click.echo(f"seeded {old.name} → {new.name}: {total['copied']} copied, {total['up_to_date']} up to date, "
                   f"{len(failed)} failed; {human_size(total['bytes_uploaded'])} uploaded, "
                   f"{total['blobs_mounted']} blob(s) mounted, in {seconds:.1f}s")
    if failed:
        names = ", ".join(o.pair.name for o in failed)
        click.echo(f"cacheport: error: {len(failed)} of {len(outcomes)} ref(s) failed: {names}", err=True)
        sys.exit(1)
