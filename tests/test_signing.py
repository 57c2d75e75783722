"""The signing core: keys, the DSSE envelope, and what a signature must say to pass (cacheport.signing)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cacheport.errors import ConfigError, SignatureError
from cacheport.records import Setting, Source
from cacheport.signing import (
    Claim,
    Policy,
    check,
    envelope,
    is_signature_tag,
    load_private_key,
    parse_signers,
    policy_from,
    public_der,
    signature_tag,
)

DIGEST = "sha256:" + "ab" * 32
NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def new_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_text(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(public_der(key)).decode()


def policy_for(*keys: Ed25519PrivateKey, days: int | None = 30) -> Policy:
    return Policy(parse_signers(",".join(public_text(k) for k in keys)), "CACHE_SIGNING_KEY",
                  timedelta(days=days) if days else None, "group/app", True)


def signed(key: Ed25519PrivateKey, digest: str = DIGEST, name: str = "main", project: str = "group/app",
           when: datetime = NOW) -> bytes:
    return envelope(Claim(digest, name, project, when), key)


def test_a_signature_by_an_allowed_key_passes_and_says_who_and_when() -> None:
    key = new_key()
    claim = check(signed(key), DIGEST, "main", policy_for(key), NOW + timedelta(hours=1))
    assert (claim.digest, claim.name, claim.signed) == (DIGEST, "main", NOW)
    assert claim.key_id == parse_signers(public_text(key))[0].key_id


@pytest.mark.parametrize(("change", "why"), [
    ({"digest": "sha256:" + "cd" * 32}, "the signature is for"),
    ({"name": "feature"}, "signed as the cache 'feature'"),
    ({"project": "evil/app"}, "signed for the project 'evil/app'"),
    ({"project": ""}, "signed for the project ''"),  # a claim naming no project passes in none
    ({"when": NOW - timedelta(days=31)}, "older than signed-max-age"),
])
def test_a_signature_for_another_digest_name_project_or_too_long_ago_is_refused(change: dict, why: str) -> None:
    key = new_key()
    with pytest.raises(SignatureError, match=why):
        check(signed(key, **change), DIGEST, "main", policy_for(key), NOW)


def test_no_age_bound_accepts_an_old_signature() -> None:
    key = new_key()
    assert check(signed(key, when=NOW - timedelta(days=400)), DIGEST, "main", policy_for(key, days=None), NOW)


def test_an_unknown_key_and_a_forged_signature_are_refused_with_their_own_reasons() -> None:
    mine, theirs = new_key(), new_key()
    with pytest.raises(SignatureError, match="unknown key"):
        check(signed(theirs), DIGEST, "main", policy_for(mine), NOW)
    # the attacker names the allowed key's id over their own signature
    doc = json.loads(signed(theirs))
    doc["signatures"][0]["keyid"] = parse_signers(public_text(mine))[0].key_id
    with pytest.raises(SignatureError, match="bad signature"):
        check(json.dumps(doc).encode(), DIGEST, "main", policy_for(mine), NOW)


def test_a_changed_payload_no_longer_verifies() -> None:
    key = new_key()
    doc = json.loads(signed(key))
    body = json.loads(base64.b64decode(doc["payload"]))
    body["digest"] = "sha256:" + "cd" * 32
    doc["payload"] = base64.b64encode(json.dumps(body).encode()).decode()
    with pytest.raises(SignatureError, match="bad signature"):
        check(json.dumps(doc).encode(), "sha256:" + "cd" * 32, "main", policy_for(key), NOW)


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b'{"payloadType": "x"}',
                                  json.dumps({"payloadType": "application/vnd.cacheport.cache-signature.v1+json",
                                              "payload": "!!", "signatures": []}).encode(),
                                  json.dumps({"payloadType": "application/vnd.cacheport.cache-signature.v1+json",
                                              "payload": "e30=", "signatures": "x"}).encode()])
def test_a_malformed_signature_is_one_line(data: bytes) -> None:
    with pytest.raises(SignatureError) as caught:
        check(data, DIGEST, "main", policy_for(new_key()), NOW)
    assert "\n" not in str(caught.value)


def test_private_keys_in_pem_and_base64_der_load_and_others_are_refused_without_showing_them() -> None:
    key = new_key()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    der = base64.b64encode(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())).decode()
    assert public_der(load_private_key(pem, "K")) == public_der(key)
    assert public_der(load_private_key(der, "K")) == public_der(key)
    for wrong in ("c2VjcmV0LXZhbHVlLW5vdC1hLWtleQ==", public_text(key), "-----BEGIN PRIVATE KEY-----\nxx\n"):
        with pytest.raises(ConfigError) as caught:
            load_private_key(wrong, "CACHE_SIGNING_KEY")
        assert wrong.strip() not in str(caught.value) and "$CACHE_SIGNING_KEY" in str(caught.value)


def test_signers_must_be_ed25519_public_keys() -> None:
    key = new_key()
    assert len(parse_signers(f" {public_text(key)} , {public_text(new_key())}")) == 2
    rsa_like = base64.b64encode(b"\x30\x82" + b"\x00" * 60).decode()
    for wrong in ("not base64!", rsa_like, base64.b64encode(public_der(key)[:-1]).decode()):
        with pytest.raises(ConfigError, match="not an Ed25519 public key"):
            parse_signers(wrong, "cacheport.toml signers")


def test_a_private_key_given_as_a_signer_is_refused_without_showing_any_of_it() -> None:
    key = new_key()
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    for given in (base64.b64encode(der).decode(), pem):
        with pytest.raises(ConfigError, match="a private key was given") as caught:
            parse_signers(given, "cacheport.toml signers")
        message = str(caught.value)
        assert "\n" not in message
        # nothing past the fixed DER header: not one character that depends on the key
        assert not any(given[i:i + 4] in message for i in range(16, len(given) - 4) if given[i:i + 4].strip())


def _settings(signers: str | None, days: int = 30, env: str = "CACHE_SIGNING_KEY") -> dict[str, Setting]:
    src = Source("file", "cacheport.toml")
    return {"trust": Setting("signed", src), "signers": Setting(signers, src), "signed-max-age": Setting(days, src),
            "signing-key-env": Setting(env, src)}


def test_trust_signed_needs_a_signer_a_sane_age_and_a_variable_name() -> None:
    with pytest.raises(ConfigError, match="needs signers"):
        policy_from(_settings(None), "p", True)
    with pytest.raises(ConfigError, match="signed-max-age"):
        policy_from(_settings(public_text(new_key()), days=-1), "p", True)
    with pytest.raises(ConfigError, match="not the name of a variable"):
        policy_from(_settings(public_text(new_key()), env="$KEY"), "p", True)
    # the key itself given as the variable's name: refused without being shown
    private = base64.b64encode(new_key().private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption())).decode()
    with pytest.raises(ConfigError, match="not the name of a variable") as caught:
        policy_from(_settings(public_text(new_key()), env=private), "p", True)
    assert private[20:] not in str(caught.value) and private[-8:] not in str(caught.value)
    # a quarter of keys have no + or / and look like a variable's name: refused all the same
    for _ in range(64):
        der = new_key().private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        with pytest.raises(ConfigError, match="not the name of a variable"):
            policy_from(_settings(public_text(new_key()), env=base64.b64encode(der).decode().rstrip("=")), "p", True)
    assert policy_from(_settings(public_text(new_key()), env="GITLAB_CACHE_SIGNING_KEY_FOR_THE_RELEASE_JOBS"),
                       "p", True).key_env == "GITLAB_CACHE_SIGNING_KEY_FOR_THE_RELEASE_JOBS"
    assert policy_from(_settings(public_text(new_key()), days=0), "p", True).max_age is None


def test_signature_tags_are_named_after_the_digest() -> None:
    assert signature_tag(DIGEST) == "sha256-" + "ab" * 32 + ".cacheport-sig"
    assert is_signature_tag(signature_tag(DIGEST)) and not is_signature_tag("main")
    with pytest.raises(SignatureError):
        signature_tag("main")
