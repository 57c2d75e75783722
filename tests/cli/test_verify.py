"""``cacheport verify``, and ``args`` and ``explain`` under trust = "signed", as a protected GitLab job runs them
against a registry."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.fakes.registry import FakeRegistry, cache_index

REPO = "group/app/cache"


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def private_text(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())).decode()


def public_text(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(serialization.Encoding.DER,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


def job(clean_env: dict[str, str], fake: FakeRegistry, key: Ed25519PrivateKey, protected: bool = True) -> dict[str, str]:
    return {**clean_env, "GITLAB_CI": "true", "CI_PROJECT_PATH": "group/app", "CI_COMMIT_BRANCH": "main",
            "CI_COMMIT_REF_NAME": "main", "CI_COMMIT_REF_SLUG": "main", "CI_DEFAULT_BRANCH": "main",
            "CI_PIPELINE_SOURCE": "push", "CI_COMMIT_REF_PROTECTED": "true" if protected else "false",
            "CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{fake.host}/{REPO}",
            "CACHEPORT_TRUST": "signed", "CACHEPORT_SIGNERS": public_text(key),
            "CACHE_SIGNING_KEY": private_text(key)}


def sign_with_metadata(env: dict[str, str], digest: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"cache.manifest": json.dumps({"mediaType": "application/vnd.oci.image.index.v1+json",
                                                              "digest": digest, "size": 1})}))
    return run("verify", "--sign", str(meta), env=env)


def test_a_protected_job_signs_from_the_metadata_file_and_verify_and_args_then_pin_it(
        clean_env: dict[str, str], fake: FakeRegistry, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    env = job(clean_env, fake, key)
    digest = cache_index(fake, REPO, "main").digest
    before = run("verify", env=env)
    assert before.returncode == 1 and "not signed" in before.stdout
    signed = sign_with_metadata(env, digest, tmp_path)
    assert signed.returncode == 0, signed.stderr
    assert f"signed {fake.host}/{REPO}:main ({digest})" in signed.stderr
    after = run("verify", "main", "--format", "json", env=env)
    assert after.returncode == 0, after
    [doc] = json.loads(after.stdout)
    assert doc["verified"] and doc["digest"] == digest and doc["key_id"]
    args = run("args", "--lines", env=env)
    assert f"--cache-from=type=registry,ref={fake.host}/{REPO}@{digest}" in args.stdout.splitlines()
    assert "signature: verified" in args.stderr
    for out in (before, signed, after, args):  # the private key never reaches output
        assert env["CACHE_SIGNING_KEY"] not in out.stdout + out.stderr


def test_status_counts_a_signature_as_no_cache(clean_env: dict[str, str], fake: FakeRegistry,
                                               tmp_path: Path) -> None:
    env = job(clean_env, fake, Ed25519PrivateKey.generate())
    digest = cache_index(fake, REPO, "main").digest
    assert sign_with_metadata(env, digest, tmp_path).returncode == 0
    status = run("status", env=env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == f"{fake.host}/{REPO}: 1 cache(s), exported as image-manifest"
    assert any("(signature)" in line for line in status.stdout.splitlines())


def test_an_attacker_s_push_is_refused_by_args_and_verify(
        clean_env: dict[str, str], fake: FakeRegistry, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    env = job(clean_env, fake, key)
    sign_with_metadata(env, cache_index(fake, REPO, "main").digest, tmp_path)
    foreign = cache_index(fake, REPO, "main", layers=5).digest
    args = run("args", "--lines", env=env)
    assert args.returncode == 0
    assert not any(line.startswith("--cache-from") for line in args.stdout.splitlines())
    assert f"signature: refused {fake.host}/{REPO}:main ({foreign}): not signed; building without it" in args.stderr
    assert run("verify", env=env).returncode == 1


def test_explain_says_which_imports_are_verified_and_with_which_key(
        clean_env: dict[str, str], fake: FakeRegistry) -> None:
    key = Ed25519PrivateKey.generate()
    text = run("explain", env=job(clean_env, fake, key)).stdout
    assert "(trust = signed)" in text and "imports: each verified before the build (ed25519 " in text
    assert "cache mounts: the same: each <name>.mounts verified, then restored by digest; saved ones signed" in text
    unprotected = run("explain", "--format", "json", env=job(clean_env, fake, key, protected=False))
    assert json.loads(unprotected.stdout)["signatures"]["verifies"] is False


def test_public_key_prints_what_signers_takes(clean_env: dict[str, str], fake: FakeRegistry) -> None:
    key = Ed25519PrivateKey.generate()
    out = run("verify", "--public-key", env=job(clean_env, fake, key))
    assert out.stdout.strip() == public_text(key)


def test_public_key_needs_no_signers_yet(clean_env: dict[str, str], fake: FakeRegistry) -> None:
    # The docs' first step: make a key, then ask for the value signers takes, before trust = "signed" is set.
    key = Ed25519PrivateKey.generate()
    env = {name: value for name, value in job(clean_env, fake, key).items()
           if name not in ("CACHEPORT_TRUST", "CACHEPORT_SIGNERS")}
    out = run("verify", "--public-key", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == public_text(key)
    other = run("verify", "--public-key", "--set", "signing-key-env=MY_KEY",
                env={**env, "MY_KEY": private_text(key), "CACHE_SIGNING_KEY": ""})
    assert other.stdout.strip() == public_text(key), other.stderr


def test_a_key_given_as_signing_key_env_is_never_shown(clean_env: dict[str, str], fake: FakeRegistry) -> None:
    """The key itself set where its variable's name goes: refused by --public-key, *** in explain."""
    while "+" in (text := private_text(Ed25519PrivateKey.generate())) or "/" in text:
        pass  # one that passes for a variable's name (a quarter of them do)
    env = {**job(clean_env, fake, Ed25519PrivateKey.generate()), "CACHEPORT_SIGNING_KEY_ENV": text}
    env.pop("CACHEPORT_TRUST")
    out = run("verify", "--public-key", env=env)
    assert out.returncode == 2 and "not the name of a variable" in out.stderr, out.stderr
    shown = run("explain", env=env)
    assert shown.returncode == 0 and re.search(r"signing-key-env +\*\*\* ", shown.stdout), shown.stdout + shown.stderr
    for said in (out, shown):
        assert text[20:40] not in said.stdout + said.stderr


