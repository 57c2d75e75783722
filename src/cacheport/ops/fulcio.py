"""Keyless signing at the edge (``signing = "keyless"``): the job's OIDC token, an ephemeral key, and a
short-lived certificate for it from a Fulcio-compatible CA (its ``/api/v2/signingCert``). The checks are
:mod:`cacheport.keyless`'s; ``docs/signed-caches.md#keyless`` is the design.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from cacheport.errors import ConfigError, SignatureError
from cacheport.keyless import Keyless, material, require_crypto
from cacheport.signing import PAYLOAD_TYPE, Claim, pae

#: GitHub Actions hands a job that has ``permissions: id-token: write`` these two, to ask for a token with.
GITHUB_REQUEST_URL = "ACTIONS_ID_TOKEN_REQUEST_URL"
GITHUB_REQUEST_TOKEN = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
AUDIENCE = "sigstore"
_TIMEOUT = 30.0


def secret_names(keyless: Keyless) -> tuple[str, ...]:
    """The variables holding a token: masked in output, kept from the processes a build runs."""
    return (keyless.token_env, GITHUB_REQUEST_TOKEN)


def token_source(keyless: Keyless, environ: Mapping[str, str]) -> str:
    """Where this job's token will come from; a protected pipeline with none is an error (docs say why)."""
    if environ.get(keyless.token_env, "").strip():
        return f"${keyless.token_env}"
    if environ.get(GITHUB_REQUEST_URL) and environ.get(GITHUB_REQUEST_TOKEN):
        return "GitHub Actions' OIDC provider"
    raise ConfigError(f"trust = \"signed\", signing = \"keyless\": this protected pipeline exports, but has no OIDC "
                      f"token: ${keyless.token_env} (id-token-env) is not set (GitLab: declare it under the job's "
                      f"id_tokens: with aud: {AUDIENCE}; GitHub Actions: give the job permissions: id-token: write), "
                      "or the cache it writes will be refused by every protected build")


def _http(method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Any:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT) as answer:
            return json.loads(answer.read(1024 * 1024))
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", errors="replace").strip().splitlines()
        raise SignatureError(f"{url.split('?')[0]} answered {exc.code}"
                             + (f": {detail[0][:200]}" if detail else "")) from None
    except (OSError, ValueError) as exc:
        raise SignatureError(f"could not reach {url.split('?')[0]}: {exc}") from None


def oidc_token(keyless: Keyless, environ: Mapping[str, str]) -> str:
    """The job's OIDC token: the variable's, or one GitHub Actions issues now for the audience ``sigstore``."""
    text = environ.get(keyless.token_env, "").strip()
    if text:
        return text
    url, bearer = environ.get(GITHUB_REQUEST_URL, ""), environ.get(GITHUB_REQUEST_TOKEN, "")
    if not (url and bearer):
        token_source(keyless, environ)  # raises, saying what to give the job
    found = _http("GET", f"{url}{'&' if '?' in url else '?'}audience={AUDIENCE}", None,
                  {"Authorization": f"bearer {bearer}", "Accept": "application/json"})
    value = found.get("value") if isinstance(found, dict) else None
    if not isinstance(value, str) or not value:
        raise SignatureError("GitHub Actions' OIDC provider answered without a token")
    return value


def subject(token: str) -> str:
    """The token's ``sub`` claim, which Fulcio has the key prove it signed. Not verified here: Fulcio does."""
    try:
        body = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        sub = claims["sub"]
    except (IndexError, KeyError, TypeError, ValueError, binascii.Error):
        raise SignatureError("the OIDC token is not a JWT with a subject (sub)") from None
    if not isinstance(sub, str) or not sub:
        raise SignatureError("the OIDC token is not a JWT with a subject (sub)")
    return sub


class KeylessSigner:
    """A protected pipeline's signer under ``signing = "keyless"``: an ephemeral ECDSA P-256 key, kept in memory
    only, and the certificate Fulcio issues for it and the job's identity, asked for at the first signature."""

    def __init__(self, keyless: Keyless, environ: Mapping[str, str]) -> None:
        self.keyless = keyless
        self.environ = environ
        self.source = token_source(keyless, environ)
        require_crypto()
        from cryptography.hazmat.primitives.asymmetric import ec

        self._key = ec.generate_private_key(ec.SECP256R1())
        self._chain: list[bytes] = []
        # The build's exports and its history record are signed at the same time: one certificate for both.
        self._lock = threading.Lock()

    def chain(self, at: datetime | None = None) -> list[bytes]:
        """The certificate chain (DER, leaf first), from Fulcio on first use, and again when its leaf has
        expired by ``at`` (a long build between two signatures)."""
        from cryptography import x509

        with self._lock:
            if self._chain and at is not None and at > x509.load_der_x509_certificate(
                    self._chain[0]).not_valid_after_utc:
                self._chain = []
            if not self._chain:
                self._chain = self._certificate()
            return self._chain

    def _certificate(self) -> list[bytes]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        token = oidc_token(self.keyless, self.environ)
        proof = self._key.sign(subject(token).encode(), ec.ECDSA(hashes.SHA256()))
        public = self._key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        request = {"credentials": {"oidcIdentityToken": token},
                   "publicKeyRequest": {"publicKey": {"algorithm": "ECDSA", "content": public.decode()},
                                        "proofOfPossession": base64.b64encode(proof).decode()}}
        answer = _http("POST", f"{self.keyless.fulcio_url}/api/v2/signingCert", json.dumps(request).encode(),
                       {"Content-Type": "application/json", "Accept": "application/json"})
        try:
            signed = answer.get("signedCertificateEmbeddedSct") or answer["signedCertificateDetachedSct"]
            pems = signed["chain"]["certificates"]
            chain = [x509.load_pem_x509_certificate(p.encode()).public_bytes(serialization.Encoding.DER)
                     for p in pems]
        except (AttributeError, KeyError, TypeError, ValueError):
            raise SignatureError(f"{self.keyless.fulcio_url} answered without a certificate chain") from None
        if not chain:
            raise SignatureError(f"{self.keyless.fulcio_url} answered an empty certificate chain")
        return chain

    def envelope(self, claim: Claim) -> bytes:
        """The DSSE envelope of ``claim``, signed with the ephemeral key, with its certificate chain."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        chain = self.chain(claim.signed)
        leaf = x509.load_der_x509_certificate(chain[0])
        if claim.signed > leaf.not_valid_after_utc:
            raise SignatureError(f"{self.keyless.fulcio_url} issued a certificate that has already expired "
                                 f"({leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC); is this job's clock right?")
        # The stamp is what the certificate's validity is checked at: a clock a little behind the CA's is
        # stamped with the certificate's first second.
        body = attrs.evolve(claim, signed=max(claim.signed, leaf.not_valid_before_utc)).payload()
        signature = self._key.sign(pae(PAYLOAD_TYPE, body), ec.ECDSA(hashes.SHA256()))
        doc = {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(body).decode(),
               "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
               "verificationMaterial": material(chain)}
        return json.dumps(doc, separators=(",", ":")).encode()
