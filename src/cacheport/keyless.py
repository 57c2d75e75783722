"""Keyless signatures (``trust = "signed"`` with ``signing = "keyless"``), pure: the identity rule, the trusted
roots, the certificate chain an envelope carries, and the check that a Fulcio-issued certificate of an allowed
CI identity signed it.

No I/O beyond reading the trusted-root file named in the config (ops/fulcio.py gets tokens and certificates).
``cryptography`` is imported only to check a chain or a signature. ``docs/signed-caches.md#keyless`` is the design.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import itertools
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from cacheport.errors import ConfigError, SignatureError

#: Fulcio's certificate extensions (sigstore's OID arc 1.3.6.1.4.1.57264.1), the ones the identity rule reads.
OID_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"  # raw bytes; older certificates
OID_ISSUER = "1.3.6.1.4.1.57264.1.8"  # DER UTF8String
OID_SOURCE_REPOSITORY_URI = "1.3.6.1.4.1.57264.1.12"
OID_SOURCE_REPOSITORY_REF = "1.3.6.1.4.1.57264.1.14"
OID_CODE_SIGNING = "1.3.6.1.5.5.7.3.3"
#: The public sigstore instance's CA; certificates it issues still have to chain to ``trusted-root``.
PUBLIC_FULCIO = "https://fulcio.sigstore.dev"
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.DOTALL)
_TERMS = ("issuer", "repository", "refs")
_EXAMPLE = ('signer-identity = "issuer=https://gitlab.com repository=group/app '
            'refs=refs/heads/main,refs/tags/v*"')


@attrs.frozen
class Identity:
    """Whose certificates protected builds accept: a CI's OIDC issuer, one repository, and its protected refs.

    Attributes:
        issuer: the OIDC issuer exactly as Fulcio records it (``https://gitlab.com``,
            ``https://token.actions.githubusercontent.com``).
        repository: the project path (``group/app``, ``owner/repo``): the path of the certificate's source
            repository URI, compared without regard to case.
        refs: the git refs a signing job may run on, as globs (``refs/heads/main``, ``refs/tags/v*``); only
            protected ones belong here.
    """

    issuer: str
    repository: str
    refs: tuple[str, ...]

    def __str__(self) -> str:
        return f"issuer={self.issuer} repository={self.repository} refs={','.join(self.refs)}"


@attrs.frozen
class Keyless:
    """What ``signing = "keyless"`` asks of a job.

    Attributes:
        identity: the rule a signing certificate must meet.
        roots: the DER of the trusted root certificates (``trusted-root``).
        roots_from: where they were read from, for explain.
        fulcio_url: the CA protected pipelines get their certificate from.
        token_env: the variable holding the job's OIDC token (GitLab ``id_tokens``); GitHub's token is asked for
            when it is unset.
    """

    identity: Identity
    roots: tuple[bytes, ...] = attrs.field(repr=False)
    roots_from: str
    fulcio_url: str
    token_env: str


def parse_identity(text: str | None, where: str) -> Identity:
    """``issuer=URL repository=PATH refs=REF[,REF...]``; anything missing or extra is one line."""
    terms: dict[str, str] = {}
    for part in (text or "").split():
        name, eq, value = part.partition("=")
        if not eq or name not in _TERMS or not value or name in terms:
            raise ConfigError(f"{where}: {part!r} is not one of issuer=URL, repository=PATH, refs=REF,... "
                              f"(each once): {_EXAMPLE}")
        terms[name] = value
    missing = [t for t in _TERMS if t not in terms]
    if missing:
        raise ConfigError(f"{where}: signing = \"keyless\" needs signer-identity with {', '.join(missing)}: "
                          f"{_EXAMPLE}")
    issuer = terms["issuer"]
    if urlsplit(issuer).scheme not in ("https", "http") or not urlsplit(issuer).netloc:
        raise ConfigError(f"{where}: issuer={issuer!r} is not a URL (https://gitlab.com, "
                          "https://token.actions.githubusercontent.com)")
    refs = tuple(r for r in terms["refs"].split(",") if r)
    bad = [r for r in refs if not r.startswith("refs/")]
    if bad or not refs:
        raise ConfigError(f"{where}: refs={terms['refs']!r}: give full git refs, comma-separated "
                          "(refs/heads/main,refs/tags/v*)")
    return Identity(issuer.rstrip("/"), terms["repository"].strip("/"), refs)


def read_roots(path: str | None, where: str) -> tuple[bytes, ...]:
    """The DER of each certificate in a PEM file; a missing file or one without a certificate is one line."""
    if not path:
        raise ConfigError(f"{where}: signing = \"keyless\" needs trusted-root: a PEM file of the CA certificates "
                          "signing certificates must chain to (docs/signed-caches.md#keyless says where to get "
                          "sigstore's)")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: trusted-root = {path!r}: {exc.strerror or exc}") from None
    try:
        roots = tuple(base64.b64decode(b"".join(m.group(1).split()), validate=True) for m in _PEM.finditer(data))
    except (binascii.Error, ValueError):
        roots = ()
    if not roots:
        raise ConfigError(f"{where}: trusted-root = {path!r} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return roots


def material(chain: Sequence[bytes]) -> dict[str, Any]:
    """The envelope's ``verificationMaterial``: the certificate chain, leaf first, as sigstore bundles carry it."""
    return {"x509CertificateChain": {"certificates": [{"rawBytes": base64.b64encode(c).decode()} for c in chain]}}


def _chain_of(doc: Any) -> list[bytes]:
    try:
        certs = doc["verificationMaterial"]["x509CertificateChain"]["certificates"]
        chain = [base64.b64decode(str(c["rawBytes"]), validate=True) for c in certs]
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise SignatureError("not a keyless signature: no certificate chain in it") from None
    if not chain or len(chain) > 8:
        raise SignatureError("malformed signature: its certificate chain is empty or too long")
    return chain


def _utf8(value: bytes) -> str:
    """A DER UTF8String's text (Fulcio's newer extensions); anything else as raw UTF-8 (its older ones)."""
    if len(value) >= 2 and value[0] == 0x0C:
        size, start = value[1], 2
        if size & 0x80:
            count = size & 0x7F
            size, start = int.from_bytes(value[2:2 + count], "big"), 2 + count
        return value[start:start + size].decode("utf-8", errors="replace")
    return value.decode("utf-8", errors="replace")


def _extension(cert: Any, oid: str) -> str | None:
    from cryptography import x509

    try:
        found = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value
    except x509.ExtensionNotFound:
        return None
    return _utf8(found.value) if isinstance(found, x509.UnrecognizedExtension) else None


def facts(cert: Any) -> tuple[str, str, str]:
    """The issuer, source repository URI and ref a Fulcio certificate records ("" for one it lacks)."""
    issuer = _extension(cert, OID_ISSUER) or _extension(cert, OID_ISSUER_V1) or ""
    return (issuer, _extension(cert, OID_SOURCE_REPOSITORY_URI) or "",
            _extension(cert, OID_SOURCE_REPOSITORY_REF) or "")


def meets(identity: Identity, cert: Any) -> str:
    """The certificate's identity as one line when it meets the rule; otherwise SignatureError saying why."""
    issuer, repo_uri, ref = facts(cert)
    repository = urlsplit(repo_uri).path.strip("/")
    who = f"{repository or '(no repository)'}@{ref or '(no ref)'}"
    if issuer.rstrip("/") != identity.issuer:
        raise SignatureError(f"signed by a certificate from the issuer {issuer or '(none)'!r}, not "
                             f"{identity.issuer!r}")
    if repository.casefold() != identity.repository.casefold():
        raise SignatureError(f"signed by a job of {repository or '(no repository)'!r}, not {identity.repository!r}")
    if not any(fnmatch.fnmatchcase(ref, pattern) for pattern in identity.refs):
        raise SignatureError(f"signed by a job on {ref or '(no ref)'}, which signer-identity does not allow "
                             f"(refs={','.join(identity.refs)})")
    return who


def _check_chain(chain: Sequence[bytes], roots: Sequence[bytes], at: datetime) -> Any:
    """The leaf, when each certificate is issued by the next and the last by a trusted root, every one valid at
    ``at``, the issuers CAs and the leaf a code-signing certificate; otherwise SignatureError."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    try:
        certs = [x509.load_der_x509_certificate(c) for c in chain]
        anchors = [x509.load_der_x509_certificate(r) for r in roots]
    except ValueError:
        raise SignatureError("malformed signature: a certificate in its chain does not parse") from None
    if certs[-1] in anchors:  # the chain may end with the root itself
        certs = certs[:-1]
    if not certs:
        raise SignatureError("signed by a trusted root itself, not by a signing certificate")
    path = [*certs]
    for cert, issuer in itertools.pairwise(certs):
        _issued_by(cert, issuer)
    last = certs[-1]
    anchor = None
    for root in anchors:
        try:
            last.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            continue
        anchor = root
        break
    if anchor is None:
        raise SignatureError("signed by a certificate that does not chain to trusted-root")
    path.append(anchor)
    for cert in path:
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise SignatureError(f"signed at {at:%Y-%m-%d %H:%M:%S} UTC, outside the validity of its certificate "
                                 f"({cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} to "
                                 f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S})")
    for cert in path[1:]:
        if not _is_ca(cert):
            raise SignatureError("signed by a certificate whose issuer is not a CA")
    leaf = path[0]
    if _is_ca(leaf) or not _code_signing(leaf):
        raise SignatureError("signed by a certificate that is not a code-signing certificate")
    return leaf


def _issued_by(cert: Any, issuer: Any) -> None:
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        raise SignatureError("forged certificate chain: a certificate is not signed by the next one") from None


def _is_ca(cert: Any) -> bool:
    from cryptography import x509

    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _code_signing(cert: Any) -> bool:
    from cryptography import x509

    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return any(u.dotted_string == OID_CODE_SIGNING for u in usages)


def require_crypto() -> None:
    """SignatureError saying how to install ``cryptography`` when it is missing (it is the signing extra)."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        from cacheport.signing import INSTALL

        raise SignatureError(f"signing = \"keyless\" needs the cryptography package: {INSTALL}") from None


def verify(doc: Any, signatures: Sequence[Any], message: bytes, signed: datetime, keyless: Keyless) -> str:
    """Who signed: the identity line of the envelope's certificate, when its chain is trusted at ``signed``, it
    meets the identity rule and one of ``signatures`` verifies ``message`` with its key; else SignatureError."""
    require_crypto()
    leaf = _check_chain(_chain_of(doc), keyless.roots, signed)
    who = meets(keyless.identity, leaf)
    if not any(_verifies(leaf.public_key(), s.get("sig") if isinstance(s, dict) else None, message)
               for s in signatures):
        raise SignatureError("bad signature: it does not verify with its certificate's key")
    return who


def _verifies(public_key: Any, sig: Any, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        raw = base64.b64decode(str(sig), validate=True)
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(raw, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(raw, message)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, binascii.Error):
        return False
    return True
