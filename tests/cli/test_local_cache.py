"""A local cache directory as BuildKit finds it: no command leaves one that fails a build, and args, build,
doctor, status and prune each see one that would (issue 23, finding 1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cacheport.config import load_config
from cacheport.context import Context
from cacheport.entry import CacheEntry
from cacheport.kit import layout_store
from cacheport.ops.checks import store_checks
from cacheport.ops.preflight import import_checks, layout_problem, usable
from cacheport.ops.rotate import promote
from cacheport.plan import Plan, build_plan
from cacheport.plugins import Plugins
from cacheport.records import Swap
from tests.fakes.caches import local_cache
from tests.fakes.hostile import assert_clean, base_env, run_cli

EMPTY_INDEX = '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- nothing cacheport does leaves a layout BuildKit refuses ------------------------------------------------------

def test_doctor_on_a_local_cache_writes_nothing_and_asks_for_no_credentials(tmp_path: Path) -> None:
    fresh = tmp_path / "home" / ".cache" / "cacheport" / "app" / "default"
    checks = store_checks(layout_store(str(fresh)), "local")
    assert [(c.name, c.ok) for c in checks] == [("local", True)]
    assert "credentials" not in {c.name for c in checks}
    assert files(tmp_path) == []
    existing = tmp_path / "existing"
    local_cache(existing)
    before = {p: p.read_bytes() for p in existing.rglob("*") if p.is_file()}
    assert all(c.ok for c in store_checks(layout_store(str(existing)), "local"))
    assert {p: p.read_bytes() for p in existing.rglob("*") if p.is_file()} == before


def test_deleting_the_last_name_removes_the_layout_instead_of_leaving_an_empty_index(tmp_path: Path) -> None:
    kept = tmp_path / "made-by-someone-else"
    kept.mkdir()
    layout = local_cache(kept / "cache")
    (kept / "cache" / "notes.txt").write_text("mine")
    assert layout.delete("latest")
    assert files(kept) == ["cache", "cache/notes.txt"]  # not ours: stays
    fresh = local_cache(tmp_path / "a" / "b")
    assert fresh.delete("latest")
    assert not (tmp_path / "a").exists()  # every directory this layout made went with it


# --- what BuildKit can import -------------------------------------------------------------------------------------

def write_index(directory: Path, manifests: list[dict[str, object]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))


def test_what_buildkit_can_import(tmp_path: Path) -> None:
    good = tmp_path / "good"
    layout = local_cache(good, "web")
    digest = layout.manifest_digest("web")
    assert layout_problem(str(good), "web") is None
    assert layout_problem(str(good), digest=digest) is None
    other = layout_problem(str(good))
    assert other is not None and other.broken and "names no cache 'latest' (it has only 'web')" in other.reason

    missing = layout_problem(str(tmp_path / "nowhere"))
    assert missing is not None and not missing.broken and missing.reason == f"no cache in {tmp_path / 'nowhere'} yet"
    (tmp_path / "empty").mkdir()
    empty_dir = layout_problem(str(tmp_path / "empty"))
    assert empty_dir is not None and not empty_dir.broken

    (tmp_path / "doctor-left").mkdir()
    (tmp_path / "doctor-left" / "index.json").write_text(EMPTY_INDEX)
    empty_index = layout_problem(str(tmp_path / "doctor-left"))
    assert empty_index is not None and empty_index.broken and empty_index.removable
    assert empty_index.reason.endswith("names no cache 'latest' (it is empty)")

    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "index.json").write_text("{nope")
    garbage = layout_problem(str(tmp_path / "garbage"))
    assert garbage is not None and garbage.removable and "not a JSON OCI index" in garbage.reason

    no_blob = tmp_path / "no-blob"
    write_index(no_blob, [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "0" * 64,
                           "size": 2, "annotations": {"org.opencontainers.image.ref.name": "latest"}}])
    gone = layout_problem(str(no_blob))
    assert gone is not None and gone.removable and "is missing" in gone.reason

    (tmp_path / "a-file").write_text("x")
    not_dir = layout_problem(str(tmp_path / "a-file"))
    assert not_dir is not None and not_dir.broken and not not_dir.removable


def test_buildkit_takes_a_named_entry_only_and_the_containerd_name_first(tmp_path: Path) -> None:
    layout = local_cache(tmp_path / "c")
    manifest = json.loads((tmp_path / "c" / "index.json").read_text())["manifests"][0]
    unnamed = {k: v for k, v in manifest.items() if k != "annotations"}
    write_index(tmp_path / "c", [unnamed])
    assert layout.names() == ["latest"]  # cacheport reads an unnamed entry as latest, but BuildKit never takes one
    problem = layout_problem(str(tmp_path / "c"))
    assert problem is not None and problem.broken
    write_index(tmp_path / "c", [{**unnamed, "annotations": {"io.containerd.image.name": "latest"}}])
    assert layout_problem(str(tmp_path / "c")) is None


def test_usable_leaves_out_exactly_the_local_imports_buildkit_cannot_use(tmp_path: Path) -> None:
    local_cache(tmp_path / "good")
    good = CacheEntry("local", {"src": str(tmp_path / "good")})
    missing = CacheEntry("local", {"src": str(tmp_path / "missing")})
    registry = CacheEntry("registry", {"ref": "127.0.0.1:1/app/cache:main"})
    plan = Plan(Context("local", "app"), "local", imports=(missing, registry, good), exports=())
    kept, held = usable(plan)
    assert kept.imports == (registry, good)
    assert [(e, p.broken) for e, p in held] == [(missing, False)]
    assert usable(kept) == (kept, [])
    checks = import_checks(plan)
    assert [(c.name, c.ok) for c in checks] == [("import", True), ("import", True)]
    (tmp_path / "missing").mkdir()
    (tmp_path / "missing" / "index.json").write_text(EMPTY_INDEX)
    failed = [c for c in import_checks(plan) if not c.ok]
    assert len(failed) == 1 and failed[0].fix == "`cacheport prune --broken --yes`"
    assert failed[0].detail.startswith(f"{tmp_path / 'missing'}: its index.json names no cache 'latest'")


# --- the commands ---------------------------------------------------------------------------------------------------

@pytest.fixture
def laptop(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    """A laptop with no CI, a local cache under ``--set src``, and the cache directory's path."""
    env = base_env(tmp_path)
    cache = tmp_path / "cache-dir"
    return env, tmp_path / "work", cache


