"""Signatures over caches (``trust = "signed"``): the policy a plan carries, the DSSE envelope, and the checks.

Pure: no I/O and no environment of its own (ops/signatures.py reads registries and the key's variable). The
``cryptography`` package is imported only to make or check a signature, so ``cacheport args`` starts as fast
as before when signing is off. ``docs/signed-caches.md`` is the design.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from cacheport.errors import ConfigError, SignatureError
from cacheport.records import Plan, Setting

if TYPE_CHECKING:
    from cacheport.keyless import Keyless

PAYLOAD_TYPE = "application/vnd.cacheport.cache-signature.v1+json"
ENVELOPE_TYPE = "application/vnd.dsse.envelope.v1+json"
ARTIFACT_TYPE = "application/vnd.cacheport.cache-signature.v1"
#: The tag of a cache manifest's signature: ``sha256-<hex>`` and this (cosign's scheme, a suffix of our own).
SUFFIX = ".cacheport-sig"
#: An envelope is a few hundred bytes; anything much bigger is not one.
MAX_ENVELOPE = 64 * 1024
# DER of an Ed25519 SubjectPublicKeyInfo, before the 32 bytes of the key (RFC 8410).
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
# DER of an Ed25519 PKCS#8 private key, before its 32 bytes (RFC 8410): what must never be echoed.
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})\Z")
_SIGNATURE_TAG = re.compile(r"sha256-[0-9a-f]{64}" + re.escape(SUFFIX) + r"\Z")
INSTALL = "install the signing extra: python3 -m pip install 'cacheport[signing]'"


@attrs.frozen
class Signer:
    """A public key whose signatures protected builds accept.

    Attributes:
        key_id: the first 16 hex digits of the SHA-256 of its DER form; an envelope's ``keyid``.
        der: its DER SubjectPublicKeyInfo.
    """

    key_id: str
    der: bytes = attrs.field(repr=False)


@attrs.frozen
class Policy:
    """What ``trust = "signed"`` asks of one job.

    Attributes:
        signers: the keys whose signatures are accepted.
        key_env: the variable holding the private key protected pipelines sign with.
        max_age: how long a signature stays good for; None for no bound.
        project: the project signatures are made for and checked against.
        protected: this job is a protected pipeline: it verifies what it imports and signs what it exports.
        keyless: under ``signing = "keyless"``, the identity rule and trusted roots that replace ``signers``, and
            where a protected pipeline gets its certificate; None for a key pair.
    """

    signers: tuple[Signer, ...]
    key_env: str
    max_age: timedelta | None
    project: str
    protected: bool
    keyless: Keyless | None = None


@attrs.frozen
class Claim:
    """What a signature says: this digest is the cache called ``name`` in ``project``, signed at ``signed``.

    Attributes:
        digest: the cache manifest's digest.
        name: the cache's name where it was signed (its tag).
        project: the project whose protected pipeline signed it.
        signed: when.
        key_id: the key that signed it (filled in by :func:`check`).
    """

    digest: str
    name: str
    project: str
    signed: datetime
    key_id: str = ""

    def payload(self) -> bytes:
        stamp = self.signed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        doc = {"digest": self.digest, "name": self.name, "project": self.project, "signed": stamp}
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def key_id(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()[:16]


def parse_signers(text: str | None, where: str = "signers") -> tuple[Signer, ...]:
    """``signers``: comma-separated base64 DER Ed25519 public keys, checked without loading ``cryptography``."""
    out: list[Signer] = []
    for part in (text or "").split(","):
        part = "".join(part.split())
        if not part:
            continue
        try:
            der = base64.b64decode(part, validate=True)
        except (binascii.Error, ValueError):
            der = b""
        if der.startswith(_PKCS8_PREFIX) or "PRIVATE" in part:  # never shown, not even its start
            raise ConfigError(f"{where}: a private key was given; signers takes the public keys (openssl pkey -pubout "
                              "-outform DER | base64 -w0, or cacheport verify --public-key). Keep the private key "
                              "in the protected CI/CD variable only, and make a new one if this one was shared")
        if len(der) != len(_SPKI_PREFIX) + 32 or not der.startswith(_SPKI_PREFIX):
            raise ConfigError(f"{where}: {part[:24]!r}... is not an Ed25519 public key: give the base64 of its DER "
                              "form (openssl pkey -pubout -outform DER | base64 -w0, which starts with "
                              "MCowBQYDK2VwAyEA)")
        out.append(Signer(key_id(der), der))
    return tuple(out)


def policy_from(settings: dict[str, Setting], project: str, protected: bool) -> Policy:
    """The policy from the global settings; ``trust = "signed"`` without a signer is an error (without an
    identity rule and trusted roots, under ``signing = "keyless"``)."""
    signers_ = settings["signers"]
    signers = parse_signers(signers_.value, signers_.source.detail or "signers")
    keyless = keyless_from(settings)
    if not signers and keyless is None:
        raise ConfigError(f"{settings['trust'].source.detail}: trust = \"signed\" needs signers: the public keys "
                          "whose signatures protected builds accept (signers = \"MCowBQYDK2VwAyEA...\")")
    days = settings["signed-max-age"].value
    if days is not None and int(days) < 0:
        raise ConfigError(f"{settings['signed-max-age'].source.detail}: signed-max-age = {days}: a number of days, "
                          "0 or more (0: no bound)")
    key_env = key_env_of(settings["signing-key-env"])
    return Policy(signers, key_env, timedelta(days=int(days)) if days else None, project, protected, keyless)


def key_env_of(setting: Setting) -> str:
    """``signing-key-env``'s value, checked: the name of a variable, never the key itself (then not shown)."""
    key_env = str(setting.value or "")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_env) or looks_like_a_key(key_env):
        # Not shown: what is given here by mistake is most often the key itself.
        raise ConfigError(f"{setting.source.detail or 'signing-key-env'}: signing-key-env is not the name of a "
                          "variable (letters, digits and _): it names the variable holding the private key, never "
                          "the key itself")
    return key_env


