"""The README, getting started and every ``--help`` example, run as a reader runs them, against the real servers.

Each source is one reader's terminal (tests/docsrun.py): a fresh HOME and a fresh git repository named ``app``,
every documented command in order, its exit status checked, and the documented output of a block held to what
the block printed. How the test is set up, and why it is written this way, is in docs/development.md ("The docs").
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests import docsrun
from tests.e2e.harness import Harness, Pulp

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("README.md", "docs/getting-started.md")

# Steps that fail today because of a finding of issue 23 that is being fixed elsewhere. Each is a strict
# expected failure: when the fix lands, the step passes, the run fails, and its line here goes. One line a step,
# keyed by the step's id: its source and the command as written, without its comment.
EXPECTED_FAILURES: dict[str, str] = {
}

# Steps honoured rather than run as written (the value runs instead; nothing when empty). The README's two
# commands install and test cacheport itself:
HONOURED = {
    # tox installs this checkout into the environment the tests run in, as `pip install .` does, before
    # any test starts; the rest of the line runs.
    "python3 -m pip install . && cacheport args": "cacheport args",
    "python3 -m pip install .": "",
    # The test command is what .ci/run runs (test_the_readme_test_command_is_what_ci_runs); running it here
    # would run this test again.
    "python3 -m pip install 'tox>=4' && tox": "",
    # A pattern, not a command: it runs with one command in it.
    "cacheport COMMAND --help": "cacheport args --help",
}

# What a reader has set for the --help examples that need a registry, Pulp or a CI job, as the docs tell them
# to (docs/configuration.md, docs/ci.md, docs/migrating-to-pulp.md); {names} are the servers'. A host of the
# docs' own (registry.example.com, harbor.example.com, pulp.example.com) stands for the reader's server, and
# the test's servers stand in for it (REGISTRY below, and Pulp).
PULP = {"CACHEPORT_PULP__URL": "{pulp_url}", "PULP_USERNAME": "{pulp_user}", "PULP_PASSWORD": "{pulp_password}"}


def _signing() -> dict[str, str]:
    """A protected GitLab pipeline under trust = "signed", with a key pair made for this run
    (docs/signed-caches.md)."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"GITLAB_CI": "true", "CI_PROJECT_PATH": "group/app", "CI_COMMIT_BRANCH": "main",
            "CI_COMMIT_REF_NAME": "main", "CI_DEFAULT_BRANCH": "main", "CI_PIPELINE_SOURCE": "push",
            "CI_COMMIT_REF_PROTECTED": "true", "CACHEPORT_BACKEND": "registry",
            "CACHEPORT_REGISTRY__REF": "{registry}/app/cache", "CACHEPORT_TRUST": "signed",
            "CACHEPORT_SIGNERS": base64.b64encode(public).decode(),
            "CACHE_SIGNING_KEY": base64.b64encode(private).decode()}