def cli(laptop: tuple[dict[str, str], Path, Path], *argv: str):  # type: ignore[no-untyped-def]
    env, work, cache = laptop
    result = run_cli([argv[0], "-b", "local", "--set", f"src={cache}", *argv[1:]], env, work)
    assert_clean(result)
    return result


def test_args_leaves_out_an_import_that_would_fail_the_build_and_says_so_once(laptop) -> None:  # type: ignore[no-untyped-def]
    _env, _work, cache = laptop
    first = cli(laptop, "args")
    assert first.code == 0 and "--cache-from" not in first.out and f"--cache-to=type=local,dest={cache}.new" in first.out
    assert first.err == ""  # no cache yet is no news
    cache.mkdir()
    (cache / "index.json").write_text(EMPTY_INDEX)
    broken = cli(laptop, "args")
    assert broken.code == 0 and "--cache-from" not in broken.out
    assert broken.err == (f"cacheport: warning: not importing {cache}: its index.json names no cache 'latest' "
                          "(it is empty); fix: `cacheport prune --broken --yes`\n")
    (cache / "index.json").unlink()
    cache.rmdir()
    local_cache(Path(f"{cache}.new"))  # a finished export a hand-run build left: swapped in first, then imported
    warm = cli(laptop, "args")
    assert f"--cache-from=type=local,src={cache}" in warm.out and warm.err.startswith("cacheport: moved ")


def test_args_reads_a_local_cache_s_index_without_loading_the_store(tmp_path: Path) -> None:
    """`cacheport args` looks at a local cache before every build: with the index alone, not the OCI store."""
    import subprocess
    import sys

    cache = tmp_path / "cache-dir"
    local_cache(cache)
    probe = ("import sys\nfrom cacheport.cli import main\n"
             f"try:\n    main(['args', '-b', 'local', '--set', {f'src={cache}'!r}])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith('cacheport.oci')))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=base_env(tmp_path),
                         cwd=tmp_path / "work", check=True)
    assert f"--cache-from=type=local,src={cache}" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "['cacheport.oci', 'cacheport.oci.index']"


