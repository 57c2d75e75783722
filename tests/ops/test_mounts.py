"""The helper builds and the restore / save around a build, without a builder: a stand-in ``docker`` runs each
helper build's script on this machine, with each cache mount a directory of a "builder" directory, so the
scripts' logic (empty, extract, fingerprint, tar) is exercised for real. The real builders are in
tests/e2e/test_mounts.py."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cacheport.config import load_config
from cacheport.errors import ConfigError
from cacheport.mounts import CacheMount, MountLimits
from cacheport.mounts.artifact import mounts_name
from cacheport.oci.layout import Layout
from cacheport.ops.buildx_args import build_options
from cacheport.ops.docker import Docker
from cacheport.ops.mounts import (
    Around,
    MountSettings,
    Names,
    names_for,
    restore,
    save,
    settings_of,
)
from cacheport.ops.signatures import StoreSigning
from cacheport.records import CacheStore, Context, Plan
from cacheport.signing import Policy, Signer, key_id, public_der

PIP = CacheMount("pip", "/root/.cache/pip", "locked", 1000, 1000, 0o750, stage="0", line=3)
GO = CacheMount("gomod", "/go/pkg/mod")

# Runs a helper build's script against directories: its Dockerfile's cache mounts are BUILDER/<id>, the state
# mount BUILDER/state, /in the context, /out the local output. Exits 1 with an ERROR line when FAIL exists.
FAKE = r'''#!{python}
import os, re, subprocess, sys
args = sys.argv[1:]
builder = {builder!r}
if os.path.exists(os.path.join(builder, "FAIL")):
    said = open(os.path.join(builder, "FAIL")).read()
    print(said or "ERROR: failed to solve: process did not complete successfully: pull access denied", file=sys.stderr)
    sys.exit(1)
file = args[args.index("--file") + 1]
out = args[args.index("--output") + 1].split("dest=", 1)[1]
context = args[-1]
dockerfile = open(file).read()
script = open(os.path.join(context, "helper.sh")).read()
places = {{"/in/": context + "/", "/out": out, "/s/": os.path.join(builder, "state") + "/"}}
for flag in re.findall(r"--mount=type=cache,([^ ]+)", dockerfile):
    opts = dict(kv.split("=", 1) for kv in flag.split(","))
    place = os.path.join(builder, opts["id"])
    os.makedirs(place, exist_ok=True)
    places[opts["target"]] = place
os.makedirs(places["/s/"], exist_ok=True)
for token in sorted(places, key=len, reverse=True):
    script = re.sub(re.escape(token) + (r"(?![0-9])" if token[-1].isdigit() else ""), "@@" + str(sorted(places).index(token)) + "@@", script)
for token in places:
    script = script.replace("@@" + str(sorted(places).index(token)) + "@@", places[token])
sys.exit(subprocess.run(["sh", "-c", script]).returncode)
'''


@pytest.fixture
def builder(tmp_path: Path) -> Path:
    return tmp_path / "builder"


def fake_docker(tmp_path: Path, builder: Path) -> Docker:
    script = tmp_path / "docker"
    script.write_text(FAKE.format(python=sys.executable, builder=str(builder)))
    script.chmod(0o755)
    builder.mkdir(exist_ok=True)
    return Docker((str(script),), "ci", {"PATH": os.environ.get("PATH", "")})


def local_store(directory: Path) -> CacheStore:
    return CacheStore(location=str(directory), format="image-manifest", name_for=lambda b: b.replace("/", "-"),
                      branch_of=lambda n: n, open=lambda: Layout(directory))


def fill(place: Path) -> None:
    (place / "wheels").mkdir(parents=True)
    (place / "wheels" / "a.whl").write_bytes(b"a" * 5000)
    (place / "index").write_text("a\n")
    os.symlink("wheels/a.whl", place / "latest")  # kept as a link


SETTINGS = MountSettings(helper_image="helper", limits=MountLimits(1 << 20, 2 << 20))


def test_saved_then_restored_into_a_fresh_builder_then_unchanged(tmp_path: Path) -> None:
    store = local_store(tmp_path / "store")
    first = tmp_path / "b1"
    docker = fake_docker(tmp_path, first)
    fill(first / "pip")
    saved = save(store, "main", [PIP], docker, SETTINGS)
    assert [(o.id, o.action, o.name) for o in saved] == [("pip", "saved", mounts_name("main"))], saved

    fresh = tmp_path / "b2"
    docker = fake_docker(tmp_path, fresh)
    restored = restore(store, ["feature-x", "main"], [PIP, GO], docker, SETTINGS)
    assert {(o.id, o.action) for o in restored} == {("pip", "restored"), ("gomod", "missed")}, restored
    assert (fresh / "pip" / "wheels" / "a.whl").read_bytes() == b"a" * 5000
    assert os.readlink(fresh / "pip" / "latest") == "wheels/a.whl"

    with Layout(tmp_path / "store") as layout:
        before = layout.manifest_digest(mounts_name("main"))
    again = save(store, "main", [PIP], docker, SETTINGS)
    assert [o.action for o in again] == ["unchanged"], again  # as restored from there: nothing uploaded
    other = save(store, "feature-x", [PIP], docker, SETTINGS)
    assert [o.action for o in other] == ["saved"], other  # restored from main's, so feature-x has none yet
    assert "nothing uploaded" in other[0].detail  # but the store holds those bytes already
    both = save(store, "main", [PIP, GO], docker, SETTINGS)  # one mount as restored, one empty
    assert [o.action for o in both] == ["unchanged", "skipped"], both
    (fresh / "pip" / "index").write_text("a\nb\n")
    changed = save(store, "main", [PIP], docker, SETTINGS)
    assert [o.action for o in changed] == ["saved"], changed
    with Layout(tmp_path / "store") as layout:
        assert layout.manifest_digest(mounts_name("main")) != before


def test_a_mount_over_the_limit_is_cut_short_in_the_builder_and_not_saved(tmp_path: Path) -> None:
    """The helper stops writing one byte past the limit: a huge mount never fills the disk it is exported to."""
    store = local_store(tmp_path / "store")
    builder = tmp_path / "b"
    (builder / "pip").mkdir(parents=True)
    (builder / "pip" / "noise").write_bytes(os.urandom(64 << 10))  # gzip can't shrink it below the limit
    small = attrs.evolve(SETTINGS, limits=MountLimits(16 << 10, 2 << 20))
    outcomes = save(store, "main", [PIP], fake_docker(tmp_path, builder), small)
    assert [(o.action, o.size) for o in outcomes] == [("too-large", (16 << 10) + 1)], outcomes
    assert "size limit (16384 bytes)" in outcomes[0].detail
    with Layout(tmp_path / "store") as layout:
        assert layout.manifest_digest(mounts_name("main")) is None
    # under a limit it fits, the same mount is saved whole
    assert [o.action for o in save(store, "main", [PIP], fake_docker(tmp_path, builder), SETTINGS)] == ["saved"]


def test_restore_empties_the_mount_first(tmp_path: Path) -> None:
    store = local_store(tmp_path / "store")
    one = tmp_path / "b1"
    fill(one / "pip")
    save(store, "main", [PIP], fake_docker(tmp_path, one), SETTINGS)
    two = tmp_path / "b2"
    (two / "pip").mkdir(parents=True)
    (two / "pip" / "stale").write_text("from an older build")
    restore(store, ["main"], [PIP], fake_docker(tmp_path, two), SETTINGS)
    assert sorted(p.name for p in (two / "pip").iterdir()) == ["index", "latest", "wheels"]


def test_an_empty_mount_is_not_saved(tmp_path: Path) -> None:
    store = local_store(tmp_path / "store")
    outcomes = save(store, "main", [GO], fake_docker(tmp_path, tmp_path / "b"), SETTINGS)
    assert [o.action for o in outcomes] == ["skipped"]
    with Layout(tmp_path / "store") as layout:
        assert layout.manifest_digest(mounts_name("main")) is None


def test_a_helper_build_that_fails_is_one_outcome_per_mount(tmp_path: Path) -> None:
    store = local_store(tmp_path / "store")
    builder = tmp_path / "b"
    docker = fake_docker(tmp_path, builder)
    fill(builder / "pip")
    save(store, "main", [PIP], docker, SETTINGS)
    (builder / "FAIL").write_text("")
    for outcomes in (restore(store, ["main"], [PIP], docker, SETTINGS), save(store, "main", [PIP], docker, SETTINGS)):
        assert [(o.action, o.detail) for o in outcomes] == [("failed", "helper build failed: pull access denied")]


def test_a_helper_image_that_can_t_be_pulled_is_said_once_in_the_report(tmp_path: Path) -> None:
    """buildx's heading goes, the reason stays; the report gives the long line for the first mount only."""
    from cacheport.report import BuildReport, as_markdown, as_text

    builder = tmp_path / "b"
    docker = fake_docker(tmp_path, builder)
    fill(builder / "pip")
    fill(builder / "gomod")
    image = "registry.example.invalid/tools/busybox:1"
    reason = f"{image}: failed to resolve source metadata for {image}: {image}: not found"
    (builder / "FAIL").write_text(f"ERROR: failed to build: failed to solve: {reason}")
    outcomes = save(local_store(tmp_path / "store"), "main", [PIP, GO], docker, SETTINGS)
    assert [(o.id, o.action, o.detail) for o in outcomes] == [
        ("pip", "failed", f"helper build failed: {reason}"), ("gomod", "failed", f"helper build failed: {reason}")]
    shown = BuildReport("succeeded", mounts=outcomes)
    for text in (as_text(shown), as_markdown(shown)):
        assert text.count(reason) == 1 and "as for pip" in text, text
    assert as_text(shown).splitlines()[-1].endswith("gomod at main.mounts: as for pip")


