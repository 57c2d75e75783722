"""Documented commands as a reader runs them: in order, in one shell session, with their documented output checked.

What lives here: reading the steps out of a page's fenced blocks (markdown-it-py) and out of a command's
``--help`` examples (click), a :class:`Session` that runs steps one after another the way one terminal would
(``cd`` and ``export`` carry over), and :func:`differs`, which holds output to the documented text with
doctest's ``...``. Which steps may fail, and the servers, are the test's business (tests/e2e/test_docs_run.py).
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs
from markdown_it import MarkdownIt

SHELLS = ("sh", "bash", "shell")
#: Where a documented command runs: the reader's checkout of their own project, which builds without a network.
PROJECT_FILES = {
    "Dockerfile": "FROM scratch\nCOPY hello.txt /\n",
    "hello.txt": "hello\n",
    "docker-bake.hcl": 'group "default" {\n  targets = ["app"]\n}\n\ntarget "app" {\n  context = "."\n}\n',
}
#: What the docs write for the reader's home directory.
HOME = "/home/you"
#: Variables of the shell itself, never carried from one step to the next.
SHELL_OWN = ("_", "SHLVL", "OLDPWD", "PWD")
COMMENT = re.compile(r"\s+#\s.*$")


@attrs.frozen
class Step:
    """One command a reader types.

    Attributes:
        source: where it is documented: a page relative to the repository (``docs/getting-started.md``), or
            ``cacheport CMD --help``.
        line: the page's 1-based line, or the example's number in the ``--help`` text.
        command: the command as written (continuation lines joined).
        block: the steps of one fenced block share it; the last of them checks the block's output.
        want: the documented output of the whole block (on its last step only), or ``None`` where none is shown.
    """

    source: str
    line: int
    command: str
    block: int = 0
    want: str | None = None

    @property
    def id(self) -> str:
        """The source and the command, without a trailing comment."""
        return f"{self.source}: {COMMENT.sub('', self.command)}"


def commands(text: str) -> Iterator[str]:
    """A shell block's commands, as bash reads them: a line, or the lines up to where a command is complete
    (``\\``-continued lines, a subshell, a here-document); blank and comment lines between commands skipped."""
    pending: list[str] = []
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending.append(line)
        command = "\n".join(pending)
        check = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        if not command.endswith("\\") and check.returncode == 0 and not check.stderr:  # an open here-document warns
            yield command.strip()
            pending = []
    if pending:
        yield "\n".join(pending).strip()  # not a complete command: running it says so


def page_steps(root: Path, page: str) -> list[Step]:
    """Every command in the page's ``sh``/``bash``/``shell`` and ``console`` blocks, in order.

    A ``text`` block right after a shell block is that block's output; in a ``console`` block, the lines after
    a ``$`` command are its output.
    """
    tokens = MarkdownIt("commonmark").parse((root / page).read_text(encoding="utf-8"))
    steps: list[Step] = []
    for i, token in enumerate(tokens):
        if token.type != "fence" or token.map is None:
            continue
        lang, start = token.info.split()[0] if token.info.strip() else "", token.map[0] + 2
        if lang in SHELLS:
            block = list(commands(token.content))
            after = tokens[i + 1] if i + 1 < len(tokens) else None
            want = after.content if after is not None and after.type == "fence" and after.info.strip() == "text" else None
            steps += [Step(page, start, cmd, block=start, want=want if n == len(block) - 1 else None)
                      for n, cmd in enumerate(block)]
        elif lang == "console":
            out: list[str] = []
            for n, line in enumerate(token.content.splitlines()):
                if line.startswith("$ "):
                    if out and steps:
                        steps[-1] = attrs.evolve(steps[-1], want="\n".join(out) + "\n")
                    steps.append(Step(page, start + n, line[2:].strip(), block=start + n))
                    out = []
                elif steps and steps[-1].block >= start:
                    out.append(line)
            if out and steps:
                steps[-1] = attrs.evolve(steps[-1], want="\n".join(out) + "\n")
    return steps


def help_steps() -> list[Step]:
    """The examples of ``cacheport --help`` and of every command's ``--help``, in the order they are shown."""
    import click

    from cacheport.cli import cli

    top = click.Context(cli, info_name="cacheport")
    helps = {"cacheport --help": cli.get_help(top)}
    for name in cli.list_commands(top):
        command = cli.get_command(top, name)
        assert command is not None, name
        helps[f"cacheport {name} --help"] = command.get_help(click.Context(command, info_name=name, parent=top))
    return [Step(source, n, example, block=n)
            for source, text in helps.items() for n, example in enumerate(examples(text), 1)]


