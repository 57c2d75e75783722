"""Keyless signed caches (signing = "keyless", docs/signed-caches.md#keyless) against a token-auth distribution
registry and Pulp with real builds, the OIDC issuer and the CA being the local sigstore stand-in (tests/fakes/sigstore.py):
no public Fulcio or Rekor is reached.

The proof: a protected build of main signs its export with a certificate for its own identity; a merge request's
job runs cacheport itself, claiming to be a protected pipeline of main, with the token GitLab gave it (for
refs/heads/feature), and so gets a certificate for that identity and signs its own cache on main's tag; the next
protected build refuses it (the identity rule), says so, builds cold and signs; the one after is warm again.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from tests.fakes.sigstore import FakeSigstore

from .harness import Harness, Pulp, gitlab_env, pulp_env


def keyless_job(base: dict[str, str], project: str, sigstore: FakeSigstore, root: Path,
                token: str) -> dict[str, str]:
    """A GitLab job of ``project`` saying it is a protected pipeline of main, with ``token`` as its id_tokens
    entry."""
    return {**base, "CI_COMMIT_REF_PROTECTED": "true", "CACHEPORT_TRUST": "signed", "CACHEPORT_SIGNING": "keyless",
            "CACHEPORT_SIGNER_IDENTITY": f"issuer={sigstore.url} repository={project} refs=refs/heads/main",
            "CACHEPORT_TRUSTED_ROOT": str(root), "CACHEPORT_FULCIO_URL": sigstore.url, "SIGSTORE_ID_TOKEN": token}


def signed_digest(log: str, cache: str) -> str:
    found = re.search(rf"signature: signed {re.escape(cache)}:main \((sha256:[0-9a-f]{{64}})\)", log)
    assert found, log
    return found.group(1)


def scenario(harness: Harness, sigstore: FakeSigstore, tmp: Path, base: dict[str, str], project: str,
             cache: str) -> None:
    """The proof of the module's docstring, for the store ``base`` points at, whose cache of main is
    ``cache``:main."""
    root = sigstore.root_file(tmp)
    main_token = sigstore.gitlab_token(project=project, ref="main")
    env = keyless_job(base, project, sigstore, root, main_token)
    ctx = harness.project(tmp)

    harness.prune()
    asked = len(sigstore.requests)
    first = harness.build(ctx, env=env)  # 1. a protected build signs its export, keyless
    assert first.code == 0 and first.ran, first.log
    signed_digest(first.log, cache)
    # One certificate per build: the build's record for the cache's history is signed with the export's.
    assert len(sigstore.requests) == asked + 1 and "warning: history" not in first.log, first.log

    # 2. a merge request's job, with its own (honest) token for refs/heads/feature, pretends to be main's
    evil_token = sigstore.gitlab_token(project=project, ref="feature", protected=False)
    evil = harness.build(harness.project(tmp / "evil"), env=keyless_job(base, project, sigstore, root, evil_token))
    assert evil.code == 0, evil.log
    foreign = signed_digest(evil.log, cache)  # the CA certified it, as what it is

    harness.prune()
    refused = harness.build(ctx, env=env)  # 3. refused by the identity rule, and cold
    assert refused.code == 0, refused.log
    assert (f"signature: refused {cache}:main ({foreign}): signed by a job on refs/heads/feature, which "
            "signer-identity does not allow (refs=refs/heads/main); building without it") in refused.log
    assert len(refused.ran) == 3, refused.log
    rebuilt = signed_digest(refused.log, cache)

    harness.prune()
    warm = harness.build(ctx, env=env)  # 4. after the protected rebuild, hits come back
    assert warm.code == 0 and warm.ran == [], warm.log
    assert warm.rand == refused.rand
    assert f"signature: verified {cache}:main ({rebuilt}): signed by {project}@refs/heads/main" in warm.log
    for result in (first, evil, refused, warm):
        assert main_token not in result.log and evil_token not in result.log

    # A protected pipeline without a token stops before building, as one without a key does.
    none = harness.build(ctx, env={**env, "SIGSTORE_ID_TOKEN": ""})
    assert none.code == 2 and "no OIDC token" in none.log and "Traceback" not in none.log, none.log
    assert "#1 " not in none.log


def test_keyless_signed_caches_on_a_token_auth_registry(harness: Harness, sigstore: FakeSigstore,
                                                        tmp_path: Path) -> None:
    (tmp_path / "registry").mkdir()
    with harness.token_registry(tmp_path / "registry") as reg:
        base = gitlab_env(f"{reg.host}/group/app", "main", CI_REGISTRY_USER=reg.user, CI_REGISTRY_PASSWORD=reg.password)
        scenario(harness, sigstore, tmp_path, base, "group/app", f"{reg.host}/group/app/cache")


def test_keyless_signed_caches_on_pulp(harness: Harness, pulp: Pulp, sigstore: FakeSigstore,
                                       tmp_path: Path) -> None:
    project = f"E2E/Keyless-{uuid.uuid4().hex[:8]}"
    scenario(harness, sigstore, tmp_path, pulp_env(pulp, project), project, f"{pulp.registry}/{project.lower()}/cache")
