"""The runner behind tests/e2e/test_docs_run.py: what it reads as steps, how a terminal carries on, what matches."""

from __future__ import annotations

from pathlib import Path

from tests import docsrun

PAGE = """\
# A page

```sh
export GREETING=hello \\
  NAME=you
cd sub   # a comment
(
  unset NAME
  echo "$GREETING ${NAME:-nobody}"
)
```

```text
hello nobody
```

Some words.

```console
$ echo one
one
$ echo two
```

```text
not output: a paragraph stands between
```

```toml
not = "a step"
```
"""


def test_a_page_s_steps_are_its_shell_and_console_commands_with_their_documented_output(tmp_path: Path) -> None:
    (tmp_path / "page.md").write_text(PAGE)
    steps = docsrun.page_steps(tmp_path, "page.md")
    assert [(s.line, s.command, s.want) for s in steps] == [
        (4, "export GREETING=hello \\\n  NAME=you", None),
        (4, "cd sub   # a comment", None),
        (4, '(\n  unset NAME\n  echo "$GREETING ${NAME:-nobody}"\n)', "hello nobody\n"),
        (20, "echo one", "one\n"),
        (22, "echo two", None),
    ]
    assert steps[1].id == "page.md: cd sub"
    assert {s.block for s in steps[:3]} == {4} and steps[3].block != steps[4].block


def test_a_here_document_is_one_command() -> None:
    assert list(docsrun.commands("cat <<EOF\n# not a comment\nEOF\necho after\n")) == [
        "cat <<EOF\n# not a comment\nEOF", "echo after"]


def test_every_command_s_help_examples_are_read() -> None:
    steps = docsrun.help_steps()
    sources = {s.source for s in steps}
    assert "cacheport --help" in sources and "cacheport prune --help" in sources
    prune = [s.command for s in steps if s.source == "cacheport prune --help"]
    assert prune[0].startswith("cacheport prune ") and all("Examples" not in c for c in prune)


def test_a_terminal_carries_the_directory_and_exported_variables_to_the_next_step(tmp_path: Path) -> None:
    session = docsrun.Session(tmp_path, docsrun.clean_environ(), {"registry.example.com": "127.0.0.1:5000/x"})
    assert (session.project / ".git").is_dir() and (session.project / "Dockerfile").is_file()
    session.run("mkdir sub && cd sub && export A=1 B=2 && C=3")
    session.run("unset B")
    ran = session.run('echo "$PWD ${A:-} ${B:-unset} ${C:-unset} $HOME registry.example.com/app"')
    assert ran == docsrun.Ran(0, f"{session.project}/sub 1 unset unset /home/you 127.0.0.1:5000/x/app\n".replace(
        "127.0.0.1:5000/x", "registry.example.com"))
    assert session.run("false; echo never").code == 1


def test_output_is_held_to_the_documented_text_where_dots_stand_for_anything() -> None:
    assert docsrun.differs("a\n...\nd\n", "a\nb\nc\nd\n") == ""
    assert docsrun.differs("a\n\nb\n", "a\n\nb\n") == ""
    diff = docsrun.differs("a\nb\nc\n", "a\nB\nc\n")
    assert "\n-b\n" in diff.replace(" ", "") and "\n+B\n" in diff.replace(" ", "")