def examples(help_text: str) -> list[str]:
    """The commands of a help text's ``Examples:`` section (indented lines up to the first blank one)."""
    lines = help_text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Examples:")
    except StopIteration:
        return []
    found: list[str] = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        found.append(line.strip())
    return list(commands("\n".join(found)))  # an example may go on over several lines, as in a shell


@attrs.frozen
class Ran:
    """What one step did: its exit status and what the terminal showed (stdout and stderr, interleaved)."""

    code: int
    output: str


class Session:
    """One reader's terminal: a fresh HOME, and their project, a fresh git repository on ``main`` named ``app``.

    Each step runs in ``bash -e -o pipefail`` from where the last one left off: its working directory and its
    exported variables (and unset ones) carry over, as in one shell. ``hosts`` maps the documentation's
    example host names to the loopback servers that stand in for them, both ways: in a command, and back in
    what it prints, so output reads as documented.
    """

    def __init__(self, root: Path, env: Mapping[str, str], hosts: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.home = root / "home"
        self.project = root / "app"
        self.hosts = dict(hosts or {})
        self.home.mkdir(parents=True)
        self.project.mkdir()
        subprocess.run(["git", "init", "-q", str(self.project)], check=True)
        subprocess.run(["git", "-C", str(self.project), "symbolic-ref", "HEAD", "refs/heads/main"], check=True)
        for name, text in PROJECT_FILES.items():
            (self.project / name).write_text(text)
        self.env = {**env, "HOME": str(self.home)}
        self.cwd = self.project
        self.ran: list[Ran] = []
        self.before: list[tuple[str, Ran]] = []

    def run(self, command: str, timeout: float = 600) -> Ran:
        for example, real in self.hosts.items():
            command = command.replace(example, real)
        dump = self.root / "env.after"
        script = (f"trap 'pwd > {dump}.pwd; env -0 > {dump}' EXIT\n"
                  f"{command}\n")
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=self.cwd, env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if dump.exists():
            pairs = (item.partition("=") for item in dump.read_text().split("\0") if item)
            self.env = {k: v for k, _, v in pairs if k not in SHELL_OWN}
            self.cwd = Path((dump.parent / f"{dump.name}.pwd").read_text().strip())
            dump.unlink()
        ran = Ran(proc.returncode, self.readable(proc.stdout))
        self.ran.append(ran)
        return ran

    def readable(self, output: str) -> str:
        """Output as the docs show it: the reader's HOME as ``/home/you``, stand-in servers by their example names."""
        for example, real in self.hosts.items():
            output = output.replace(real, example)
        output = output.replace(str(self.home), HOME)
        return re.sub(r"[ \t]+$", "", output, flags=re.M)


def differs(want: str, got: str) -> str:
    """Empty when ``got`` is the documented ``want`` (where ``...`` stands for anything), else a diff."""
    checker, flags = doctest.OutputChecker(), doctest.ELLIPSIS | doctest.REPORT_UDIFF
    want = "".join(f"{line or '<BLANKLINE>'}\n" for line in want.splitlines())  # doctest's word for an empty line
    if checker.check_output(want, got, flags):
        return ""
    example = doctest.Example(source="", want=want)
    return checker.output_difference(example, got, flags)


def clean_environ(keep: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment without any CI, cacheport or docker settings, as on a laptop that never saw either."""
    drop = ("CACHEPORT_", "CI_", "GITLAB_", "GITHUB_", "ACTIONS_", "DOCKER_", "XDG_", "PULP_")
    return {k: v for k, v in keep.items() if not k.startswith(drop) and k != "CI"}