def test_status_and_prune_see_and_remove_a_directory_builds_cannot_import(laptop) -> None:  # type: ignore[no-untyped-def]
    _env, _work, cache = laptop
    cache.mkdir()
    (cache / "index.json").write_text(EMPTY_INDEX)
    (cache / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    status = cli(laptop, "status")
    assert status.code == 0 and "builds can't import from it" in status.out and "prune --broken --yes" in status.out
    as_json = json.loads(cli(laptop, "status", "--format", "json").out)
    assert as_json["directory"]["problem"].endswith("names no cache 'latest' (it is empty)")
    named = cli(laptop, "prune", "latest", "--yes")  # what a user tries first
    assert named.code == 2 and "no such tag" in named.err and "`cacheport prune --broken --yes` removes it" in named.err
    dry = cli(laptop, "prune", "--broken")
    assert dry.code == 0 and dry.out.startswith(f"would remove {cache}: ") and (cache / "index.json").exists()
    done = cli(laptop, "prune", "--broken", "--yes")
    assert done.code == 0 and done.out.startswith(f"removed {cache}: ") and not cache.exists()
    assert cli(laptop, "prune", "--broken").out == f"nothing to remove: no cache in {cache} yet\n"
    local_cache(cache)
    assert cli(laptop, "prune", "--broken", "--yes").out == "nothing to remove: builds can import from it\n"
    assert (cache / "index.json").exists()
    alone = cli(laptop, "prune", "--broken", "latest")
    assert alone.code == 2 and "--broken goes alone" in alone.err


def test_prune_broken_leaves_a_directory_a_build_is_moving_into_place(laptop) -> None:  # type: ignore[no-untyped-def]
    """The race: a build's finished export moved into place between prune's look and its removal would be lost.
    prune takes the lock the move holds, so while a build holds it nothing is removed; once free, it is."""
    import fcntl

    from cacheport.ops.rotate import held

    _env, _work, cache = laptop
    cache.mkdir()
    (cache / "index.json").write_text(EMPTY_INDEX)
    (cache / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    with open(cache.with_name(cache.name + ".lock"), "w") as lock:  # what promote() holds while it moves
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = run_cli(["prune", "-b", "local", "--set", f"src={cache}", "--broken", "--yes"], *laptop[:2])
        assert busy.code == 1 and busy.err == (f"cacheport: error: a build is moving a cache into {cache} right "
                                               "now: nothing removed; run again once it is done\n"), busy.err
        assert (cache / "index.json").read_text() == EMPTY_INDEX
        with held(cache) as mine:
            assert not mine
    done = cli(laptop, "prune", "--broken", "--yes")
    assert done.code == 0 and done.out.startswith(f"removed {cache}: ") and not cache.exists()


def test_prune_broken_is_for_directories_only(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    result = run_cli(["prune", "--broken", "-b", "registry", "--set", "ref=127.0.0.1:1/app/cache"], env,
                     tmp_path / "work")
    assert_clean(result)
    assert result.code == 2 and "--broken is for a local cache directory" in result.err


def _recording_docker(path: Path, argv_file: Path) -> None:
    """A docker whose builder inspection fails and whose build records its arguments and succeeds."""
    path.write_text("#!/bin/sh\n"
                    f'if [ "$1 $2" = "buildx build" ]; then printf "%s\\n" "$@" > {argv_file}; exit 0; fi\n'
                    "exit 1\n")
    path.chmod(0o755)


def test_build_leaves_out_a_broken_import_and_reports_it(laptop, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env, _work, cache = laptop
    argv = tmp_path / "argv"
    _recording_docker(Path(env["CACHEPORT_DOCKER"]), argv)
    cache.mkdir()
    (cache / "index.json").write_text(EMPTY_INDEX)
    result = cli(laptop, "build", ".")
    assert result.code == 0, result
    passed = argv.read_text().splitlines()
    assert not [a for a in passed if a.startswith("--cache-from")]
    assert f"--cache-to=type=local,dest={cache}.new,mode=max,ignore-error=true" in passed
    warnings = [line for line in result.err.splitlines() if "not importing" in line]
    assert warnings == [f"cacheport: warning: not importing {cache}: its index.json names no cache 'latest' "
                        "(it is empty); fix: `cacheport prune --broken --yes`"]
    assert f"import missed  local {cache}: not passed to buildx: " in result.err


# --- one cache per project, not per directory name (finding 10) ---------------------------------------------------

def local_plan(builtins: Plugins, ctx: Context, cache_home: Path, **options: str) -> Plan:
    cli = [("backend", "local", "--backend")] + [(f"local.{k}", v, f"--set {k}=") for k, v in options.items()]
    return build_plan(load_config(cache_home, {"XDG_CACHE_HOME": str(cache_home)}, cli=cli), ctx, builtins)


def test_two_checkouts_with_one_name_get_their_own_cache_and_clones_of_one_remote_share_one(
        builtins: Plugins, tmp_path: Path) -> None:
    def src(**where: str) -> str:
        found = local_plan(builtins, Context("local", "app", **where), tmp_path).imports[0].get("src")
        assert found is not None
        return found

    mine, theirs = src(root="/home/me/work/app"), src(root="/home/me/other/app")
    assert mine != theirs
    assert Path(mine).parent.name.startswith("app-") and Path(mine).name == "default"  # still readable
    https = src(root="/a/app", remote="git.example.com/group/app")
    assert https == src(root="/b/app", remote="git.example.com/group/app")  # a second clone is warm too
    assert https != src(root="/a/app", remote="git.example.com/fork/app")
    assert src() == str(tmp_path / "cacheport" / "app" / "default")  # nothing known: the name alone, as before


def test_the_cache_under_the_old_name_moves_once_before_a_build_reads_it(builtins: Plugins, tmp_path: Path) -> None:
    ctx = Context("local", "app", root="/home/me/app")
    plan = local_plan(builtins, ctx, tmp_path)
    src = plan.imports[0].get("src")
    older = str(tmp_path / "cacheport" / "app" / "default")
    assert plan.swaps[0] == Swap(new=older, current=str(src), replace=False)
    assert plan.swaps[1] == Swap(new=f"{src}.new", current=str(src))
    assert all(s.replace for s in local_plan(builtins, ctx, tmp_path, src=str(tmp_path / "mine")).swaps)

    local_cache(Path(older))
    assert promote(plan.swaps[0])
    assert not Path(older).exists() and layout_problem(str(src)) is None
    local_cache(Path(older), "other")  # another checkout called app, still on an old version: its cache stays
    assert not promote(plan.swaps[0]) and Path(older).exists()


def test_args_and_build_move_the_old_cache_and_import_it(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    work = tmp_path / "work"
    older = tmp_path / "cache" / "cacheport" / "work" / "default"
    local_cache(older)
    result = run_cli(["args"], env, work)
    assert_clean(result)
    new = Path(result.out.split("--cache-from=type=local,src=", 1)[1].split()[0])
    assert new != older and new.name == "default" and new.parent.name.startswith("work-")
    assert result.err == f"cacheport: moved the cache from {older}, where earlier versions of cacheport kept it, " \
                         f"to {new}\n"
    assert not older.exists() and layout_problem(str(new)) is None
    again = run_cli(["args"], env, work)
    assert again.err == "" and f"--cache-from=type=local,src={new}" in again.out

    shutil.rmtree(new)
    local_cache(older)
    argv = tmp_path / "argv"
    _recording_docker(Path(env["CACHEPORT_DOCKER"]), argv)
    built = run_cli(["build", "."], env, work)
    assert built.code == 0, built
    assert f"--cache-from=type=local,src={new}" in argv.read_text().splitlines()
    assert f"cacheport: moved the cache from {older}" in built.err


def test_explain_shows_the_move_from_the_old_place_before_the_build_and_the_rotation_after(
        builtins: Plugins, tmp_path: Path) -> None:
    from cacheport.render import as_dict, explain

    plan = local_plan(builtins, Context("local", "app", root="/home/me/app"), tmp_path)
    text = explain(plan)
    before, after = text.index("before the build, once"), text.index("after a successful build:")
    assert before < after
    assert f"move {tmp_path / 'cacheport' / 'app' / 'default'} to " in text[before:after]
    assert [s["replace"] for s in as_dict(plan)["swaps"]] == [False, True]


def test_a_layout_that_cannot_be_read_is_left_out_with_a_warning_not_a_traceback(laptop) -> None:  # type: ignore[no-untyped-def]
    _env, _work, cache = laptop
    local_cache(cache)
    shutil.rmtree(cache / "blobs")
    (cache / "blobs").write_text("a file where BuildKit keeps its blobs")
    problem = layout_problem(str(cache))
    assert problem is not None and problem.broken and "can't be read" in problem.reason
    result = cli(laptop, "args")
    assert result.code == 0 and "--cache-from" not in result.out
    assert result.err.startswith(f"cacheport: warning: not importing {cache}: {cache} can't be read: ")


def test_rotate_with_nothing_to_move_says_so_in_one_line(tmp_path: Path) -> None:
    import subprocess

    env = base_env(tmp_path)
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    # No rotation of exports, so the one move planned is from where earlier versions kept the cache: empty here.
    result = run_cli(["rotate", "-b", "local", "--set", "rotate=false"], env, work)
    assert_clean(result)
    older = tmp_path / "cache" / "cacheport" / "work" / "default"
    assert result.code == 0 and result.out == f"nothing to move: no cache waits at {older}\n" and result.err == ""
    local_cache(older)
    moved = run_cli(["rotate", "-b", "local", "--set", "rotate=false"], env, work)
    assert moved.out.startswith(f"moved the cache from {older}, where earlier versions of cacheport kept it, to ")