def looks_like_a_key(name: str) -> bool:
    """Whether a would-be variable name is a key's base64 DER (a quarter of Ed25519 keys have no ``+`` or ``/``
    and pass for a name): a long run of base64 that decodes to an ASN.1 sequence."""
    if len(name) < 40:
        return False
    try:
        return base64.b64decode(name + "=" * (-len(name) % 4), validate=True)[:1] == b"\x30"
    except (binascii.Error, ValueError):
        return False


def keyless_from(settings: dict[str, Setting]) -> Keyless | None:
    """``signing = "keyless"``'s settings, checked; None under ``signing = "key"`` (the default)."""
    mode = settings.get("signing")
    if mode is None or mode.value in (None, "key"):
        return None
    from cacheport.keyless import PUBLIC_FULCIO, Keyless, parse_identity, read_roots

    def where(name: str) -> str:
        found = settings.get(name)
        return (found.source.detail if found is not None else "") or name

    def value(name: str, default: str = "") -> str:
        found = settings.get(name)
        return str(found.value) if found is not None and found.value is not None else default

    identity = parse_identity(value("signer-identity"), where("signer-identity"))
    roots = read_roots(value("trusted-root"), where("trusted-root"))
    fulcio = value("fulcio-url", PUBLIC_FULCIO).rstrip("/")
    found = re.fullmatch(r"(https?)://([^\s/]+)(/\S*)?", fulcio)
    if not found:
        raise ConfigError(f"{where('fulcio-url')}: fulcio-url = {fulcio!r} is not an http(s) URL "
                          f"(the default is {PUBLIC_FULCIO})")
    from cacheport.oci.reference import is_loopback

    if found.group(1) == "http" and not is_loopback(found.group(2)):  # the job's identity token goes there
        raise ConfigError(f"{where('fulcio-url')}: fulcio-url = {fulcio!r}: plain http is for a CA on this "
                          "machine only; the job's identity token would cross the network readable (use https)")
    token_env = value("id-token-env", "SIGSTORE_ID_TOKEN")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token_env):
        raise ConfigError(f"{where('id-token-env')}: id-token-env = {token_env!r} is not the name of a variable")
    return Keyless(identity, roots, value("trusted-root"), fulcio, token_env)


def policy(plan: Plan) -> Policy | None:
    """The plan's signing policy, or None when ``trust`` is not ``signed``."""
    trust = plan.context.trust
    if trust is None or not trust.signed:
        return None
    settings = {s.name: s.setting for s in plan.settings}
    return policy_from(settings, plan.context.project, trust.protected)


def signature_tag(digest: str) -> str:
    """The tag a cache manifest's signature is stored under."""
    found = _DIGEST.match(digest)
    if not found:
        raise SignatureError(f"{digest!r} is not a sha256 digest")
    return f"sha256-{found.group(1)}{SUFFIX}"


def is_signature_tag(name: str) -> bool:
    return bool(_SIGNATURE_TAG.match(name))


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is signed, so the type is signed with the payload."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        raise SignatureError(f"trust = \"signed\" needs the cryptography package: {INSTALL}") from None
    return serialization