CONTEXT: dict[str, dict[str, str]] = {
    "cacheport doctor --help": PULP,
    "cacheport prune --help": {"CACHEPORT_BACKEND": "registry", "CACHEPORT_REGISTRY__REF": "{registry}/app/cache"},
    "cacheport report --help": {"GITHUB_STEP_SUMMARY": "{root}/step-summary.md"},
    "cacheport history --help": {"GITHUB_STEP_SUMMARY": "{root}/step-summary.md"},
    "cacheport seed --help": {**PULP, "CI_REGISTRY_IMAGE": "{registry}/group/app",
                              "CACHEPORT_REGISTRY__REF": "{registry}/app/cache"},
    "cacheport switch --help": {**PULP, "CACHEPORT_REGISTRY__REF": "{registry}/app/cache"},
    "cacheport verify --help": _signing(),
}
# Examples that are another way to do what the one before does: each runs in a terminal of its own.
ALTERNATIVES = {
    "cacheport init --help: cacheport init --backend registry --set ref=registry.example.com/team/app/cache",
    "cacheport switch --help: cacheport switch pulp --set url=pulp.example.com",
    "cacheport switch --help: cacheport switch registry --dry-run",
}
# What the reader did before a command's examples make sense, as one more terminal's steps; each must succeed.
COMMIT = "git config user.email you@example.com && git config user.name you && git commit -q --allow-empty -m start"
BEFORE = {
    # The doctor checks docker's own login too, which a plain buildx build gets (docs/configuration.md).
    "cacheport doctor --help": [
        'printf %s "$PULP_PASSWORD" | docker login --username "$PULP_USERNAME" --password-stdin '
        '"${CACHEPORT_PULP__URL#*://}"',
    ],
    "cacheport prune --help": [  # a cache for main and one for feature-x
        COMMIT,
        "docker buildx build $(cacheport args) .",
        "git checkout -q -b feature-x",
        "docker buildx build $(cacheport args) .",
        "git checkout -q main",
    ],
    "cacheport seed --help": [  # a local cache, CI's caches of main and develop, and a migration under way
        COMMIT,
        "docker buildx build $(cacheport args) . && cacheport rotate",
        "docker buildx build $(cacheport args --backend gitlab) .",
        "git checkout -q -b develop",
        "docker buildx build $(cacheport args --backend gitlab) .",
        "git checkout -q main",
        "cacheport switch pulp --from gitlab",
    ],
    "cacheport verify --help": [COMMIT, "cacheport build ."],  # a protected build that signed main's cache
    # The folder of records a CI job kept as an artifact, downloaded.
    "cacheport history --help": ["mkdir -p cacheport-history"],
    # A Dockerfile with a test stage (and, for mounts, one under docker/ that takes a PY argument).
    "cacheport build --help": ["printf 'FROM scratch AS test\\nCOPY hello.txt /\\n' > Dockerfile"],
    "cacheport mounts --help": [
        "mkdir -p docker && printf 'ARG PY=3.11\\nFROM scratch AS test\\nARG PY\\nCOPY hello.txt /\\n' > docker/Dockerfile",
    ],
}

STEPS = [*(step for page in PAGES for step in docsrun.page_steps(ROOT, page)), *docsrun.help_steps()]


def unique_ids(steps: list[docsrun.Step]) -> list[str]:
    seen: dict[str, int] = {}
    ids = []
    for step in steps:
        seen[step.id] = seen.get(step.id, 0) + 1
        ids.append(step.id if seen[step.id] == 1 else f"{step.id} ({seen[step.id]})")
    return ids


IDS = unique_ids(STEPS)


def marked(step: docsrun.Step, step_id: str) -> object:
    finding = EXPECTED_FAILURES.get(step_id)
    marks = [pytest.mark.xfail(reason=finding, strict=True)] if finding else []
    return pytest.param(step, step_id, id=step_id, marks=marks)


def terminal(step: docsrun.Step) -> str:
    """Which terminal a step runs in: its source's, or its own for an alternative."""
    return step.id if step.id in ALTERNATIVES else step.source


