"""A stand-in for sigstore's keyless signing on 127.0.0.1: an OIDC issuer (discovery, JWKS, ES256 JWTs made with
``cryptography``, and GitHub Actions' token endpoint) and a Fulcio-like CA (``/api/v2/signingCert``) that checks
the token and its proof of possession and issues a short-lived certificate with sigstore's OID extensions, the
way Fulcio maps GitLab's and GitHub's claims. The public Fulcio and Rekor are never reached from tests.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cacheport.keyless import OID_ISSUER, OID_SOURCE_REPOSITORY_REF, OID_SOURCE_REPOSITORY_URI

GITHUB_BEARER = "github-request-token-for-tests"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _utf8_der(text: str) -> bytes:
    raw = text.encode()
    size = bytes([len(raw)]) if len(raw) < 0x80 else bytes([0x82]) + len(raw).to_bytes(2, "big")
    return b"\x0c" + size + raw


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


class CA:
    """A root and an intermediate, as Fulcio has; ``pem`` is the root, for trusted-root."""

    def __init__(self, common: str = "sigstore") -> None:
        now = datetime.now(UTC)
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.root = self._ca(_name(common), self.root_key, _name(common), self.root_key, now)
        self.key = ec.generate_private_key(ec.SECP384R1())
        self.intermediate = self._ca(_name(f"{common}-intermediate"), self.key, _name(common), self.root_key, now)

    @staticmethod
    def _ca(subject: x509.Name, key: Any, issuer: x509.Name, signer: Any, now: datetime) -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                               critical=True)
                .sign(signer, hashes.SHA384()))

    @property
    def pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    def issue(self, public_key: Any, san: str, extensions: Mapping[str, str], *,
              not_before: datetime | None = None, lifetime: timedelta = timedelta(minutes=10)) -> x509.Certificate:
        """A code-signing leaf for ``public_key`` with Fulcio's extensions, issued by the intermediate."""
        start = (not_before or datetime.now(UTC)).replace(microsecond=0)
        builder = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(self.intermediate.subject)
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(start + lifetime)
                   .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
                   .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                  critical=True))
        for oid, value in extensions.items():
            builder = builder.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), _utf8_der(value)),
                                            critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def chain_pem(self, leaf: x509.Certificate) -> list[str]:
        return [c.public_bytes(serialization.Encoding.PEM).decode() for c in (leaf, self.intermediate, self.root)]