@pytest.mark.parametrize(("change", "says"), [
    ({"CACHEPORT_SIGNERS": "not-a-key"}, "is not an Ed25519 public key"),
    ({"CACHEPORT_SIGNERS": ""}, "needs signers"),
    ({"CACHE_SIGNING_KEY": "bm90IGEga2V5"}, "$CACHE_SIGNING_KEY is not an unencrypted Ed25519 private key"),
    ({"CACHE_SIGNING_KEY": ""}, "$CACHE_SIGNING_KEY (signing-key-env) is not set"),
])
def test_bad_keys_are_one_line_and_exit_2(clean_env: dict[str, str], fake: FakeRegistry, tmp_path: Path,
                                          change: dict[str, str], says: str) -> None:
    env = {**job(clean_env, fake, Ed25519PrivateKey.generate()), **change}
    out = sign_with_metadata(env, "sha256:" + "ab" * 32, tmp_path)
    assert out.returncode == 2 and says in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_verify_checks_cache_mounts_beside_the_caches(clean_env: dict[str, str], fake: FakeRegistry,
                                                      tmp_path: Path) -> None:
    """A protected save's ``main.mounts`` verifies (text and JSON, type "mounts"); an artifact pushed over it
    without the key is reported refused, and the exit status is 1; a branch with no mounts lists none."""
    from datetime import timedelta

    from cacheport.mounts import CacheMount, MountLimits
    from cacheport.oci.registry import Registry
    from cacheport.oci.repository import RegistryRepository
    from cacheport.ops.mounts_store import publish
    from cacheport.ops.signatures import StoreSigning
    from cacheport.signing import Policy, Signer, key_id, public_der
    from tests.fakes.caches import mount_archive

    key = Ed25519PrivateKey.generate()
    env = job(clean_env, fake, key)
    sign_with_metadata(env, cache_index(fake, REPO, "main").digest, tmp_path)
    der = public_der(key)
    signing = StoreSigning(Policy((Signer(key_id(der), der),), "CACHE_SIGNING_KEY", timedelta(days=30), "group/app",
                                  True), key)
    mount = CacheMount("pip", "/root/.cache/pip")
    with RegistryRepository(Registry(fake.host), REPO) as session:
        [saved] = publish(session, "main", [mount_archive(tmp_path / "pip.tar.gz", mount, {"a": b"pip"})],
                          limits=MountLimits(), signing=signing)
        assert saved.action == "saved"
        signed = session.manifest_digest("main.mounts")

    text = run("verify", env=env)
    assert text.returncode == 0, text.stdout + text.stderr
    [row] = [line for line in text.stdout.splitlines() if "main.mounts" in line]
    assert f"{fake.host}/{REPO}:main.mounts" in row and signed in row and "verified" in row
    doc = json.loads(run("verify", "main", "--format", "json", env=env).stdout)
    assert [(d["type"], d["ref"], d["digest"], d["verified"]) for d in doc] == [
        ("registry", f"{fake.host}/{REPO}:main", doc[0]["digest"], True),
        ("mounts", f"{fake.host}/{REPO}:main.mounts", signed, True)]
    assert doc[1]["key_id"] == key_id(der)

    forged = mount_archive(tmp_path / "evil.tar.gz", mount, {"a": b"poisoned"})
    with RegistryRepository(Registry(fake.host), REPO) as session:
        [unsigned] = publish(session, "main", [forged], limits=MountLimits())  # no signing: as a job without the key
        assert unsigned.action == "saved"
        foreign = session.manifest_digest("main.mounts")
    assert foreign != signed
    refused = run("verify", "--format", "json", env=env)
    assert refused.returncode == 1
    [mounts] = [d for d in json.loads(refused.stdout) if d["type"] == "mounts"]
    assert (mounts["digest"], mounts["verified"], mounts["reason"]) == (foreign, False, "not signed")
    assert re.search(rf"{re.escape(fake.host)}/{REPO}:main.mounts +{foreign} +refused +not signed",
                     run("verify", env=env).stdout)
    cache_index(fake, REPO, "develop")
    assert [d["type"] for d in json.loads(run("verify", "develop", "--format", "json", env=env).stdout)] == \
        ["registry"]
