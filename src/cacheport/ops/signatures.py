"""Signed caches at the edge (``trust = "signed"``): verifying and pinning a protected build's imports, signing
what it exported, and storing signatures beside the caches. The envelope and the checks are
:mod:`cacheport.signing`'s; this module reads registries and the private key's variable.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import attrs

from cacheport.entry import CacheEntry
from cacheport.errors import CacheportError, ConfigError, RegistryError, SignatureError
from cacheport.records import CacheStore, Login, Manifest, Plan, StoreSession
from cacheport.signing import (
    ARTIFACT_TYPE,
    ENVELOPE_TYPE,
    MAX_ENVELOPE,
    Claim,
    Policy,
    check,
    envelope,
    load_private_key,
    policy,
    signature_tag,
)

if TYPE_CHECKING:
    from cacheport.oci.reference import Reference
    from cacheport.oci.registry import Registry
    from cacheport.report import ExportReport



@attrs.frozen
class Verdict:
    """What the check of one import found.

    Attributes:
        entry: the plan's import.
        ok: it may be imported: signed by an allowed key for its current digest.
        reason: one line: why not, or what was verified.
        digest: the digest its tag pointed at, when there was one.
        claim: what the signature says, when it verified.
    """

    entry: CacheEntry
    ok: bool
    reason: str
    digest: str = ""
    claim: Claim | None = None

    @property
    def missing(self) -> bool:
        """No cache there at all: news for the report, not a refusal."""
        return not self.ok and not self.digest and self.claim is None and self.reason == NO_CACHE

    @property
    def pinned(self) -> CacheEntry:
        """The import by digest, so a tag moved after the check changes nothing."""
        name = str(self.entry.get("ref")).partition("@")[0]
        head, _, last = name.rpartition("/")
        return self.entry.with_attrs(ref=f"{head}/{last.partition(':')[0]}@{self.digest}")


NO_CACHE = "no cache there yet"


def _registry(ref: Reference, entry: CacheEntry, logins: Sequence[Login], environ: Mapping[str, str]) -> Registry:
    from cacheport.kit import login_credentials
    from cacheport.oci.credentials import docker_credentials
    from cacheport.oci.realm import insecure_hosts
    from cacheport.oci.registry import Registry

    credentials = login_credentials(logins, ref.host, environ) or docker_credentials(ref.host, environ)
    insecure = entry.get("registry.insecure") == "true"
    return Registry(ref.host, credentials, insecure=insecure, insecure_hosts=insecure_hosts(environ), timeout=30.0)


class Registries:
    """One registry client per host (and ``registry.insecure``) for a build's signature checks or signatures,
    closed together: each new client pays its own connection and authentication round trips again (a bearer
    token, or Pulp's Basic challenge), per import checked. Safe to share between threads."""

    def __init__(self, logins: Sequence[Login], environ: Mapping[str, str]) -> None:
        import threading

        self.logins, self.environ = logins, environ
        self._open: dict[tuple[str, bool], Registry] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Registries:
        return self

    def __exit__(self, *exc: object) -> None:
        for registry in self._open.values():
            registry.close()
        self._open = {}

    def client(self, ref: Reference, entry: CacheEntry) -> Registry:
        """The client for ``ref``'s host, made on first use."""
        key = (ref.host, entry.get("registry.insecure") == "true")
        with self._lock:
            if key not in self._open:
                self._open[key] = _registry(ref, entry, self.logins, self.environ)
            return self._open[key]


def _reference(entry: CacheEntry) -> Reference:
    from cacheport.oci.reference import parse_reference

    if entry.type != "registry" or not entry.get("ref"):
        raise SignatureError(f"a {entry.type} cache can't carry a signature; only registry caches can be verified")
    ref = parse_reference(str(entry.get("ref")))
    return attrs.evolve(ref, tag=ref.tag or (None if ref.digest else "latest"))


def verify_entry(entry: CacheEntry, policy: Policy, logins: Sequence[Login], environ: Mapping[str, str],
                 now: datetime | None = None, registries: Registries | None = None) -> Verdict:
    """Resolve an import's tag to its digest and check that digest's signature (through ``registries``'s
    clients when given, else a client of its own)."""
    now = now or datetime.now(UTC)
    digest = ""
    try:
        ref = _reference(entry)
        with contextlib.ExitStack() as stack:
            if registries is None:
                registries = stack.enter_context(Registries(logins, environ))
            registry = registries.client(ref, entry)
            digest = ref.digest or registry.manifest_digest(ref.repository, str(ref.tag)) or ""
            if not digest:
                return Verdict(entry, False, NO_CACHE)
            data = read_signature(registry, ref.repository, digest)
        claim = check(data, digest, ref.tag or "", policy, now)
    except SignatureError as exc:
        return Verdict(entry, False, str(exc), digest)
    except RegistryError as exc:  # a cache outage never fails a build: it builds without this import
        return Verdict(entry, False, f"could not check its signature: {exc}", digest)
    return Verdict(entry, True, _signed_by(claim, policy), digest, claim)


def _signed_by(claim: Claim, policy: Policy) -> str:
    who = claim.key_id if policy.keyless is not None else f"key {claim.key_id}"
    return f"signed by {who} on {claim.signed:%Y-%m-%d %H:%M} UTC"


#: The type of a :class:`Verdict`'s entry for what a backend's store holds beside its caches (``<name>.mounts``).
MOUNTS = "mounts"


def verify_stored(store: CacheStore, names: Sequence[str], policy: Policy, now: datetime | None = None,
                  ) -> list[Verdict]:
    """The signature of what each of ``names`` holds in ``store`` (cache mounts, ``<name>.mounts``), checked as a
    protected job's restore checks it: the signed name is the name itself. One verdict per name that holds
    something, its entry of type :data:`MOUNTS`; a name that holds nothing is left out (most builds have no cache
    mounts), and a store that can't be read gives one verdict per name saying so."""
    signing, when = StoreSigning(policy), now or datetime.now(UTC)

    def entry(name: str) -> CacheEntry:
        return CacheEntry(MOUNTS, {"ref": f"{store.location}:{name}"})

    def verdict(session: StoreSession, name: str) -> Verdict | None:
        digest = ""
        try:
            digest = session.manifest_digest(name) or ""
            if not digest:
                return None
            claim = signing.check(session, name, digest, when)
        except SignatureError as exc:
            return Verdict(entry(name), False, str(exc), digest)
        except CacheportError as exc:
            return Verdict(entry(name), False, f"could not check its signature: {exc}", digest)
        return Verdict(entry(name), True, _signed_by(claim, policy), digest, claim)

    try:
        with store.open() as session:
            return [v for v in (verdict(session, n) for n in names) if v is not None]
    except CacheportError as exc:  # the store could not be reached at all
        return [Verdict(entry(n), False, f"could not check its signature: {exc}") for n in names]


def read_signature(registry: Registry, repository: str, digest: str) -> bytes:
    """The envelope stored for ``digest``, checked against its own digest; SignatureError when there is none."""
    from cacheport.oci.repository import RegistryRepository

    return read_stored(RegistryRepository(registry, repository), digest)


def read_stored(session: StoreSession, digest: str) -> bytes:
    """:func:`read_signature` in any store session (a registry repository, an OCI layout directory)."""
    manifest = session.get_manifest(signature_tag(digest))
    if manifest is None:
        raise SignatureError("not signed")
    layers = [d for d in manifest.descriptors() if d.media_type == ENVELOPE_TYPE]
    if not layers or layers[0].size > MAX_ENVELOPE:
        raise SignatureError("malformed signature: no envelope in its manifest")
    data = b""
    with session.open_blob(layers[0].digest) as chunks:
        for chunk in chunks:
            data += chunk
            if len(data) > MAX_ENVELOPE:
                raise SignatureError("malformed signature: its envelope is too big")
    if "sha256:" + hashlib.sha256(data).hexdigest() != layers[0].digest:
        raise SignatureError("malformed signature: its envelope does not match its digest")
    return data


def pin(plan: Plan, environ: Mapping[str, str], now: datetime | None = None) -> tuple[Plan, list[Verdict]]:
    """A protected build's plan under ``trust = "signed"`` with every import checked: the verified ones by
    digest, the rest left out (with their verdicts). Any other plan as it is."""
    found = policy(plan)
    if found is None or not found.protected:
        return plan, []
    from cacheport.ops.inventory import each

    with Registries(plan.logins, environ) as registries:  # the imports at once, one client per registry
        verdicts = each(lambda e: verify_entry(e, found, plan.logins, environ, now, registries), plan.imports)
    return attrs.evolve(plan, imports=tuple(v.pinned for v in verdicts if v.ok)), verdicts


def pin_in_background(plan: Plan, environ: Mapping[str, str]) -> Callable[[], tuple[Plan, list[Verdict]]]:
    """:func:`pin`, started now on a thread so its imports and round trips overlap the build's logins and its
    look at the builder; call the result for its answer. No thread when there is nothing to verify."""
    found = policy(plan)
    if found is None or not found.protected:
        return lambda: (plan, [])
    import threading

    answer: list[tuple[Plan, list[Verdict]]] = []
    failed: list[BaseException] = []

    def work() -> None:
        try:
            answer.append(pin(plan, environ))
        except BaseException as exc:  # handed to the caller, which raises it where it waits
            failed.append(exc)

    thread = threading.Thread(target=work, name="cacheport-verify", daemon=True)
    thread.start()

    def result() -> tuple[Plan, list[Verdict]]:
        thread.join()
        if failed:
            raise failed[0]
        return answer[0]

    return result


def line(verdict: Verdict) -> str:
    """One line for a person about one import."""
    what = f"{verdict.entry.get('ref') or verdict.entry.type}" + (f" ({verdict.digest})" if verdict.digest else "")
    if verdict.ok:
        return f"verified {what}: {verdict.reason}; importing it by digest"
    if verdict.missing:
        return f"{what}: {NO_CACHE}"
    return f"refused {what}: {verdict.reason}; building without it"


def signing_key(plan: Plan, environ: Mapping[str, str]) -> object | None:
    """The private key a protected pipeline signs its exports with, or None when nothing is to be signed.

    A protected pipeline about to export without the key is an error (docs/signed-caches.md says why)."""
    found = policy(plan)
    if found is None or not found.protected or not any(e.type == "registry" for e in plan.exports):
        return None
    if found.keyless is not None:
        from cacheport.ops.fulcio import KeylessSigner

        return KeylessSigner(found.keyless, environ)
    text = environ.get(found.key_env, "")
    if not text.strip():
        raise ConfigError(f"trust = \"signed\": this protected pipeline exports, but ${found.key_env} "
                          "(signing-key-env) is not set: give the job the protected CI/CD variable holding the "
                          "private key, or the cache it writes will be refused by every protected build")
    key: object = load_private_key(text, found.key_env)
    return key


def key_values(plan: Plan, environ: Mapping[str, str]) -> list[str]:
    """The private key's text, for masking wherever a person reads output."""
    values = [environ.get(name, "").strip() for name in _secret_names(plan)]
    return [value for value in values if value]


def _secret_names(plan: Plan) -> tuple[str, ...]:
    """The variables holding the private key, or under ``signing = "keyless"`` the OIDC tokens."""
    found = policy(plan)
    if found is None:
        return ()
    if found.keyless is not None:
        from cacheport.ops.fulcio import secret_names

        return secret_names(found.keyless)
    return (found.key_env,)


def without_key(plan: Plan, environ: Mapping[str, str]) -> Mapping[str, str]:
    """The environment without the private key's variable (or the OIDC token's), for the processes a build runs
    (docker, buildx): none of them needs it."""
    names = _secret_names(plan)
    if not any(name in environ for name in names):
        return environ
    return {name: value for name, value in environ.items() if name not in names}


def signed_envelope(claim: Claim, key: object) -> bytes:
    """The envelope of ``claim`` signed with what :func:`signing_key` gave: a key pair's private key, or a keyless
    signer, which makes its own (its certificate in it)."""
    make = getattr(key, "envelope", None)
    return bytes(make(claim)) if callable(make) else envelope(claim, key)


def sign(plan: Plan, written: Sequence[tuple[CacheEntry, str]], key: object, environ: Mapping[str, str],
         now: datetime | None = None) -> list[str]:
    """Sign each ``(export, manifest digest)`` BuildKit reported writing, and store the signature beside it.

    Returns one line per export; a registry that refuses is a warning, never a failed build."""
    now = now or datetime.now(UTC)
    lines = []
    with Registries(plan.logins, environ) as registries:
        for entry, digest in written:
            try:
                ref = _reference(entry)
                claim = Claim(digest, ref.tag or "", plan.context.project, now)
                data = signed_envelope(claim, key)
                store(registries.client(ref, entry), ref.repository, digest, data)
            except CacheportError as exc:
                lines.append(f"warning: could not sign {entry.get('ref')} ({digest}): {exc}")
            else:
                lines.append(f"signed {entry.get('ref')} ({digest})")
    return lines


def sign_written(plan: Plan, exports: Sequence[ExportReport], key: object, environ: Mapping[str, str]) -> list[str]:
    """:func:`sign` each registry export the build report says was written, by the digest BuildKit reported;
    one line for an export it names no digest for (nothing is read back from the tag in its place)."""
    from cacheport import report

    written = [e for e in exports if e.status == report.WRITTEN and e.entry.type == "registry"]
    lines = [f"warning: not signed: BuildKit named no cache manifest for {e.entry.get('ref')}, so protected builds "
             "will not import it" for e in written if not e.digest]
    return lines + sign(plan, [(e.entry, e.digest) for e in written if e.digest], key, environ)


def store(registry: Registry, repository: str, digest: str, data: bytes) -> None:
    """Write an envelope as the signature of ``digest``: an OCI artifact tagged ``sha256-<hex>.cacheport-sig``."""
    from cacheport.oci.repository import RegistryRepository

    store_in(RegistryRepository(registry, repository), digest, data)


def store_in(session: StoreSession, digest: str, data: bytes, present: Collection[str] = ()) -> None:
    """:func:`store` in any store session; ``present``: blobs known to be there already."""
    from cacheport.oci.artifact import artifact

    blobs, manifest = artifact(ARTIFACT_TYPE, ENVELOPE_TYPE, data)
    for descriptor, blob in blobs:
        # An envelope names the time it was signed, so it is never there yet: not asked about.
        if descriptor.digest not in present and (
                descriptor.media_type == ENVELOPE_TYPE or session.blob_size(descriptor.digest) is None):
            session.put_blob(descriptor, [blob])
    session.put_manifest(signature_tag(digest), manifest)


def verified(session: StoreSession, name: str, signing: StoreSigning) -> Manifest | None:
    """The manifest ``name`` points at, read by the digest whose signature was checked for ``name``; None when
    nothing is there. :class:`SignatureError` (naming the digest) when the signature does not hold."""
    digest = session.manifest_digest(name)
    if not digest:
        return None
    try:
        signing.check(session, name, digest)
    except SignatureError as exc:
        raise SignatureError(f"{exc} ({digest})") from None
    manifest = session.get_manifest(digest)
    if manifest is None or manifest.digest != digest:
        raise RegistryError(f"{session.host}:{name}: the manifest {digest} it pointed at could not be read by "
                            "its digest")
    return manifest


@attrs.frozen
class StoreSigning:
    """A protected job's signatures on what it keeps in a backend's store rather than behind a buildx flag (cache
    mounts, ``<name>.mounts``): the same envelope, tag scheme and check as a layer cache's, the name it is stored
    under being the signed name.

    Attributes:
        policy: the plan's signing policy.
        key: the private key to sign with; None in a job that only reads (then :meth:`sign` says why not).
    """

    policy: Policy
    key: object | None = None

    def check(self, session: StoreSession, name: str, digest: str, now: datetime | None = None) -> Claim:
        """What the signature of ``digest`` says, when it is valid for ``name`` (:func:`check`, the same reasons
        as an import's); SignatureError when not."""
        return check(read_stored(session, digest), digest, name, self.policy, now or datetime.now(UTC))

    def sign(self, session: StoreSession, name: str, digest: str, now: datetime | None = None,
             present: Collection[str] = ()) -> None:
        """Sign ``digest``, the manifest this job itself wrote under ``name``, and store the signature beside it
        (``present``: blobs known to be there already)."""
        if self.key is None:
            raise SignatureError(f"this job has no key to sign with (${self.policy.key_env}, loaded only by a job "
                                 "that exports to a registry)")
        claim = Claim(digest, name, self.policy.project, now or datetime.now(UTC))
        store_in(session, digest, signed_envelope(claim, self.key), present)


def store_signing(plan: Plan, key: object | None = None) -> StoreSigning | None:
    """A protected pipeline's :class:`StoreSigning` under ``trust = "signed"``; None for any other job, which
    reads unverified and never writes a name protected builds read."""
    found = policy(plan)
    if found is None or not found.protected:
        return None
    return StoreSigning(found, key)