def fulcio_identity(issuer: str, claims: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The SAN and extensions Fulcio records for a GitLab or GitHub token's claims."""
    if "project_path" in claims:  # GitLab
        kind = "tags" if claims.get("ref_type") == "tag" else "heads"
        repo = f"{issuer}/{claims['project_path']}"
        ref = f"refs/{kind}/{claims['ref']}"
        san = str(claims.get("ci_config_ref_uri") or f"{repo}//.gitlab-ci.yml@{ref}")
    else:  # GitHub Actions
        repo = f"https://github.com/{claims['repository']}"
        ref = str(claims["ref"])
        san = f"https://github.com/{claims.get('job_workflow_ref', claims['repository'] + '/.github/workflows/ci.yml')}"
    return san, {OID_ISSUER: issuer, OID_SOURCE_REPOSITORY_URI: repo, OID_SOURCE_REPOSITORY_REF: ref}


class FakeSigstore:
    """The issuer and the CA on one loopback server. ``url`` is both the issuer and fulcio-url.

    ``lifetime`` and ``backdate`` shape the certificates it issues (an expired one: backdate past lifetime)."""

    def __init__(self) -> None:
        self.ca = CA()
        self.signing_key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.signing_key.public_key().public_numbers()
        self.jwks = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "test", "alg": "ES256", "use": "sig",
                               "x": _b64url(numbers.x.to_bytes(32, "big")),
                               "y": _b64url(numbers.y.to_bytes(32, "big"))}]}
        self.lifetime = timedelta(minutes=10)
        self.backdate = timedelta(0)
        self.requests: list[dict[str, Any]] = []
        #: The repository and ref of the job GitHub's token endpoint issues tokens for.
        self.github_job = ("owner/repo", "refs/heads/main")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSigstore:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def root_file(self, folder: Path) -> Path:
        path = folder / "sigstore-root.pem"
        path.write_bytes(self.ca.pem)
        return path

    # -- the OIDC issuer -----------------------------------------------------------------------------------------

    def token(self, audience: str = "sigstore", lifetime: int = 300, **claims: Any) -> str:
        """An ES256 JWT of this issuer."""
        now = int(time.time())
        body = {"iss": self.url, "aud": audience, "iat": now, "nbf": now, "exp": now + lifetime, **claims}
        head = _b64url(json.dumps({"alg": "ES256", "kid": "test", "typ": "JWT"}).encode())
        signing_input = f"{head}.{_b64url(json.dumps(body).encode())}"
        r, s = decode_dss_signature(self.signing_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def gitlab_token(self, project: str = "group/app", ref: str = "main", protected: bool = True,
                     ref_type: str = "branch") -> str:
        return self.token(sub=f"project_path:{project}:ref_type:{ref_type}:ref:{ref}", project_path=project,
                          namespace_path=project.rpartition("/")[0], ref=ref, ref_type=ref_type,
                          ref_protected=str(protected).lower())

    def github_token(self, repository: str = "owner/repo", ref: str = "refs/heads/main") -> str:
        return self.token(sub=f"repo:{repository}:ref:{ref}", repository=repository, ref=ref,
                          job_workflow_ref=f"{repository}/.github/workflows/ci.yml@{ref}")

    def claims(self, token: str) -> dict[str, Any]:
        """The token's claims when it is this issuer's, for sigstore, unexpired; ValueError otherwise."""
        head, body, sig = token.split(".")
        jwk = self.jwks["keys"][0]
        key = ec.EllipticCurvePublicNumbers(int.from_bytes(_unb64url(jwk["x"]), "big"),
                                            int.from_bytes(_unb64url(jwk["y"]), "big"), ec.SECP256R1()).public_key()
        raw = _unb64url(sig)
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            key.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise ValueError("the token's signature does not verify") from None
        claims: dict[str, Any] = json.loads(_unb64url(body))
        if claims.get("iss") != self.url or "sigstore" not in (claims.get("aud") if isinstance(claims.get("aud"),
                                                                                               list)
                                                                   else [claims.get("aud")]):
            raise ValueError("the token is not this issuer's, or not for sigstore")
        if claims.get("exp", 0) < time.time():
            raise ValueError("the token has expired")
        return claims

    # -- the CA --------------------------------------------------------------------------------------------------

    def signing_cert(self, request: dict[str, Any]) -> dict[str, Any]:
        token = request["credentials"]["oidcIdentityToken"]
        claims = self.claims(token)
        key_request = request["publicKeyRequest"]
        public_key = serialization.load_pem_public_key(key_request["publicKey"]["content"].encode())
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        try:
            public_key.verify(base64.b64decode(key_request["proofOfPossession"]), str(claims["sub"]).encode(),
                              ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise ValueError("the proof of possession does not verify") from None
        san, extensions = fulcio_identity(self.url, claims)
        leaf = self.ca.issue(public_key, san, extensions, not_before=datetime.now(UTC) - self.backdate,
                             lifetime=self.lifetime)
        return {"signedCertificateEmbeddedSct": {"chain": {"certificates": self.ca.chain_pem(leaf)}}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, doc: Any) -> None:
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path == "/.well-known/openid-configuration":
                    self._send(200, {"issuer": fake.url, "jwks_uri": f"{fake.url}/jwks"})
                elif path == "/jwks":
                    self._send(200, fake.jwks)
                elif path == "/github-token":  # ACTIONS_ID_TOKEN_REQUEST_URL
                    if self.headers.get("Authorization") != f"bearer {GITHUB_BEARER}":
                        self._send(401, {"message": "bad bearer"})
                        return
                    audience = dict(p.partition("=")[::2] for p in query.split("&")).get("audience", "")
                    fake.requests.append({"github-token": audience})
                    self._send(200, {"value": fake.github_token(*fake.github_job) if audience == "sigstore" else ""})
                else:
                    self._send(404, {})

            def do_POST(self) -> None:
                if self.path != "/api/v2/signingCert":
                    self._send(404, {})
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                fake.requests.append(body)
                try:
                    self._send(201, fake.signing_cert(body))
                except (KeyError, TypeError, ValueError) as exc:
                    self._send(401 if "token" in str(exc) else 400, {"code": 400, "message": str(exc)})

        return Handler
