"""Keyless signatures (signing = "keyless") against the local sigstore stand-in (tests/fakes/sigstore.py): an OIDC
issuer and a Fulcio-like CA on 127.0.0.1. The public Fulcio is never reached: this is all a stand-in tests."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cacheport.errors import ConfigError, SignatureError
from cacheport.keyless import Identity, Keyless, material, parse_identity, read_roots
from cacheport.ops.fulcio import GITHUB_REQUEST_TOKEN, GITHUB_REQUEST_URL, KeylessSigner, oidc_token
from cacheport.records import Setting, Source
from cacheport.signing import PAYLOAD_TYPE, Claim, Policy, check, pae, policy_from
from tests.fakes.sigstore import CA, GITHUB_BEARER, FakeSigstore, fulcio_identity

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def fake() -> Iterator[FakeSigstore]:
    with FakeSigstore() as server:
        yield server


def keyless_for(fake: FakeSigstore, refs: tuple[str, ...] = ("refs/heads/main", "refs/tags/v*"),
                repository: str = "group/app", ca: CA | None = None) -> Keyless:
    root = (ca or fake.ca).root.public_bytes(serialization.Encoding.DER)
    return Keyless(Identity(fake.url, repository, refs), (root,), "root.pem", fake.url, "SIGSTORE_ID_TOKEN")


def policy_for(keyless: Keyless) -> Policy:
    return Policy((), "CACHE_SIGNING_KEY", timedelta(days=30), "group/app", True, keyless)


def sign(fake: FakeSigstore, token: str, name: str = "main", digest: str = DIGEST) -> tuple[bytes, datetime]:
    signer = KeylessSigner(keyless_for(fake), {"SIGSTORE_ID_TOKEN": token})
    now = datetime.now(UTC)
    return signer.envelope(Claim(digest, name, "group/app", now)), now


def test_a_protected_job_s_signature_verifies_and_says_whose_it_is(fake: FakeSigstore) -> None:
    data, now = sign(fake, fake.gitlab_token(ref="main"))
    claim = check(data, DIGEST, "main", policy_for(keyless_for(fake)), now + timedelta(hours=1))
    assert claim.key_id == "group/app@refs/heads/main" and claim.digest == DIGEST
    [request] = fake.requests  # one certificate, for the token the job had
    assert request["credentials"]["oidcIdentityToken"].count(".") == 2
    doc = json.loads(data)
    assert len(doc["verificationMaterial"]["x509CertificateChain"]["certificates"]) == 3


def test_a_tag_matching_a_glob_verifies(fake: FakeSigstore) -> None:
    data, now = sign(fake, fake.gitlab_token(ref="v1.2", ref_type="tag"), name="v1.2")
    assert check(data, DIGEST, "v1.2", policy_for(keyless_for(fake)), now).key_id == "group/app@refs/tags/v1.2"


@pytest.mark.parametrize(("token", "why"), [
    (lambda f: f.gitlab_token(ref="feature", protected=False), "signed by a job on refs/heads/feature, which "
                                                                "signer-identity does not allow"),
    (lambda f: f.gitlab_token(project="evil/app"), "signed by a job of 'evil/app', not 'group/app'"),
])
def test_an_unprotected_ref_or_another_project_gets_a_certificate_the_rule_refuses(
        fake: FakeSigstore, token: object, why: str) -> None:
    data, now = sign(fake, token(fake))  # type: ignore[operator]
    with pytest.raises(SignatureError, match=why):
        check(data, DIGEST, "main", policy_for(keyless_for(fake)), now)


def test_a_certificate_of_another_issuer_is_refused(fake: FakeSigstore) -> None:
    data, now = sign(fake, fake.gitlab_token())
    other = Keyless(Identity("https://gitlab.com", "group/app", ("refs/heads/main",)), keyless_for(fake).roots,
                    "root.pem", fake.url, "SIGSTORE_ID_TOKEN")
    with pytest.raises(SignatureError, match="from the issuer"):
        check(data, DIGEST, "main", policy_for(other), now)


def test_another_root_an_expired_certificate_and_a_forged_chain_are_refused(fake: FakeSigstore) -> None:
    data, now = sign(fake, fake.gitlab_token())
    with pytest.raises(SignatureError, match="does not chain to trusted-root"):
        check(data, DIGEST, "main", policy_for(keyless_for(fake, ca=CA())), now)

    fake.backdate, fake.lifetime = timedelta(hours=2), timedelta(minutes=10)  # a certificate long expired
    signer = KeylessSigner(keyless_for(fake), {"SIGSTORE_ID_TOKEN": fake.gitlab_token()})
    with pytest.raises(SignatureError, match="already expired"):
        signer.envelope(Claim(DIGEST, "main", "group/app", datetime.now(UTC)))
    # What a stolen ephemeral key could make after its certificate expired, stamped now: refused.
    body = Claim(DIGEST, "main", "group/app", datetime.now(UTC)).payload()
    stale = {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(body).decode(),
             "signatures": [{"keyid": "", "sig": base64.b64encode(signer._key.sign(
                 pae(PAYLOAD_TYPE, body), ec.ECDSA(hashes.SHA256()))).decode()}],
             "verificationMaterial": material(signer.chain())}
    with pytest.raises(SignatureError, match="outside the validity of its certificate"):
        check(json.dumps(stale).encode(), DIGEST, "main", policy_for(keyless_for(fake)), datetime.now(UTC))

    # An attacker's own CA, named like the real intermediate, issuing a certificate with the protected identity.
    attacker = CA()
    attacker.intermediate = attacker._ca(fake.ca.intermediate.subject, attacker.key, attacker.root.subject,
                                         attacker.root_key, datetime.now(UTC))
    key = ec.generate_private_key(ec.SECP256R1())
    san, extensions = fulcio_identity(fake.url, {"project_path": "group/app", "ref": "main"})
    leaf = attacker.issue(key.public_key(), san, extensions)
    real_chain = json.loads(data)["verificationMaterial"]["x509CertificateChain"]["certificates"]
    body = json.loads(data)["payload"]
    forged = {"payloadType": PAYLOAD_TYPE, "payload": body,
              "signatures": [{"keyid": "", "sig": base64.b64encode(key.sign(
                  pae(PAYLOAD_TYPE, base64.b64decode(body)), ec.ECDSA(hashes.SHA256()))).decode()}],
              "verificationMaterial": {"x509CertificateChain": {"certificates": [
                  {"rawBytes": base64.b64encode(leaf.public_bytes(serialization.Encoding.DER)).decode()},
                  *real_chain[1:]]}}}
    with pytest.raises(SignatureError, match="forged certificate chain"):
        check(json.dumps(forged).encode(), DIGEST, "main", policy_for(keyless_for(fake)), now)


def test_a_tampered_payload_or_a_key_pair_signature_is_refused(fake: FakeSigstore) -> None:
    data, now = sign(fake, fake.gitlab_token())
    doc = json.loads(data)
    payload = json.loads(base64.b64decode(doc["payload"]))
    doc["payload"] = base64.b64encode(json.dumps({**payload, "digest": "sha256:" + "cd" * 32}).encode()).decode()
    with pytest.raises(SignatureError, match="bad signature"):
        check(json.dumps(doc).encode(), "sha256:" + "cd" * 32, "main", policy_for(keyless_for(fake)), now)
    with pytest.raises(SignatureError, match="signed as the cache 'main', not 'release'"):
        check(data, DIGEST, "release", policy_for(keyless_for(fake)), now)
    del doc["verificationMaterial"]
    with pytest.raises(SignatureError, match="no certificate chain"):
        check(json.dumps(doc).encode(), DIGEST, "main", policy_for(keyless_for(fake)), now)


def test_a_forged_or_foreign_token_gets_no_certificate(fake: FakeSigstore) -> None:
    other = FakeSigstore()
    token = other.gitlab_token()  # another issuer's key
    signer = KeylessSigner(keyless_for(fake), {"SIGSTORE_ID_TOKEN": token})
    with pytest.raises(SignatureError, match="answered 401"):
        signer.chain()
    with pytest.raises(SignatureError, match="answered 401"):
        KeylessSigner(keyless_for(fake), {"SIGSTORE_ID_TOKEN": fake.token(audience="gitlab",
                                                                           sub="x")}).chain()


def test_github_s_token_is_asked_for_with_the_audience_sigstore(fake: FakeSigstore) -> None:
    environ = {GITHUB_REQUEST_URL: f"{fake.url}/github-token?api-version=2.0", GITHUB_REQUEST_TOKEN: GITHUB_BEARER}
    keyless = Keyless(Identity(fake.url, "owner/repo", ("refs/heads/main",)), keyless_for(fake).roots, "root.pem",
                      fake.url, "SIGSTORE_ID_TOKEN")
    assert oidc_token(keyless, environ).count(".") == 2
    signer = KeylessSigner(keyless, environ)
    now = datetime.now(UTC)
    data = signer.envelope(Claim(DIGEST, "main", "owner/repo", now))
    policy = Policy((), "K", None, "owner/repo", True, keyless)
    assert check(data, DIGEST, "main", policy, now).key_id == "owner/repo@refs/heads/main"
    assert {"github-token": "sigstore"} in fake.requests


def test_a_protected_job_without_a_token_stops_before_the_build(fake: FakeSigstore) -> None:
    with pytest.raises(ConfigError, match=r"no OIDC token: \$SIGSTORE_ID_TOKEN \(id-token-env\) is not set"):
        KeylessSigner(keyless_for(fake), {})


def settings(tmp_path: Path, **values: object) -> dict[str, Setting]:
    src = Source("file", "cacheport.toml")
    base: dict[str, object] = {"trust": "signed", "signers": None, "signed-max-age": 30,
                               "signing-key-env": "CACHE_SIGNING_KEY", "signing": "keyless",
                               "signer-identity": "issuer=https://gitlab.com repository=group/app refs=refs/heads/main",
                               "trusted-root": str(tmp_path / "root.pem"), "fulcio-url": "https://fulcio.test",
                               "id-token-env": "SIGSTORE_ID_TOKEN"}
    return {k: Setting(v, src) for k, v in {**base, **values}.items()}


def test_the_keyless_settings_are_read_and_bad_ones_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_bytes(CA().pem)
    found = policy_from(settings(tmp_path), "group/app", True).keyless
    assert found is not None and str(found.identity) == ("issuer=https://gitlab.com repository=group/app "
                                                         "refs=refs/heads/main")
    for values, why in [
        ({"signer-identity": "issuer=https://gitlab.com refs=refs/heads/main"}, "needs signer-identity with "
                                                                                 "repository"),
        ({"signer-identity": "issuer=gitlab.com repository=a refs=refs/heads/main"}, "is not a URL"),
        ({"signer-identity": "issuer=https://x repository=a refs=main"}, "give full git refs"),
        ({"signer-identity": "issuer=https://x repository=a refs=refs/heads/main project=b"}, "'project=b'"),
        ({"trusted-root": str(tmp_path / "missing.pem")}, "missing.pem"),
        ({"trusted-root": None}, "needs trusted-root"),
        ({"fulcio-url": "fulcio"}, "is not an http"),
        ({"fulcio-url": "http://fulcio.example.com"}, "plain http is for a CA on this machine only"),
        ({"id-token-env": "A-B"}, "not the name of a variable"),
    ]:
        with pytest.raises(ConfigError, match=why):
            policy_from(settings(tmp_path, **values), "group/app", True)
    assert policy_from(settings(tmp_path, **{"fulcio-url": "http://127.0.0.1:8080"}), "group/app",
                       True).keyless is not None  # a CA on this machine (a stand-in) may speak plain http
    (tmp_path / "empty.pem").write_text("nothing\n")
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        read_roots(str(tmp_path / "empty.pem"), "trusted-root")
    assert parse_identity("refs=refs/heads/* issuer=https://x/ repository=/a/b/", "x") == Identity(
        "https://x", "a/b", ("refs/heads/*",))


def test_without_cryptography_a_keyless_job_is_told_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                                       fake: FakeSigstore) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(SignatureError, match=r"needs the cryptography package: install the signing extra"):
        KeylessSigner(keyless_for(fake), {"SIGSTORE_ID_TOKEN": "a.b.c"})
    with pytest.raises(SignatureError, match="needs the cryptography package"):
        body = base64.b64encode(Claim(DIGEST, "main", "group/app", datetime.now(UTC)).payload()).decode()
        check(json.dumps({"payloadType": PAYLOAD_TYPE, "payload": body, "signatures": []}).encode(), DIGEST,
              "main", policy_for(keyless_for(fake)), datetime.now(UTC))