def load_private_key(text: str, where: str) -> Any:
    """An Ed25519 private key from PKCS#8 PEM or the base64 of its DER; a wrong one is one line, never shown."""
    serialization = _crypto()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    text = text.strip()
    key: Any = None
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            key = serialization.load_der_private_key(base64.b64decode("".join(text.split()), validate=True),
                                                     password=None)
    except (ValueError, TypeError, binascii.Error):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"${where} is not an unencrypted Ed25519 private key: give PKCS#8, as PEM or the base64 of "
                          "its DER (openssl genpkey -algorithm ed25519 -outform DER | base64 -w0)")
    return key


def public_der(private_key: Any) -> bytes:
    serialization = _crypto()
    der: bytes = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def envelope(claim: Claim, private_key: Any) -> bytes:
    """The DSSE envelope of ``claim``, signed with ``private_key``."""
    body = claim.payload()
    signature = private_key.sign(pae(PAYLOAD_TYPE, body))
    doc = {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(body).decode(),
           "signatures": [{"keyid": key_id(public_der(private_key)), "sig": base64.b64encode(signature).decode()}]}
    return json.dumps(doc, separators=(",", ":")).encode()


def _field(doc: Any, name: str) -> Any:
    if not isinstance(doc, dict) or name not in doc:
        raise SignatureError(f"malformed signature: no {name!r}")
    return doc[name]


def check(data: bytes, digest: str, name: str, policy: Policy, now: datetime) -> Claim:
    """The claim of an envelope, when a signer of ``policy`` signed it for this digest, name and project within
    the policy's age; otherwise :class:`SignatureError`, whose one line says why."""
    try:
        doc = json.loads(data)
        if _field(doc, "payloadType") != PAYLOAD_TYPE:
            raise SignatureError(f"malformed signature: payload type {str(doc['payloadType'])[:80]!r}")
        body = base64.b64decode(str(_field(doc, "payload")), validate=True)
        signatures = _field(doc, "signatures")
        if not isinstance(signatures, list):
            raise SignatureError("malformed signature: 'signatures' is not a list")
    except (ValueError, binascii.Error):
        raise SignatureError("malformed signature: not a DSSE envelope") from None
    if policy.keyless is not None:
        from cacheport.keyless import verify

        claim = _claim(body, "")
        claim = attrs.evolve(claim, key_id=verify(doc, signatures, pae(PAYLOAD_TYPE, body), claim.signed,
                                                  policy.keyless))
        return _holds(claim, digest, name, policy, now)
    by_id = {s.key_id: s for s in policy.signers}
    seen: list[str] = []
    signer = None
    for each in signatures:
        kid = str(each.get("keyid", "")) if isinstance(each, dict) else ""
        seen.append(kid[:16])
        if kid in by_id and _verifies(by_id[kid], each.get("sig"), pae(PAYLOAD_TYPE, body)):
            signer = by_id[kid]
            break
    if signer is None:
        if any(k in by_id for k in seen):
            raise SignatureError("bad signature: it does not verify with the key it names")
        return_ids = ", ".join(k or "none" for k in seen) or "none"
        raise SignatureError(f"signed by an unknown key (key id {return_ids}; allowed: "
                             f"{', '.join(by_id)})")
    return _holds(_claim(body, signer.key_id), digest, name, policy, now)


def _holds(claim: Claim, digest: str, name: str, policy: Policy, now: datetime) -> Claim:
    """The claim, when it is for this digest, name and project, within the policy's age."""
    if claim.digest != digest:
        raise SignatureError(f"the signature is for {claim.digest}, not {digest}")
    if claim.name != name:
        raise SignatureError(f"signed as the cache {claim.name!r}, not {name!r}")
    if policy.project and claim.project != policy.project:
        raise SignatureError(f"signed for the project {claim.project!r}, not {policy.project!r}")
    if policy.max_age is not None and now - claim.signed > policy.max_age:
        raise SignatureError(f"signed {claim.signed:%Y-%m-%d}, older than signed-max-age "
                             f"({policy.max_age.days} days)")
    return claim


def _verifies(signer: Signer, sig: Any, message: bytes) -> bool:
    _crypto()
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        raw = base64.b64decode(str(sig), validate=True)
        load_der_public_key(signer.der).verify(raw, message)  # type: ignore[union-attr, call-arg]
    except (InvalidSignature, ValueError, TypeError, binascii.Error):
        return False
    return True


def _claim(body: bytes, kid: str) -> Claim:
    try:
        doc = json.loads(body)
        signed = datetime.strptime(str(_field(doc, "signed")), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return Claim(str(_field(doc, "digest")), str(_field(doc, "name")), str(doc.get("project", "")), signed, kid)
    except (ValueError, TypeError):
        raise SignatureError("malformed signature: its payload is not a cache signature") from None


def describe(signers: Sequence[Signer]) -> str:
    """The allowed keys, for explain."""
    return ", ".join(f"ed25519 {s.key_id}" for s in signers)
