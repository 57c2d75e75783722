from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import GITLAB_ENV
from tests.fakes.caches import local_cache
from tests.fakes.plugins import BROKEN, make_dist


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=60)


def test_console_script_is_installed() -> None:
    exe = shutil.which("cacheport", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    assert exe is not None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("cacheport, version ")


def local_dir(tmp_path: Path) -> Path:
    """The local backend's default directory for the ``clean_env`` working directory (no git): the
    directory's name beside a hash of its path."""
    work = str((tmp_path / "work").resolve())
    return tmp_path / "xdg" / "cacheport" / f"work-{hashlib.sha256(work.encode()).hexdigest()[:8]}" / "default"


def test_no_config_no_ci_prints_local_flags(clean_env: dict[str, str], tmp_path: Path) -> None:
    out = run("args", env={**clean_env, "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert out.returncode == 0, out.stderr
    base = local_dir(tmp_path)
    export = f"--cache-to=type=local,dest={base}.new,mode=max,ignore-error=true"
    assert out.stdout.split() == [export]  # no cache there yet: nothing to import, and nothing said
    assert out.stderr == ""
    local_cache(base)
    warm = run("args", env={**clean_env, "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert warm.stdout.split() == [f"--cache-from=type=local,src={base}", export]


def test_args_promotes_a_finished_local_export(clean_env: dict[str, str], tmp_path: Path) -> None:
    base = local_dir(tmp_path)
    new = Path(f"{base}.new")
    new.mkdir(parents=True)
    (new / "index.json").write_text("{}")
    out = run("args", env={**clean_env, "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert out.returncode == 0, out.stderr
    assert (base / "index.json").is_file() and not new.exists()
    assert "moved the last build's cache export" in out.stderr


def test_an_unfinished_local_export_is_left_alone(clean_env: dict[str, str], tmp_path: Path) -> None:
    base = local_dir(tmp_path)
    (base).mkdir(parents=True)
    (base / "index.json").write_text("old")
    Path(f"{base}.new").mkdir()
    out = run("rotate", env={**clean_env, "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert out.returncode == 0, out.stderr
    # Another build may still be writing it; the cache in use stays as it was.
    assert (base / "index.json").read_text() == "old" and Path(f"{base}.new").is_dir()


def test_rotation_never_replaces_a_directory_that_is_not_a_cache(clean_env: dict[str, str], tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    new = tmp_path / "precious.new"
    new.mkdir()
    (new / "index.json").write_text("{}")
    out = run("args", "--backend", "local", "--set", f"src={precious}", env=clean_env)
    assert out.returncode == 0, out.stderr
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_gitlab_job_with_pyproject(clean_env: dict[str, str]) -> None:
    Path("pyproject.toml").write_text('[project]\nname = "app"\n[tool.cacheport]\nbackend = "gitlab"\n')
    out = run("args", "--lines", env={**clean_env, **GITLAB_ENV, "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "develop"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "--cache-from=type=registry,ref=registry.example.com/group/app/cache:feature-login-form",
        "--cache-from=type=registry,ref=registry.example.com/group/app/cache:develop",
        "--cache-from=type=registry,ref=registry.example.com/group/app/cache:main",
        "--cache-to=type=registry,ref=registry.example.com/group/app/cache:feature-login-form,mode=max,ignore-error=true,image-manifest=true,oci-mediatypes=true",
    ]


@pytest.mark.parametrize(
    "files, args, message",
    [
        ({"cacheport.toml": '[registry]\nref = "r"\nmode = "maximum"\n'}, ["args", "-b", "registry"],
         "cacheport: error: cacheport.toml [registry] mode = 'maximum': allowed values are min, max\n"),
        ({}, ["args", "--backend", "nope"], "cacheport: error: --backend: unknown backend 'nope'; available: "),
        ({"cacheport.toml": "backend = [\n"}, ["explain"], "cacheport: error: cacheport.toml: not valid TOML"),
        ({}, ["args", "--set", "novalue"], "--set"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(clean_env: dict[str, str], files: dict[str, str],
                                                          args: list[str], message: str) -> None:
    for name, text in files.items():
        Path(name).write_text(text)
    before = sorted(p.name for p in Path().iterdir())
    out = run(*args, "-o", "out.env", env=clean_env) if args[0] == "args" else run(*args, env=clean_env)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout == ""
    assert sorted(p.name for p in Path().iterdir()) == before
    if "error:" in message:
        assert len(out.stderr.strip().splitlines()) == 1


def test_verbose_shows_the_traceback(clean_env: dict[str, str]) -> None:
    out = run("args", "--backend", "nope", "-v", env=clean_env)
    assert out.returncode == 2
    assert "Traceback" in out.stderr and "UnknownBackendError" in out.stderr


def test_broken_plugin_warns_and_the_cli_still_works(clean_env: dict[str, str], tmp_path: Path) -> None:
    site = make_dist(tmp_path / "site", "cacheport-broken", "cacheport_broken", "broken", BROKEN)
    env = {**clean_env, "PYTHONPATH": str(site)}
    out = run("args", env=env)
    assert out.returncode == 0
    assert "--cache-to=type=local" in out.stdout
    assert "plugin 'broken' from cacheport-broken 0.1 failed to load and was skipped: ModuleNotFoundError" in out.stderr
    assert "Traceback" not in out.stderr
    assert "Traceback" in run("args", "-v", env=env).stderr
    strict = run("args", env={**env, "CACHEPORT_STRICT_PLUGINS": "1"})
    assert strict.returncode != 0 and "ModuleNotFoundError" in strict.stderr
    listing = run("plugins", "--format", "json", env=env)
    rows = {r["name"]: r for r in json.loads(listing.stdout)}
    assert rows["broken"]["error"].startswith("ModuleNotFoundError")
    assert rows["registry"]["backends"] == ["registry"] and rows["registry"]["source"] == "built-in"


def test_plugins_table_lists_the_example_plugin(clean_env: dict[str, str]) -> None:
    out = run("plugins", env=clean_env)
    row = next(line for line in out.stdout.splitlines() if line.startswith("shared-dir"))
    assert row.split() == ["shared-dir", "cacheport-example", "0.1.0", "-", "entry", "point", "shared-dir"]


def test_explain_shows_sources_and_hides_nothing_it_should_not(clean_env: dict[str, str]) -> None:
    Path("cacheport.toml").write_text('backend = "registry"\n[registry]\nref = "r.example/app"\n')
    out = run("explain", "--set", "mode=min", env={**clean_env, "CACHEPORT_KEY": "web"})
    assert out.returncode == 0, out.stderr
    assert re.search(r'\n  registry\.ref +"r\.example/app" +← cacheport\.toml \[registry\] ref\n', out.stdout)
    assert re.search(r'\n  registry\.mode +"min" +← --set mode\n', out.stdout)
    assert re.search(r'\n  key +"web" +← CACHEPORT_KEY\n', out.stdout)
    doc = json.loads(run("explain", "--format", "json", env=clean_env).stdout)
    assert doc["settings"]["backend"] == {"value": "registry", "source": "file", "from": "cacheport.toml backend"}


def test_explain_lists_the_mounts_table(clean_env: dict[str, str]) -> None:
    """[mounts] with its sources, in text and JSON; its sizes and image only while mounts are on; a bad value is
    explain's one line and exit 2 (it is build's and mounts' too), never args' business."""
    Path("cacheport.toml").write_text('backend = "local"\n[mounts]\nmax-size = "1MiB"\n')
    out = run("explain", "--set", "mounts.helper-image=mirror.example/busybox:1", env=clean_env)
    assert out.returncode == 0, out.stderr
    assert re.search(r'\n  mounts\.enabled +true +← default\n', out.stdout), out.stdout
    assert re.search(r'\n  mounts\.helper-image +"mirror\.example/busybox:1" +← --set mounts\.helper-image\n',
                     out.stdout), out.stdout
    assert re.search(r'\n  mounts\.max-size +1048576 +← cacheport\.toml \[mounts\] max-size\n', out.stdout)
    assert re.search(r'\n  mounts\.max-total +4294967296 +← default\n', out.stdout)
    doc = json.loads(run("explain", "--format", "json", env=clean_env).stdout)
    assert doc["settings"]["mounts.max-size"] == {"value": 1048576, "source": "file",
                                                  "from": "cacheport.toml [mounts] max-size"}
    off = run("explain", env={**clean_env, "CACHEPORT_MOUNTS": "off"}).stdout
    assert re.search(r"\n  mounts\.enabled +false +← CACHEPORT_MOUNTS\n", off), off
    assert "mounts.max-total" not in off and "mounts.max-size" in off  # set by hand: always shown
    Path("cacheport.toml").write_text('backend = "local"\n[mounts]\nmax-size = "lots"\n')
    bad = run("explain", env=clean_env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "max-size = 'lots'" in bad.stderr, bad.stderr
    assert run("args", env=clean_env).returncode == 0


def test_output_formats_write_files(clean_env: dict[str, str], tmp_path: Path) -> None:
    env = {**clean_env, **GITLAB_ENV}
    assert run("args", "--format", "dotenv", "-o", "cache.env", env=env).returncode == 0
    assert Path("cache.env").read_text().startswith("CACHEPORT_CACHE_FROM=type=registry,ref=registry.example.com/")
    assert Path("cache.env").stat().st_mode & 0o777 == 0o600
    gh = tmp_path / "gh_output"
    gh.write_text("earlier=1\n")
    out = run("args", "--format", "github", env={**env, "GITHUB_OUTPUT": str(gh)})
    assert out.returncode == 0 and out.stdout == ""
    text = gh.read_text()
    assert text.startswith("earlier=1\ncache-from<<ghadelimiter_")
    delimiter = text.splitlines()[1].split("<<")[1]
    assert len(delimiter) > 30 and text.count(delimiter) == 4
    bake = json.loads(run("args", "--format", "bake", "--target", "app", env=env).stdout)
    assert bake["target"]["app"]["cache-to"][0].endswith(":feature-login-form,mode=max,ignore-error=true,image-manifest=true,oci-mediatypes=true")


def test_backends_command(clean_env: dict[str, str]) -> None:
    out = run("backends", env=clean_env)
    assert {"gitlab", "local", "registry"} <= {line.split()[0] for line in out.stdout.splitlines()[1:] if line.strip()}
    one = run("backends", "gitlab", env=clean_env).stdout
    assert "${CI_REGISTRY_IMAGE}/cache" in one and "CACHEPORT_GITLAB__OPTION" in one
    doc = json.loads(run("backends", "--format", "json", env=clean_env).stdout)
    reg = next(b for b in doc if b["name"] == "registry")
    assert next(o for o in reg["options"] if o["name"] == "ref")["required"] is True


def test_help_has_examples(clean_env: dict[str, str]) -> None:
    for args in (["--help"], ["args", "--help"], ["explain", "--help"], ["plugins", "--help"], ["backends", "--help"]):
        out = run(*args, env=clean_env)
        assert out.returncode == 0 and "Examples:" in out.stdout, args


def test_args_imports_no_heavy_libraries(clean_env: dict[str, str]) -> None:
    probe = (
        "import sys\n"
        "from cacheport.cli import main\n"
        "try:\n    main(['args'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'python_on_whales', 'pydantic', 'httpx', 'requests', 'urllib3', 'rich'}\n"
        # a None entry is a module kept from loading (httpx's own CLI), not one that was loaded
        "print(sorted(heavy & {m.split('.')[0] for m, mod in sys.modules.items() if mod is not None}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=clean_env, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_httpx_is_loaded_without_its_own_command_line(clean_env: dict[str, str]) -> None:
    """httpx imports its CLI (rich, pygments) when they are installed; cacheport's commands keep it out."""
    probe = ("import sys\nimport cacheport.cli\nimport httpx\n"
             "print(sorted({'rich', 'pygments'} & {m.split('.')[0] for m, mod in sys.modules.items() if mod}),"
             " callable(httpx.main))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=clean_env, check=True)
    assert out.stdout.split() == ["[]", "True"]

RAISING_BACKEND = """
from cacheport import Backend, hookimpl
from cacheport.refs import branch_refs

def entries(request):
    return branch_refs("registry.example.com/app")   # a wrong call (no context), as a new plugin author makes it

@hookimpl
def cacheport_backends():
    return [Backend(name="oops", description="broken entries", options=[], entries=entries,
                    doctor=lambda request, environ: 1 / 0)]
"""
RENDERER = """
from cacheport import Renderer, hookimpl

@hookimpl
def cacheport_renderers():
    return [Renderer(name="jenkins", description="A Jenkins properties file",
                     render=lambda plan, options: "".join(f"CACHE_FROM={e.format()}\\n" for e in plan.imports))]
"""


def test_a_backend_whose_entries_raise_is_one_line_naming_its_plugin(clean_env: dict[str, str], tmp_path: Path) -> None:
    site = make_dist(tmp_path / "site", "cacheport-oops", "cacheport_oops", "oops", RAISING_BACKEND)
    env = {**clean_env, "PYTHONPATH": str(site)}
    out = run("args", "--backend", "oops", env=env)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("cacheport: error: backend 'oops' (plugin 'oops' from cacheport-oops 0.1) failed in "
                                 "entries: TypeError: ")
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" in run("args", "--backend", "oops", "-v", env=env).stderr
    strict = run("args", "--backend", "oops", env={**env, "CACHEPORT_STRICT_PLUGINS": "1"})
    assert strict.returncode == 1 and "Traceback" in strict.stderr and "TypeError" in strict.stderr


def test_a_renderer_plugin_is_a_format_in_args_and_its_help(clean_env: dict[str, str], tmp_path: Path) -> None:
    site = make_dist(tmp_path / "site", "cacheport-jenkins", "cacheport_jenkins", "jenkins", RENDERER)
    env = {**clean_env, "PYTHONPATH": str(site), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    helped = run("args", "--help", env=env).stdout
    assert "jenkins" in helped.split("--format", 1)[1].splitlines()[0]  # the choices next to the option
    assert "A Jenkins properties file" in helped
    local_cache(local_dir(tmp_path))
    out = run("args", "--format", "jenkins", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"CACHE_FROM=type=local,src={local_dir(tmp_path)}\n"
    listing = {r["name"]: r for r in json.loads(run("plugins", "--format", "json", env=env).stdout)}
    assert listing["jenkins"]["formats"] == ["jenkins"] and listing["renderers"]["formats"][0] == "args"
    bad = run("args", "--format", "jenkin", env=env)
    assert bad.returncode == 2 and "unknown output format 'jenkin' (did you mean 'jenkins'?)" in bad.stderr


def test_a_broken_plugin_is_warned_about_once_per_command(clean_env: dict[str, str], tmp_path: Path) -> None:
    site = make_dist(tmp_path / "site", "cacheport-broken", "cacheport_broken", "broken", BROKEN)
    out = run("status", env={**clean_env, "PYTHONPATH": str(site), "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("plugin 'broken'") == 1
    assert "no such directory yet" in out.stdout  # status ran, with the broken plugin skipped


def test_a_cacheport_toml_with_a_tool_table_says_where_settings_go(clean_env: dict[str, str]) -> None:
    Path("cacheport.toml").write_text('[tool.cacheport]\nbackend = "registry"\n')
    out = run("args", env=clean_env)
    assert out.returncode == 2
    assert out.stderr == ("cacheport: error: cacheport.toml: [tool.cacheport] is for pyproject.toml; in cacheport.toml, "
                          'settings go at the top level (backend = "...", then [BACKEND] tables)\n')


def test_status_of_a_local_cache_not_made_yet_says_so(clean_env: dict[str, str], tmp_path: Path) -> None:
    out = run("status", env={**clean_env, "XDG_CACHE_HOME": str(tmp_path / "xdg")}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "no such directory yet" in out.stdout and str(tmp_path / "xdg") in out.stdout
    assert not (tmp_path / "xdg" / "cacheport").exists(), "status creates nothing"
