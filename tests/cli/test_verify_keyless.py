"""``cacheport verify``, ``args`` and ``explain`` under signing = "keyless", as GitLab jobs run them against a
registry, with the local sigstore stand-in (tests/fakes/sigstore.py) as the OIDC issuer and the CA."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.registry import FakeRegistry, cache_index
from tests.fakes.sigstore import FakeSigstore

REPO = "group/app/cache"


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def sign_with_metadata(env: dict[str, str], digest: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``cacheport verify --sign`` of a buildx metadata file naming ``digest`` as the exported cache."""
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"cache.manifest": json.dumps({"mediaType": "application/vnd.oci.image.index.v1+json",
                                                              "digest": digest, "size": 1})}))
    return run("verify", "--sign", str(meta), env=env)


def job(clean_env: dict[str, str], fake: FakeRegistry, sigstore: FakeSigstore, token: str,
        ref: str = "main") -> dict[str, str]:
    """A GitLab job that says it is a protected pipeline of ``ref``, holding ``token``."""
    root = sigstore.root_file(Path.cwd())
    return {**clean_env, "GITLAB_CI": "true", "CI_PROJECT_PATH": "group/app", "CI_COMMIT_BRANCH": ref,
            "CI_COMMIT_REF_NAME": ref, "CI_COMMIT_REF_SLUG": ref, "CI_DEFAULT_BRANCH": "main",
            "CI_PIPELINE_SOURCE": "push", "CI_COMMIT_REF_PROTECTED": "true",
            "CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": f"{fake.host}/{REPO}",
            "CACHEPORT_TRUST": "signed", "CACHEPORT_SIGNING": "keyless",
            "CACHEPORT_SIGNER_IDENTITY": f"issuer={sigstore.url} repository=group/app refs=refs/heads/main",
            "CACHEPORT_TRUSTED_ROOT": root.name, "CACHEPORT_FULCIO_URL": sigstore.url,
            "SIGSTORE_ID_TOKEN": token}


def test_a_protected_job_signs_keyless_and_verify_and_args_then_pin_it(
        clean_env: dict[str, str], fake: FakeRegistry, sigstore: FakeSigstore, tmp_path: Path) -> None:
    env = job(clean_env, fake, sigstore, sigstore.gitlab_token(ref="main"))
    digest = cache_index(fake, REPO, "main").digest
    signed = sign_with_metadata(env, digest, tmp_path)
    assert signed.returncode == 0, signed.stderr
    assert f"signed {fake.host}/{REPO}:main ({digest})" in signed.stderr
    after = run("verify", "main", "--format", "json", env=env)
    assert after.returncode == 0, after.stderr
    [doc] = json.loads(after.stdout)
    assert doc["verified"] and doc["digest"] == digest and doc["key_id"] == "group/app@refs/heads/main"
    text = run("verify", env=env)
    assert f"identity rule: issuer={sigstore.url} repository=group/app refs=refs/heads/main" in text.stderr
    args = run("args", "--lines", env=env)
    assert f"--cache-from=type=registry,ref={fake.host}/{REPO}@{digest}" in args.stdout.splitlines()
    assert "signature: verified" in args.stderr and "signed by group/app@refs/heads/main" in args.stderr
    for out in (signed, after, text, args):  # the token never reaches output
        assert env["SIGSTORE_ID_TOKEN"] not in out.stdout + out.stderr


def test_an_unprotected_branch_s_token_cannot_sign_for_a_protected_build(
        clean_env: dict[str, str], fake: FakeRegistry, sigstore: FakeSigstore, tmp_path: Path) -> None:
    # A merge request's job runs cacheport itself, claiming to be protected, with the token GitLab gave it.
    attacker = job(clean_env, fake, sigstore, sigstore.gitlab_token(ref="feature", protected=False))
    poisoned = cache_index(fake, REPO, "main", layers=5).digest
    assert sign_with_metadata(attacker, poisoned, tmp_path).returncode == 0  # Fulcio certifies who it is...
    protected = job(clean_env, fake, sigstore, sigstore.gitlab_token(ref="main"))
    args = run("args", "--lines", env=protected)
    assert not any(line.startswith("--cache-from") for line in args.stdout.splitlines())
    assert (f"signature: refused {fake.host}/{REPO}:main ({poisoned}): signed by a job on refs/heads/feature, "
            "which signer-identity does not allow (refs=refs/heads/main); building without it") in args.stderr
    assert run("verify", env=protected).returncode == 1  # ...and the rule refuses that identity


def test_explain_shows_the_identity_rule(clean_env: dict[str, str], fake: FakeRegistry,
                                         sigstore: FakeSigstore) -> None:
    env = job(clean_env, fake, sigstore, sigstore.gitlab_token())
    text = run("explain", env=env).stdout
    assert (f"imports: each verified before the build (keyless: a certificate chaining to sigstore-root.pem, for "
            f"issuer={sigstore.url} repository=group/app refs=refs/heads/main)") in text
    assert f"exports: signed keyless, with a certificate from {sigstore.url}" in text
    doc = json.loads(run("explain", "--format", "json", env=env).stdout)["signatures"]
    assert doc["signing"] == "keyless" and doc["identity"].endswith("refs=refs/heads/main")


@pytest.mark.parametrize(("change", "says"), [
    ({"SIGSTORE_ID_TOKEN": ""}, "no OIDC token: $SIGSTORE_ID_TOKEN (id-token-env) is not set"),
    ({"CACHEPORT_SIGNER_IDENTITY": "repository=group/app"}, "needs signer-identity with issuer, refs"),
    ({"CACHEPORT_TRUSTED_ROOT": "nowhere.pem"}, "trusted-root = 'nowhere.pem'"),
    ({"CACHEPORT_SIGNING": "sigstore"}, "sigstore"),
])
def test_bad_keyless_input_is_one_line_and_exit_2(clean_env: dict[str, str], fake: FakeRegistry,
                                                   sigstore: FakeSigstore, tmp_path: Path, change: dict[str, str],
                                                   says: str) -> None:
    env = {**job(clean_env, fake, sigstore, sigstore.gitlab_token()), **change}
    out = sign_with_metadata(env, "sha256:" + "ab" * 32, tmp_path)
    assert out.returncode == 2 and says in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert not sigstore.requests  # nothing asked of the CA


def test_a_ca_that_is_down_is_a_warning_not_a_failure(clean_env: dict[str, str], fake: FakeRegistry,
                                                       sigstore: FakeSigstore, tmp_path: Path) -> None:
    env = {**job(clean_env, fake, sigstore, sigstore.gitlab_token()), "CACHEPORT_FULCIO_URL": f"http://{fake.host}/nothing"}
    out = sign_with_metadata(env, cache_index(fake, REPO, "main").digest, tmp_path)
    assert out.returncode == 1 and "warning: could not sign" in out.stderr and "Traceback" not in out.stderr
