"""The docs can't drift: the site's pages, the code they show, the configuration reference, and their commands.

Blocks are marked by an HTML comment on the line before them (docs/development.md, "The docs"):
``<!-- runnable[: OPTIONS] -->`` runs a shell block, ``<!-- runnable: write FILE -->`` provides a file to the
page's later runnable blocks, and ``<!-- same-as: PATH -->`` must equal a file of this repository.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import yaml

from cacheport.config import GLOBAL_OPTIONS, MIGRATION_OPTIONS, MOUNTS_OPTIONS, env_name
from tests.e2e.conftest import default_harness, servers  # noqa: F401  (e2e servers, for `harness` blocks)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
MARKER = re.compile(r"^\s*<!--\s*(runnable|same-as)\b:?\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
SHELLS = ("sh", "bash", "shell")
DOCKERFILE = "FROM scratch\nCOPY hello.txt /\n"


@attrs.frozen
class Block:
    """One marked fenced block.

    Attributes:
        page: the page, relative to docs/.
        section: which of the page's sections (split at every heading) it is in.
        line: the 1-based line of its opening fence.
        lang: the fence's language.
        text: the content, without the fence's indentation, ending in a newline.
        kind: ``run``, ``write`` or ``same-as``.
        path: the file a ``write`` block writes, or the file a ``same-as`` block must equal.
        harness: needs the end-to-end servers.
        needs: a backend that must be installed.
        exit: the exit status to expect.
        expect: strings the output must contain.
    """

    page: str
    section: int
    line: int
    lang: str
    text: str
    kind: str
    path: str = ""
    harness: bool = False
    needs: str = ""
    exit: int = 0
    expect: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def parse(page: Path) -> tuple[list[Block], list[str]]:
    """The page's marked blocks, and what is wrong with its markers."""
    name = page.relative_to(DOCS).as_posix()
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    section, in_fence = 0, False
    for i, line in enumerate(lines):
        if FENCE.match(line):
            in_fence = not in_fence
        elif line.startswith("#") and not in_fence:
            section += 1
        marker = MARKER.match(line)
        if not marker:
            continue
        where = f"{name}:{i + 1}"
        fence = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if not fence:
            problems.append(f"{where}: a marker must be on the line just before a fenced block")
            continue
        indent, ticks, lang = fence.groups()
        if indent:
            problems.append(f"{where}: mkdocs renders an indented fence (in a list) as text; move the block out")
        end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == ticks), None)
        if end is None:
            problems.append(f"{where}: the block never closes")
            continue
        text = "".join(f"{body[len(indent):] if body.startswith(indent) else body.lstrip()}\n"
                       for body in lines[i + 2:end])
        common = {"page": name, "section": section, "line": i + 2, "lang": lang, "text": text}
        kind, words = marker.group(1), shlex.split(marker.group(2))
        if kind == "same-as":
            if len(words) != 1:
                problems.append(f"{where}: same-as takes one path")
            else:
                blocks.append(Block(kind="same-as", path=words[0], **common))
            continue
        if words[:1] == ["write"]:
            if len(words) != 2:
                problems.append(f"{where}: write takes one file name")
            else:
                blocks.append(Block(kind="write", path=words[1], **common))
            continue
        if lang not in SHELLS:
            problems.append(f"{where}: only {', '.join(SHELLS)} blocks run, not {lang!r}")
            continue
        options: dict[str, object] = {"expect": []}
        for word in words:
            key, eq, value = word.partition("=")
            if word == "harness":
                options["harness"] = True
            elif key == "needs" and eq:
                options["needs"] = value
            elif key == "exit" and eq and value.isdigit():
                options["exit"] = int(value)
            elif key == "expect" and eq:
                options["expect"].append(value)  # type: ignore[attr-defined]
            else:
                problems.append(f"{where}: unknown runnable option {word!r}")
        options["expect"] = tuple(options["expect"])  # type: ignore[arg-type]
        blocks.append(Block(kind="run", **common, **options))  # type: ignore[arg-type]
    return blocks, problems


PARSED = {page.relative_to(DOCS).as_posix(): parse(page) for page in PAGES}
BLOCKS = [block for blocks, _ in PARSED.values() for block in blocks]
RUNNABLE = [
    pytest.param(b, id=b.id, marks=[pytest.mark.e2e] if b.harness else [])
    for b in BLOCKS if b.kind == "run"
]
SAME_AS = [pytest.param(b, id=b.id) for b in BLOCKS if b.kind == "same-as"]


def test_markers_are_well_formed() -> None:
    assert [p for _, problems in PARSED.values() for p in problems] == []


def test_the_docs_have_runnable_blocks_of_each_kind() -> None:
    runs = [b for b in BLOCKS if b.kind == "run"]
    assert any(not b.harness for b in runs) and any(b.harness for b in runs)
    assert any(b.kind == "write" for b in BLOCKS)


# The site


def nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def test_every_page_is_in_the_nav_once_and_every_nav_entry_exists() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs" and config["theme"]["name"] == "mkdocs"
    nav = nav_pages(config["nav"])
    assert len(nav) == len(set(nav))
    assert set(nav) == {page.relative_to(DOCS).as_posix() for page in PAGES}


def test_the_docs_env_is_in_tox_default_envlist() -> None:
    import configparser

    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    assert "docs" in [e.strip() for e in tox["tox"]["envlist"].split(",")]
    assert "mkdocs build --strict" in tox["testenv:docs"]["commands"]
    assert re.search(r"^mkdocs==[\d.]+$", tox["testenv:docs"]["deps"], re.M)


def test_the_readme_points_at_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "](docs/index.md)" in readme


