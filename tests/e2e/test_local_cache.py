"""A local cache on a laptop, the way a new user meets it: `cacheport doctor` first, then the README's build
command, then `cacheport build`; and a directory BuildKit would fail the build on (issue 23, findings 1 and 12)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .harness import RAN, Harness, clean_environ

EMPTY_INDEX = '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'
REFUSED = "local cache importer requires"


def cacheport(h: Harness, cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", *args], cwd=cwd, capture_output=True, text=True,
                          env={**clean_environ(), **h.docker_env, **env}, timeout=120)


def by_hand(h: Harness, ctx: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], str]:
    """`docker buildx build $(cacheport args) .`, with the flags one per line; and what args said."""
    flags = cacheport(h, ctx, "args", "--lines", env=env)
    assert flags.returncode == 0, flags.stderr
    out = ctx.parent / "by-hand-out"
    build = h.docker("buildx", "build", "--progress=plain", "--network=host", f"--output=type=local,dest={out}",
                     *flags.stdout.splitlines(), str(ctx), check=False)
    return build, flags.stderr


def test_doctor_before_the_first_build_leaves_no_trace_and_every_build_after_it_works(
        harness: Harness, tmp_path: Path) -> None:
    ctx = harness.project(tmp_path)
    xdg = tmp_path / "xdg"
    env = {"CACHEPORT_BACKEND": "local", "XDG_CACHE_HOME": str(xdg)}
    doctor = cacheport(harness, ctx, "doctor", env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "credentials" not in doctor.stdout and "✓ import: no cache in " in doctor.stdout
    assert not xdg.exists() or not any(xdg.rglob("*")), sorted(xdg.rglob("*"))

    harness.prune()
    cold, said = by_hand(harness, ctx, env)
    assert cold.returncode == 0, cold.stderr
    assert said == "" and REFUSED not in cold.stderr
    assert "could not lock" not in cold.stderr  # buildx's warning on every first build: there was no directory
    assert ran(cold.stderr), "the first build ran its steps"

    harness.prune()
    warm, said = by_hand(harness, ctx, env)  # args swaps the last export in, then imports it
    assert warm.returncode == 0 and ran(warm.stderr) == [], warm.stderr
    assert said.startswith("cacheport: moved the last build's cache export into ")

    harness.prune()
    built = harness.build(ctx, env=env)
    assert built.code == 0 and built.ran == [], built.log
    assert REFUSED not in built.log and "could not lock" not in built.log

    other = {**env, "CACHEPORT_KEY": "other"}  # cacheport build as the first build after doctor, too
    assert cacheport(harness, ctx, "doctor", env=other).returncode == 0
    harness.prune()
    first = harness.build(ctx, env=other)
    assert first.code == 0 and first.ran, first.log
    assert "local cache import at" not in first.log and "warning" not in first.log.lower(), first.log
    assert "no cache there yet" in first.log


def ran(log: str) -> list[str]:
    return [line for line in log.splitlines() if RAN in line and "echo" not in line]


def test_a_directory_buildkit_would_fail_the_build_on_is_left_out_with_one_warning(
        harness: Harness, tmp_path: Path) -> None:
    ctx = harness.project(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (cache / "index.json").write_text(EMPTY_INDEX)  # what `cacheport doctor` used to leave
    env = {"CACHEPORT_BACKEND": "local", "CACHEPORT_LOCAL__SRC": str(cache)}
    raw = harness.docker("buildx", "build", "--network=host", f"--cache-from=type=local,src={cache}", str(ctx),
                         check=False)
    assert raw.returncode != 0 and REFUSED in raw.stderr  # the failure this is about, on this engine

    harness.prune()
    hand, said = by_hand(harness, ctx, env)
    assert hand.returncode == 0, hand.stderr
    assert said.count("cacheport: warning: not importing") == 1 and "prune --broken" in said, said

    harness.prune()
    built = harness.build(ctx, env=env)
    assert built.code == 0, built.log
    assert built.ran, "the build ran cold"
    assert built.log.count("cacheport: warning: not importing") == 1, built.log
    assert f"import missed  local {cache}: not passed to buildx: " in built.log
    harness.prune()
    healed = harness.build(ctx, env=env)  # the successful build's export replaced the broken directory
    assert healed.code == 0 and healed.ran == [], healed.log
    assert healed.rand == built.rand