def test_a_store_that_breaks_is_an_outcome_never_an_exception(tmp_path: Path) -> None:
    def broken() -> Layout:
        raise OSError("connection refused")

    store = attrs.evolve(local_store(tmp_path / "store"), open=broken)
    docker = fake_docker(tmp_path, tmp_path / "b")
    fill(tmp_path / "b" / "pip")
    for outcomes in (restore(store, ["main"], [PIP], docker, SETTINGS), save(store, "main", [PIP], docker, SETTINGS)):
        assert [o.action for o in outcomes] == ["failed"]
        assert "connection refused" in outcomes[0].detail


def plan(branch: str | None, *, exports: bool = True, read_only: bool = False, target: str | None = None,
         mode: str = "branch", protected: bool | None = None, default: str | None = "main") -> Plan:
    from cacheport.entry import CacheEntry
    from cacheport.trust import decide

    context = Context("gitlab", "g/app", branch=branch, default_branch=default, target_branch=target,
                      protected=protected)
    context = attrs.evolve(context, trust=decide(context, mode, ()))
    entry = CacheEntry.parse("type=registry,ref=r/app/cache:x")
    return Plan(context, "registry", (entry,), (entry,) if exports else (), read_only=read_only)


def test_names_follow_the_trust_decision_and_only_a_writer_saves(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    names = names_for(plan("feature/x", target="develop"), store)
    assert names.restore == ("feature-x", "develop", "main")
    assert names.save == "feature-x"
    refused = names_for(plan("feature/x", exports=False, read_only=True), store)
    assert refused.save == "" and "may not write" in refused.refusal
    nowhere = names_for(plan(None, default=None), store)
    assert (nowhere.restore, nowhere.save) == (("latest",), "latest")


def test_an_unprotected_job_under_protected_trust_writes_only_its_own_unprotected_mounts(tmp_path: Path) -> None:
    from cacheport.trust import marked

    names = names_for(plan("feature/x", mode="protected", protected=False), local_store(tmp_path))
    assert names.save == marked("feature-x")
    assert names.restore[0] == marked("feature-x") and "main" in names.restore


def test_a_job_that_may_not_write_gets_refused_outcomes_and_writes_nothing(tmp_path: Path) -> None:
    store = local_store(tmp_path / "store")
    builder = tmp_path / "b"
    fill(builder / "pip")
    chosen = Around((PIP,), SETTINGS, store, names_for(plan("main", exports=False, read_only=True), store))
    outcomes = chosen.save(fake_docker(tmp_path, builder))
    assert [o.action for o in outcomes] == ["refused"]
    assert not (tmp_path / "store").exists()


def test_build_options_are_read_as_buildx_reads_them() -> None:
    args = ["--target", "test", "--build-arg", "A=1", "--build-arg=B=2", "--build-arg", "HOME", "--network=host"]
    assert build_options(args, {"HOME": "/root"}) == ("test", {"A": "1", "B": "2", "HOME": "/root"})
    assert build_options(["--target=t", "--build-arg", "UNSET"], {}) == ("t", {})


def settings(tmp_path: Path, text: str, environ: dict[str, str] | None = None,
             cli: list[tuple[str, str, str]] | None = None) -> MountSettings:
    (tmp_path / "cacheport.toml").write_text(text)
    return settings_of(load_config(tmp_path, environ or {}, cli=cli or []))


def test_mounts_settings_from_the_file_the_shorthand_the_environment_and_the_flag(tmp_path: Path) -> None:
    assert settings(tmp_path, "") == MountSettings()
    assert not settings(tmp_path, 'mounts = "off"').enabled
    found = settings(tmp_path, '[mounts]\nenabled = false\nhelper-image = "mirror/busybox"\nmax-size = "512MiB"\n'
                     "max-total = 1000\n")
    assert (found.enabled, found.helper_image, found.limits) == (False, "mirror/busybox", MountLimits(512 << 20, 1000))
    assert settings(tmp_path, 'mounts = "off"', {"CACHEPORT_MOUNTS__ENABLED": "true"}).enabled
    assert not settings(tmp_path, "", cli=[("mounts", "off", "--mounts")]).enabled
    assert "--mounts" in settings(tmp_path, "", cli=[("mounts", "off", "--mounts")]).off_by


@pytest.mark.parametrize(("text", "says"), [
    ('[mounts]\nmax-size = "lots"\n', "max-size = 'lots': expected a size"),
    ("[mounts]\nmax-size = 0\n", "expected a size above 0"),
    ('[mounts]\nhelper = "x"\n', "[mounts] has no key 'helper'"),
    ('mounts = "no"\n', "allowed values are on, off"),
])
def test_a_bad_mounts_setting_is_one_line_naming_it(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        settings(tmp_path, text)


def test_under_signed_trust_a_refused_name_is_said_and_the_next_one_restores(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    der = public_der(key)
    signing = StoreSigning(Policy((Signer(key_id(der), der),), "CACHE_SIGNING_KEY", None, "group/app", True), key)
    store = local_store(tmp_path / "store")
    first = tmp_path / "b1"
    docker = fake_docker(tmp_path, first)
    fill(first / "pip")
    assert [o.action for o in save(store, "main", [PIP], docker, SETTINGS, signing)] == ["saved"]
    (first / "pip" / "index").write_text("poisoned\n")
    assert [o.action for o in save(store, "feature-x", [PIP], docker, SETTINGS)] == ["saved"]  # unsigned
    fresh = tmp_path / "b2"
    restored = restore(store, ["feature-x", "main"], [PIP], fake_docker(tmp_path, fresh), SETTINGS, signing)
    assert [(o.action, o.name) for o in restored] == [("refused", "feature-x.mounts"), ("restored", "main.mounts")]
    assert restored[0].detail.startswith("not signed (sha256:")
    assert (fresh / "pip" / "index").read_text() == "a\n"
    around = Around((PIP,), SETTINGS, store, Names(("feature-x",)), signing=signing)
    assert [o.action for o in around.restore(fake_docker(tmp_path, tmp_path / "b3"))] == ["refused"]
    assert not (tmp_path / "b3" / "pip" / "index").exists()
