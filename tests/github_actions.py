"""A composite action's steps run the way the GitHub Actions runner runs them, for the tests of action.yml and
report/action.yml (tests/templates/test_templates.py, tests/e2e/test_github_action.py).

What the runner does and this does too: ``${{ inputs.X }}`` (else the input's default), ``${{ github.action_path }}``
and ``${{ steps.ID.outputs.NAME }}`` filled in (``a || b``: the first that is not empty), a step's ``if:`` (``A == 'x'``,
``A != 'x'``), each ``run:`` as ``bash --noprofile --norc -eo pipefail`` with its own ``$GITHUB_OUTPUT``,
``$GITHUB_PATH`` and ``$GITHUB_STEP_SUMMARY`` files, ``$GITHUB_PATH`` entries put in front of later steps' PATH,
``continue-on-error``, and the action's ``outputs``. A ``uses:`` step that would run is refused: it can't be run here.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

_EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")
_COMPARISON = re.compile(r"^(.+?)\s*(==|!=)\s*'([^']*)'$")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def expression(text: str) -> str:
    """A GitHub Actions expression, ``${{ text }}``."""
    return "${{ " + text + " }}"


def _contexts(action: Path, inputs: Mapping[str, str], contexts: Mapping[str, str]) -> dict[str, str]:
    defaults = {f"inputs.{name}": str(spec.get("default", "")) for name, spec in load(action)["inputs"].items()}
    given = {f"inputs.{name}": value for name, value in inputs.items()}
    unknown = set(given) - set(defaults)
    assert not unknown, f"{action} has no input {sorted(unknown)}"
    return {"github.action_path": str(action.parent), **defaults, **given, **contexts}


def _value(expr: str, contexts: Mapping[str, str]) -> str:
    """``a || b``: the first operand that is not empty, as the runner does."""
    for operand in (e.strip() for e in expr.split("||")):
        assert re.fullmatch(r"[\w.-]+", operand), f"not an expression this emulation knows: {expr!r}"
        if operand.startswith("inputs."):
            assert operand in contexts, f"no input {operand[7:]!r}"
        if contexts.get(operand, ""):
            return contexts[operand]
    return ""


def substitute(text: str, contexts: Mapping[str, str]) -> str:
    return _EXPRESSION.sub(lambda m: _value(m.group(1), contexts), text)


def condition(text: str, contexts: Mapping[str, str]) -> bool:
    """A step's ``if:``, of the forms the actions here use."""
    m = _COMPARISON.match(text.strip())
    assert m, f"not a condition this emulation knows: {text!r}"
    equal = _value(m.group(1), contexts) == m.group(3)
    return equal if m.group(2) == "==" else not equal


def evaluate(action: Path, env: Mapping[str, Any], inputs: Mapping[str, str],
             contexts: Mapping[str, str]) -> dict[str, str]:
    """A step's ``env:`` with its expressions filled in."""
    known = _contexts(action, inputs, contexts)
    return {k: substitute(str(v), known) for k, v in env.items()}


def read_outputs(path: Path) -> dict[str, str]:
    """``$GITHUB_OUTPUT`` as the runner reads it: name=value lines and name<<DELIMITER blocks."""
    text = path.read_text() if path.exists() else ""
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line:
            name, _, delimiter = line.partition("<<")
            body = []
            for body_line in lines:
                if body_line == delimiter:
                    break
                body.append(body_line)
            out[name] = "\n".join(body)
        else:
            name, _, value = line.partition("=")
            out[name] = value
    return out


def run_step(action: Path, step: Mapping[str, Any], inputs: Mapping[str, str], env: Mapping[str, str], cwd: Path,
             contexts: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One composite step's ``run:`` the way the runner runs ``shell: bash``."""
    assert step["shell"] == "bash"
    known = _contexts(action, inputs, contexts)
    step_env = {**env, **{k: substitute(str(v), known) for k, v in step.get("env", {}).items()}}
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", substitute(step["run"], known)],
                          cwd=cwd, env=step_env, capture_output=True, text=True, timeout=timeout)


@attrs.frozen
class ActionRun:
    """A whole run of a composite action.

    Attributes:
        code: the action's exit code as the job sees it (the first failing step's, unless it may fail).
        steps: each step that ran, by its id (or its position), with what it printed.
        skipped: the steps whose ``if:`` was false.
        outputs: the action's outputs.
        summary: what the steps added to the job summary.
    """

    code: int
    steps: dict[str, subprocess.CompletedProcess[str]]
    skipped: list[str]
    outputs: dict[str, str]
    summary: str

    @property
    def log(self) -> str:
        return "".join(p.stdout + p.stderr for p in self.steps.values())


def run_action(action: Path, inputs: Mapping[str, str], env: Mapping[str, str], cwd: Path, work: Path,
               timeout: float = 300) -> ActionRun:
    """Every step of ``action`` in order, with the runner's files for each step under ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    env = dict(env)
    contexts: dict[str, str] = {}
    ran: dict[str, subprocess.CompletedProcess[str]] = {}
    skipped: list[str] = []
    summary = []
    code = 0
    for n, step in enumerate(load(action)["runs"]["steps"]):
        name = str(step.get("id", n))
        if "if" in step and not condition(step["if"], _contexts(action, inputs, contexts)):
            skipped.append(name)
            continue
        assert "uses" not in step, f"step {name} would run {step['uses']}, which this emulation can't"
        files = {key: work / f"{n}-{key.lower()}" for key in ("GITHUB_OUTPUT", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")}
        for path in files.values():
            path.write_text("")
        proc = run_step(action, step, inputs, {**env, **{k: str(v) for k, v in files.items()}}, cwd, contexts,
                        timeout)
        ran[name] = proc
        for key, value in read_outputs(files["GITHUB_OUTPUT"]).items():
            contexts[f"steps.{name}.outputs.{key}"] = value
        added = [line for line in files["GITHUB_PATH"].read_text().splitlines() if line]
        if added:
            env["PATH"] = ":".join([*reversed(added), env.get("PATH", "")])
        summary.append(files["GITHUB_STEP_SUMMARY"].read_text())
        if proc.returncode != 0 and not step.get("continue-on-error"):
            code = proc.returncode
            break
    outputs = {name: substitute(str(spec["value"]), contexts)
               for name, spec in (load(action).get("outputs") or {}).items()}
    return ActionRun(code, ran, skipped, outputs, "".join(summary))


def installed_cacheport(runner_temp: Path, requirement: str, python: str) -> Path:
    """The venv the cacheport action leaves in ``$RUNNER_TEMP`` after installing ``requirement``, with this
    checkout's cacheport (run by ``python``) standing in for pip's copy of it."""
    bin_dir = runner_temp / "cacheport-venv" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    cli = bin_dir / "cacheport"
    cli.write_text(f'#!/bin/sh\nexec "{python}" -m cacheport "$@"\n')
    cli.chmod(0o755)
    (runner_temp / "cacheport-venv" / "cacheport-requirement").write_text(requirement + "\n")
    return cli