class Terminals:
    """The readers' terminals, each running its steps in order, however many of them pytest selected."""

    def __init__(self, root: Path, harness: Harness, pulp: Pulp) -> None:
        self.root, self.harness, self.pulp = root, harness, pulp
        self.sessions: dict[str, docsrun.Session] = {}
        # Each run has its own repositories in the registry, so nothing an earlier run left is found.
        self.registry = f"{harness.env['CACHEPORT_E2E_REGISTRY']}/docs-{uuid.uuid4().hex[:8]}"

    def env(self, source: str, root: Path) -> dict[str, str]:
        bin_dir = root / "bin"
        bin_dir.mkdir()
        shim = bin_dir / "cacheport"
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m cacheport "$@"\n')
        shim.chmod(0o755)
        docker = Path(self.harness.env["CACHEPORT_E2E_DOCKER_BIN"])
        env = docsrun.clean_environ()
        env.update(PATH=os.pathsep.join([str(bin_dir), str(docker.parent), env.get("PATH", "")]),
                   DOCKER_HOST=self.harness.env["CACHEPORT_E2E_DOCKER_HOST"])
        servers = {"registry": self.registry, "pulp_url": self.pulp.url, "pulp_user": self.pulp.user,
                   "pulp_password": self.pulp.password, "root": str(root)}
        env.update({k: v.format(**servers) for k, v in CONTEXT.get(source, {}).items()})
        return env

    def session(self, source: str, key: str) -> docsrun.Session:
        if key not in self.sessions:
            root = Path(tempfile.mkdtemp(dir=self.root))
            hosts = {"registry.example.com": self.registry, "harbor.example.com": self.registry,
                     "pulp.example.com": self.pulp.url}
            session = self.sessions[key] = docsrun.Session(root, self.env(source, root), hosts)
            # The reader's docker has the buildx plugin, in the place docker looks without a DOCKER_CONFIG.
            plugins = session.home / ".docker" / "cli-plugins"
            plugins.mkdir(parents=True)
            buildx = Path(self.harness.env["CACHEPORT_E2E_DOCKER_CONFIG"]) / "cli-plugins" / "docker-buildx"
            (plugins / "docker-buildx").symlink_to(buildx.resolve())
            session.before = [(command, session.run(command)) for command in BEFORE.get(source, ())]
            session.ran.clear()
        return self.sessions[key]

    def run(self, step: docsrun.Step) -> tuple[docsrun.Ran, str]:
        """The step's result, and what its block printed; the terminal's earlier steps run first if they haven't."""
        session = self.session(step.source, terminal(step))
        for command, ran in session.before:
            assert ran.code == 0, f"before {step.source}: {command} exited {ran.code}:\n{ran.output}"
        mine = [s for s in STEPS if terminal(s) == terminal(step)]
        index = mine.index(step)
        for earlier in mine[len(session.ran):index + 1]:
            command = HONOURED.get(earlier.id.partition(": ")[2], earlier.command)
            session.run(command) if command else session.ran.append(docsrun.Ran(0, ""))
        block = [n for n, s in enumerate(mine) if s.block == step.block and n <= index]
        return session.ran[index], "".join(session.ran[n].output for n in block)


@pytest.fixture(scope="module")
def terminals(tmp_path_factory: pytest.TempPathFactory, default_harness: Harness, pulp: Pulp) -> Terminals:
    return Terminals(tmp_path_factory.mktemp("docs-run"), default_harness, pulp)


@pytest.mark.parametrize(("step", "step_id"), [marked(s, i) for s, i in zip(STEPS, IDS, strict=True)])
def test_a_documented_step_runs_as_documented(step: docsrun.Step, step_id: str, terminals: Terminals) -> None:
    ran, printed = terminals.run(step)
    assert ran.code == 0, f"{step_id} (line {step.line}) exited {ran.code}:\n{ran.output}"
    if step.want is not None:
        diff = docsrun.differs(step.want, printed)
        assert not diff, f"{step_id} (line {step.line}): the block's output is not the documented one:\n{diff}"


def test_every_step_the_tables_name_exists() -> None:
    assert set(EXPECTED_FAILURES) | ALTERNATIVES <= set(IDS)
    assert set(HONOURED) <= {s.id.partition(": ")[2] for s in STEPS}
    assert set(CONTEXT) | set(BEFORE) <= {s.source for s in STEPS}


def test_the_readme_test_command_is_what_ci_runs() -> None:
    readme = [s.command for s in docsrun.page_steps(ROOT, "README.md")]
    assert "python3 -m pip install 'tox>=4' && tox" in readme
    ci = [line.replace(" -q ", " ") for line in (ROOT / ".ci" / "run").read_text().splitlines()]  # pip, quieter
    assert "python3 -m pip install 'tox>=4' && tox" in ci


def test_every_command_s_help_has_examples_that_run_here() -> None:
    from cacheport.cli import COMMANDS

    sources = {s.source for s in STEPS}
    assert sources >= {"cacheport --help", *(f"cacheport {name} --help" for name in COMMANDS)}