# Code shown in the docs is the code in the repository


@pytest.mark.parametrize("block", SAME_AS)
def test_a_same_as_block_is_the_file(block: Block) -> None:
    assert block.text == (ROOT / block.path).read_text(encoding="utf-8"), f"{block.id} differs from {block.path}"


def test_the_plugin_guide_shows_the_example_plugins_as_they_are() -> None:
    shown = [b for b in BLOCKS if b.page == "plugins.md" and b.kind == "same-as"]
    assert [(b.path, b.lang) for b in shown][:2] == [
        ("plugins/cacheport-example/src/cacheport_example/acme.py", "python"),
        ("plugins/cacheport-example/src/cacheport_example/__init__.py", "python")]
    assert len((ROOT / shown[0].path).read_text().splitlines()) <= 25  # a registry-type backend in about 20 lines


# The configuration reference is the code's


def table(text: str, heading: str) -> dict[str, list[str]]:
    """The first markdown table under ``heading``: the first column (without backticks) to the row's cells."""
    section = text.split(heading + "\n", 1)[1]
    lines: list[str] = []
    for line in section.splitlines():
        if line.startswith("#") or (lines and not line.startswith("|")):
            break
        if line.startswith("|"):
            lines.append(line)
    rows: dict[str, list[str]] = {}
    for line in lines[2:]:  # after the header and the |---| line
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows[cells[0].strip("`")] = cells
    return rows


def test_global_keys_in_the_configuration_reference_are_the_code_s() -> None:
    rows = table((DOCS / "configuration.md").read_text(), "### Global keys")
    assert set(rows) == {o.name for o in GLOBAL_OPTIONS}
    for option in GLOBAL_OPTIONS:
        assert rows[option.name][3] == f"`CACHEPORT_{option.name.upper().replace('-', '_')}`"


def test_the_mounts_table_in_the_configuration_reference_is_the_code_s() -> None:
    rows = table((DOCS / "configuration.md").read_text(), "### The mounts table")
    assert set(rows) == {o.name for o in MOUNTS_OPTIONS}
    for option in MOUNTS_OPTIONS:
        _, _kind, default, env, _meaning = rows[option.name]
        assert env == f"`{env_name('mounts', option.name)}`"
        assert default == f"`{str(option.default).lower() if option.type is bool else option.default}`"


def test_the_migration_table_in_the_configuration_reference_is_the_code_s() -> None:
    rows = table((DOCS / "configuration.md").read_text(), "### The migration table")
    assert set(rows) == {o.name for o in MIGRATION_OPTIONS}
    for option in MIGRATION_OPTIONS:
        _, kind, default, env, meaning = rows[option.name]
        assert env == f"`{env_name('migration', option.name)}`"
        assert default == (f"`{option.default}`" if option.default is not None else "none")
        for choice in option.choices:
            assert f"`{choice}`" in kind and f"`{choice}`" in meaning


SYMPTOMS = (
    "cold after switching backends",
    '"Cache export is not supported for the docker driver"',
    "gha cache entries are dropped silently",
    "400 MANIFEST_INVALID",
    "\"no branch is known here ... so the cache is named 'latest'\"",
    "A plugin failed to load",
    "`$(cacheport args)` refuses a value with spaces",
)


@pytest.mark.parametrize("symptom", SYMPTOMS)
def test_troubleshooting_has_a_section_per_symptom(symptom: str) -> None:
    headings = [line for line in (DOCS / "troubleshooting.md").read_text().splitlines() if line.startswith("## ")]
    assert any(symptom in h for h in headings), headings


# The commands shown in the docs run


@functools.cache
def installed_backends() -> frozenset[str]:
    from cacheport.plugins import load

    return frozenset(load({}).backends())


def clean_environ(home: Path, bin_dir: Path) -> dict[str, str]:
    drop = ("CACHEPORT_", "CI_", "GITLAB_", "GITHUB_", "ACTIONS_", "DOCKER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and k not in ("CI", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return env


def cacheport_shim(directory: Path) -> Path:
    """A ``cacheport`` command that runs this interpreter's cacheport, whatever else is on the PATH."""
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "cacheport"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m cacheport "$@"\n')
    shim.chmod(0o755)
    return directory


def project_dir(tmp_path: Path) -> Path:
    """What a reader's checkout looks like: a git repository on main, named app."""
    work = tmp_path / "app"
    work.mkdir()
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "symbolic-ref", "HEAD", "refs/heads/main"], check=True)
    return work


@pytest.mark.parametrize("block", RUNNABLE)
def test_a_runnable_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if block.needs and block.needs not in installed_backends():
        pytest.skip(f"needs the {block.needs} backend, which is not installed")
    home = tmp_path / "home"
    home.mkdir()
    env = clean_environ(home, cacheport_shim(tmp_path / "bin"))
    work = project_dir(tmp_path)
    for earlier in BLOCKS:
        if (earlier.page, earlier.section, earlier.kind) == (block.page, block.section, "write") and (
                earlier.line < block.line):
            (work / earlier.path).write_text(earlier.text)
    if block.harness:
        docker_env = request.getfixturevalue("default_harness").docker_env
        env.update({k: v for k, v in docker_env.items() if k != "PATH"})
        env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{docker_env['PATH']}"
        (work / "Dockerfile").write_text(DOCKERFILE)
        (work / "hello.txt").write_text("hello\n")
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.text], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == block.exit, f"{block.id} exited {proc.returncode}:\n{block.text}\n{output}"
    for text in block.expect:
        assert text in output, f"{block.id}: {text!r} not in the output:\n{output}"
