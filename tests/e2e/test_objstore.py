"""s3 and azblob against real servers: moto's S3 (with IAM, so it checks signatures) and Azurite.

Docker Engine's builder can't use either cache type, so builds through them are in test_builders.py (on a remote
BuildKit); what these prove is ``cacheport doctor``'s checks: the bucket or container answers, the credentials are accepted (or refused, with
the fix), and one object is written, read back and deleted under the prefix.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import ObjectStores, clean_environ, s3_keys


def doctor(tmp_path: Path, toml: str, env: dict[str, str], backend: str) -> dict[str, dict[str, object]]:
    """``cacheport doctor --format json``'s checks of one backend, by name (Docker's own checks are left out)."""
    (tmp_path / "cacheport.toml").write_text(toml)
    out = subprocess.run([sys.executable, "-m", "cacheport", "doctor", "--format", "json", "--backend", backend],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**clean_environ(), "HOME": str(tmp_path), **env})
    assert out.returncode in (0, 1), out.stderr
    return {c["name"]: c for c in json.loads(out.stdout) if c["name"].startswith(f"{backend} ")}


def s3_toml(stores: ObjectStores, bucket: str | None = None, prefix: str = "team/app/") -> str:
    return (f'[s3]\nbucket = "{bucket or stores.s3_bucket}"\nregion = "{stores.s3_region}"\n'
            f'endpoint_url = "{stores.s3_endpoint}"\nuse_path_style = true\nprefix = "{prefix}"\n')


def test_s3_doctor_writes_and_deletes_one_object_with_working_credentials(objstores: ObjectStores,
                                                                          tmp_path: Path) -> None:
    env = {"AWS_ACCESS_KEY_ID": objstores.s3_key_id, "AWS_SECRET_ACCESS_KEY": objstores.s3_secret}
    checks = doctor(tmp_path, s3_toml(objstores), env, "s3")
    assert [(name, c["ok"]) for name, c in checks.items()] == [
        ("s3 bucket", True), ("s3 credentials", True), ("s3 write", True)]
    assert checks["s3 write"]["detail"] == "wrote, read back and deleted team/app/cacheport-doctor"
    assert objstores.s3_secret not in json.dumps(checks)
    probes = [deleted for name, deleted in s3_keys(objstores) if name == "team/app/cacheport-doctor"]
    assert probes and all(probes)  # it was written, and it is gone


def test_s3_doctor_refuses_wrong_credentials_and_says_how_to_fix_them(objstores: ObjectStores,
                                                                     tmp_path: Path) -> None:
    env = {"AWS_ACCESS_KEY_ID": objstores.s3_key_id, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    checks = doctor(tmp_path, s3_toml(objstores), env, "s3")
    assert checks["s3 bucket"]["ok"] is True
    assert checks["s3 credentials"]["ok"] is False and "SignatureDoesNotMatch" in str(checks["s3 credentials"]["detail"])
    assert "AWS_SECRET_ACCESS_KEY" in str(checks["s3 credentials"]["fix"])
    assert "s3 write" not in checks  # nothing is written with credentials that don't work
    unknown = doctor(tmp_path, s3_toml(objstores), {"AWS_ACCESS_KEY_ID": "AKIANOBODY", "AWS_SECRET_ACCESS_KEY": "x"},
                     "s3")
    assert "InvalidAccessKeyId" in str(unknown["s3 credentials"]["detail"])


def test_s3_doctor_reads_a_profile_and_names_a_missing_bucket(objstores: ObjectStores, tmp_path: Path) -> None:
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text(
        f"[ci]\naws_access_key_id = {objstores.s3_key_id}\naws_secret_access_key = {objstores.s3_secret}\n")
    checks = doctor(tmp_path, s3_toml(objstores, bucket="no-such-bucket"), {"AWS_PROFILE": "ci"}, "s3")
    assert list(checks) == ["s3 bucket"] and checks["s3 bucket"]["ok"] is False
    assert "does not exist" in str(checks["s3 bucket"]["detail"])
    assert doctor(tmp_path, s3_toml(objstores), {"AWS_PROFILE": "ci"}, "s3")["s3 credentials"]["detail"] == (
        f"profile 'ci' in {tmp_path}/.aws/credentials: accepted")


def test_s3_doctor_says_an_address_endpoint_needs_path_style(objstores: ObjectStores, tmp_path: Path) -> None:
    toml = s3_toml(objstores).replace("use_path_style = true", "use_path_style = false")
    checks = doctor(tmp_path, toml, {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}, "s3")
    assert checks["s3 bucket"]["ok"] is False and checks["s3 bucket"]["fix"] == "set use_path_style = true"


def azblob_toml(stores: ObjectStores, container: str | None = None) -> str:
    return (f'[azblob]\naccount_url = "{stores.azure_url}"\naccount_name = "{stores.azure_account}"\n'
            f'container = "{container or stores.azure_container}"\nprefix = "team/app"\n')


def test_azblob_doctor_writes_and_deletes_one_blob_with_the_account_key(objstores: ObjectStores,
                                                                         tmp_path: Path) -> None:
    checks = doctor(tmp_path, azblob_toml(objstores), {"AZURE_STORAGE_ACCOUNT_KEY": objstores.azure_key}, "azblob")
    assert [(name, c["ok"]) for name, c in checks.items()] == [
        ("azblob container", True), ("azblob credentials", True), ("azblob write", True)]
    assert checks["azblob write"]["detail"] == "wrote, read back and deleted team/app/cacheport-doctor"
    assert objstores.azure_key not in json.dumps(checks)


@pytest.mark.parametrize("key", ["Zm9yZ2VkLWtleQ==", "not base64 at all"])
def test_azblob_doctor_refuses_a_wrong_key(objstores: ObjectStores, tmp_path: Path, key: str) -> None:
    checks = doctor(tmp_path, azblob_toml(objstores), {"AZURE_STORAGE_ACCOUNT_KEY": key}, "azblob")
    assert checks["azblob container"]["ok"] is True
    assert checks["azblob credentials"]["ok"] is False
    assert "AZURE_STORAGE_ACCOUNT_KEY" in str(checks["azblob credentials"]["fix"])
    assert "azblob write" not in checks


def test_azblob_doctor_names_a_missing_container(objstores: ObjectStores, tmp_path: Path) -> None:
    checks = doctor(tmp_path, azblob_toml(objstores, "no-such-container"),
                    {"AZURE_STORAGE_ACCOUNT_KEY": objstores.azure_key}, "azblob")
    assert list(checks) == ["azblob container"] and checks["azblob container"]["ok"] is False
    assert "does not exist" in str(checks["azblob container"]["detail"])
