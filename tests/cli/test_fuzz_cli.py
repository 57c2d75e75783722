"""Hypothesis over what a user (or an attacker) hands cacheport: command-line arguments, config files (valid, not
TOML, not UTF-8, nested thousands deep), the environment and ``-o`` targets, with one marker secret planted in
every secret source (registry passwords, CI_JOB_TOKEN, PULP_PASSWORD, a docker config login, azblob's key).

The law, for every run: no traceback without -v; exit status 0, 1 or 2; an error is one line that names its
source; the marker (nor its base64) never reaches what a person reads; a file holding it is 0600; a run that
fails writes nothing. Every ref has a loopback host, registries are the hostile one of tests/fakes/hostile.py, and
the network guard (tests/netguard.py) must stay silent.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cacheport.masking import mask, secret_forms
from tests import netguard
from tests.fakes.hostile import BEHAVIOURS, MARKER, USER, HostileRegistry, Recorder, run_cli, servers, stand_in_docker

BACKENDS = ("local", "registry", "gitlab", "pulp", "azblob", "s3", "gha", "inline", "acme", "shared-dir")
MACHINE_FORMATS = ("args", "lines", "bake", "buildctl", "github", "dotenv")
FORMS = secret_forms([MARKER])
# Behaviours that only cost time (a minute of dribble, a thousand pages): proven in tests/oci/test_hostile.py.
SLOW = {"slow-body", "link-endless"}
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# What an error line names: a file, a key, a flag, a variable, a host.
SOURCE = re.compile(r"\.toml\b|(?:^|\s)--?[a-z]|\bCACHEPORT_\w+|\$\w+|\b[A-Z][A-Z0-9_]{2,}\b|\[[^\]]+\]|\b(?:ref|url|"
                    r"backend|from|phase|key|mode|repository|account_url|bucket|region|plugin|option)\b|127\.0\.0\."
                    r"|\bhost\b|'[^']*'|(?:^|\s)/\S+")


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[HostileRegistry, Recorder]]:
    with servers() as pair:
        yield pair


# --- strategies -------------------------------------------------------------------------------------------------

text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=24)
words = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1, max_size=12)
names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_-]{0,10}", fullmatch=True)


def loopback_ref(registry: HostileRegistry) -> st.SearchStrategy[str]:
    behaviours = [*sorted(set(BEHAVIOURS) - SLOW), "good"]
    return st.one_of(
        st.sampled_from(behaviours).map(registry.ref),
        st.sampled_from(behaviours).map(lambda b: registry.ref(b) + ":main"),
        st.builds(lambda tail: f"127.0.0.1:1/{tail}", text),
        st.builds(lambda n: "127.0.0.1:1/" + "a" * n, st.integers(200, 70_000)),
        st.just("a" * 64 + ".localhost/app/cache"),
    )


def option_values(registry: HostileRegistry) -> dict[str, st.SearchStrategy[Any]]:
    """Values for each option name a backend here knows, loopback wherever one names a server."""
    anything = st.one_of(text, st.booleans(), st.integers(-5, 10**12))
    return {
        "ref": loopback_ref(registry),
        "url": st.sampled_from([f"http://{registry.host}", registry.host, "http://127.0.0.1:1", "ftp://127.0.0.1"]),
        "repository": st.one_of(st.sampled_from(sorted(BEHAVIOURS)).map(lambda b: f"{b}/cache"), text),
        "account_url": st.sampled_from(["http://127.0.0.1:1", "https://acct.blob.core.windows.net"]),
        "endpoint_url": st.just("http://127.0.0.1:1"),
        "api-url": st.just(f"http://{registry.host}"),
        "username": st.one_of(st.just(USER), text),
        "password-env": st.sampled_from(["REG_PW", "CI_JOB_TOKEN", "UNSET_VAR", ""]),
        "username-env": st.sampled_from(["REG_USER", "CI_REGISTRY_USER", ""]),
        "mode": st.one_of(st.sampled_from(["min", "max"]), text),
        "insecure": st.one_of(st.booleans(), text),
        "image-manifest": st.one_of(st.booleans(), text),
        "src": st.just("cache-src"), "dest": st.just("cache-dest"), "root": st.just("cache-shared"),
        "bucket": words, "region": words, "name": text, "scope": text, "key": text,
        "secret-access-key-env": st.sampled_from(["AZURE_STORAGE_ACCOUNT_KEY", "REG_PW"]),
        "junk": anything,
    }


@st.composite
def config_files(draw: st.DrawFn, registry: HostileRegistry, noisy: bool = True) -> tuple[str, bytes] | None:
    kinds = ["none", "none", "toml", "toml", "toml", "bytes", "not-utf8", "deep"] if noisy else ["none"] * 6 + ["toml"]
    kind = draw(st.sampled_from(kinds))
    name = draw(st.sampled_from(["cacheport.toml", "pyproject.toml"]))
    if kind == "none":
        return None
    if kind == "bytes":
        return name, draw(st.binary(max_size=120))
    if kind == "deep":
        depth = draw(st.integers(300, 4000))
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a = ", "}")]))
        return name, b"x = " + opener.encode() * depth + (b"1" if opener != "[" else b"") + closer.encode() * depth
    values = option_values(registry)
    doc: dict[str, Any] = {}
    if draw(st.booleans()):
        doc["backend"] = draw(st.one_of(st.sampled_from(BACKENDS), st.sampled_from(BACKENDS), text))
    for backend in draw(st.lists(st.sampled_from([*BACKENDS, "migration"]), max_size=3, unique=True)):
        keys = draw(st.lists(st.sampled_from(schema().get(backend) or sorted(values)), max_size=4, unique=True))
        table: dict[str, Any] = {k: draw(values.get(k, text)) for k in keys}
        if draw(st.integers(0, 5)) == 0:
            table[draw(names)] = draw(text)
        if backend == "migration":
            table = {"from": draw(st.sampled_from(BACKENDS)), "phase": draw(st.sampled_from(
                ["dual-read", "dual-write", "cutover", "later"]))}
        doc[backend] = table
    if draw(st.booleans()):
        doc["key"] = draw(text)
    if name == "pyproject.toml":
        doc = {"tool": {"cacheport": doc}}
    data = tomli_w.dumps(doc).encode()
    if kind == "not-utf8":
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xe9", b"\x80\x80"])) + data[cut:]
    return name, data


@st.composite
def environments(draw: st.DrawFn, registry: HostileRegistry, noisy: bool = True) -> dict[str, str]:
    """The environment: every secret source holds the marker; some CACHEPORT_ settings and CI context."""
    env = {"CI_REGISTRY_USER": USER, "CI_REGISTRY_PASSWORD": MARKER, "CI_JOB_TOKEN": MARKER, "REG_USER": USER,
           "REG_PW": MARKER, "PULP_USERNAME": USER, "PULP_PASSWORD": MARKER, "AZURE_STORAGE_ACCOUNT_KEY": MARKER,
           "AWS_SECRET_ACCESS_KEY": MARKER, "ACTIONS_RUNTIME_TOKEN": MARKER,
           "ACTIONS_CACHE_URL": "http://127.0.0.1:1/", "CI_REGISTRY_IMAGE": f"{registry.host}/good",
           # Backends whose defaults name a host or directory of their own get loopback and a scratch directory.
           "ACME_REGISTRY_USER": USER, "ACME_REGISTRY_TOKEN": MARKER, "CACHEPORT_ACME__REF": f"{registry.host}/good",
           "CACHEPORT_SHARED_DIR__ROOT": "cache-shared"}
    if draw(st.booleans()):
        env.update(GITLAB_CI="true", CI_PROJECT_PATH="group/app", CI_COMMIT_REF_NAME="main", CI_COMMIT_BRANCH="main",
                   CI_DEFAULT_BRANCH="main", CI_JOB_NAME="build")
    if not noisy:
        return env
    for _ in range(draw(st.integers(0, 2))):
        backend = draw(st.sampled_from(BACKENDS))
        option, value = draw(settings_for(registry, backend))
        if (backend, option) not in (("acme", "ref"), ("shared-dir", "root")):
            env[f"CACHEPORT_{backend.upper().replace('-', '_')}__{option.upper().replace('-', '_')}"] = value
    if draw(st.booleans()):
        env["CACHEPORT_BACKEND"] = draw(st.one_of(st.sampled_from(BACKENDS), text.filter(lambda t: t.strip())))
    if draw(st.booleans()):
        env["CACHEPORT_KEY"] = draw(text)
    if draw(st.booleans()):
        env["CACHEPORT_READ_ONLY"] = draw(st.sampled_from(["1", "no", "maybe"]))
    return {k: v for k, v in env.items() if "\0" not in v}


def schema() -> dict[str, list[str]]:
    """Each installed backend's option names."""
    from cacheport.plugins import default_plugins

    return {name: [o.name for o in backend.options] for name, backend in default_plugins().backends().items()}


@st.composite
def settings_for(draw: st.DrawFn, registry: HostileRegistry, backend: str) -> tuple[str, str]:
    """``(option, value)``: mostly one of the backend's own options, now and then any name at all."""
    values = option_values(registry)
    known = schema().get(backend) or sorted(values)
    name = draw(st.one_of(st.sampled_from(known), st.sampled_from(known), st.sampled_from(sorted(values)), names))
    value = draw(values.get(name, st.one_of(text, st.booleans().map(str), st.integers(-1, 99).map(str))))
    return name, str(value).lower() if isinstance(value, bool) else str(value)


@st.composite
def command_lines(draw: st.DrawFn, registry: HostileRegistry, commands: tuple[str, ...],
                  noisy: bool = True) -> list[str]:
    command = draw(st.sampled_from(commands))
    if command in ("backends", "plugins"):
        return [command, *draw(st.sampled_from([[], ["-v"], *([b] for b in BACKENDS), ["nope"]]))][:2] \
            if command == "backends" else [command, *draw(st.sampled_from([[], ["-v"], ["--format", "json"]]))]
    backend = draw(st.one_of(st.sampled_from(BACKENDS), st.sampled_from(BACKENDS), words) if noisy
                   else st.sampled_from(["registry", "gitlab", "pulp", "acme", "inline", "local"]))
    argv = [command, "-b", backend] if command != "seed" else [command, "--from", backend]
    if not noisy or draw(st.integers(0, 4)):  # mostly where the backend's cache is: a loopback registry
        behaviour = draw(st.sampled_from([*sorted(set(BEHAVIOURS) - SLOW), "good"]))
        where = {"registry": [f"ref={registry.ref(behaviour)}", "username=u", "password-env=REG_PW"],
                 "gitlab": [f"ref={registry.ref(behaviour)}"], "inline": [f"ref={registry.ref(behaviour)}:main"],
                 "acme": [f"ref={registry.host}/{behaviour}"],
                 "pulp": [f"url=http://{registry.host}", f"repository={behaviour}/cache"],
                 "azblob": ["account_url=http://127.0.0.1:1", "account_name=acct"],
                 "s3": ["bucket=b", "region=r", "endpoint_url=http://127.0.0.1:1"]}.get(backend, [])
        argv += [f for setting in where for f in ("--set", f"{backend}.{setting}")]
    for _ in range(draw(st.integers(0, 3)) if noisy else 0):
        name, value = draw(settings_for(registry, backend))
        scope = draw(st.sampled_from(["", "", f"{backend}.", "local."]))
        argv += ["--set", f"{scope}{name}={value}"]
    if command == "args":
        argv += draw(st.sampled_from([[], ["--format", "json"], ["--lines"], *[["--format", f] for f in
                                      MACHINE_FORMATS], ["--format", "nope"], ["--target", "app"]]))
    if command in ("status", "doctor"):
        argv += draw(st.sampled_from([[], ["--format", "json"]]))
    if command == "prune":
        argv += draw(st.sampled_from([["main", "--yes"], ["main"], ["--older-than", "1d", "--yes"],
                                      *([[], ["--yes"], ["--older-than", "soon"]] if noisy else [])]))
    if command == "seed":
        what = draw(st.sampled_from([["--all"], ["--all", "--dry-run"], ["--branch", "main"],
                                     *([[]] if noisy else [])]))
        argv += ["--to", "local", "--set", "local.src=seeded", *what]
    if noisy and draw(st.integers(0, 9)) == 0:
        argv += [draw(st.sampled_from(["--key", "--read-only", "--bogus", "-x", "--config"])), draw(text)]
    return [a for a in argv if "\0" not in a]


TARGETS = ("none", "new", "existing", "symlink", "dangling", "directory", "missing-dir", "dev-null", "dev-full",
           "fifo")


def make_target(kind: str, work: Path) -> Path | None:
    if kind == "none":
        return None
    target = work / "out.txt"
    if kind == "existing":
        target.write_text("old\n")
        target.chmod(0o644)
    elif kind == "symlink":
        (work / "real.txt").write_text("old\n")
        target.symlink_to("real.txt")
    elif kind == "dangling":
        target.symlink_to("made.txt")
    elif kind == "directory":
        target.mkdir()
    elif kind == "missing-dir":
        target = work / "missing" / "out.txt"
    elif kind == "dev-null":
        return Path("/dev/null")
    elif kind == "dev-full":
        return Path("/dev/full")
    elif kind == "fifo":
        os.mkfifo(target)
    return target


def snapshot(work: Path) -> dict[str, tuple[str, bytes, int]]:
    """Every file and link under the working directory (the cache directories aside)."""
    out = {}
    for path in sorted(work.rglob("*")):
        rel = str(path.relative_to(work))
        if rel.startswith(("cache-", "seeded", "home")):
            continue
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path).encode(), 0)
        elif path.is_file() and not stat.S_ISFIFO(path.stat().st_mode):
            out[rel] = ("file", path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
        elif path.is_dir():
            out[rel] = ("dir", b"", 0)
    return out


# --- the law ------------------------------------------------------------------------------------------------------

def check_run(argv: list[str], env: dict[str, str], config: tuple[str, bytes] | None, target_kind: str,
              registry: HostileRegistry) -> None:
    with tempfile.TemporaryDirectory(prefix="cacheport-fuzz-") as tmp:
        root = Path(tmp)
        work, home = root / "work", root / "home"
        work.mkdir()
        (home / ".docker").mkdir(parents=True)
        auth = base64.b64encode(f"{USER}:{MARKER}".encode()).decode()
        (home / ".docker" / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
        env = {**env, "HOME": str(home), "XDG_CACHE_HOME": str(root / "cache"), "PATH": os.environ.get("PATH", ""),
               "CACHEPORT_DOCKER": str(stand_in_docker(root / "docker"))}
        if config is not None:
            (work / config[0]).write_bytes(config[1])
        target = make_target(target_kind, work)
        if target is not None and argv[0] == "args":
            argv = [*argv, "-o", str(target)]
        before = snapshot(work)
        netguard.violations.clear()

        result = run_cli(argv, env, work, seconds=90)
        event(f"{argv[0]} exit {result.code}")

        assert not netguard.violations, netguard.violations
        text = result.out + result.err
        assert result.code in (0, 1, 2), result
        assert "Traceback" not in text and "internal error" not in text, result
        assert "\x07" not in text and "\x1b" not in re.sub(r"\x1b\[[0-9;]*m", "", text), result
        assert mask(result.err, FORMS) == result.err, f"a secret on stderr: {result.err}"
        fmt = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--format"), "lines" if "--lines" in argv
                   else "args")
        machine = argv[0] == "args" and fmt in MACHINE_FORMATS
        if not machine:
            assert mask(result.out, FORMS) == result.out, f"a secret on stdout: {result.out}"
        errors = [line for line in result.err.splitlines() if line.startswith("cacheport: error:")]
        assert len(errors) <= 1, result.err
        if result.code == 2:
            said = [line for line in result.err.splitlines() if not line.startswith("cacheport: warning: ")]
            assert said == errors and len(errors) == 1, result.err
            assert SOURCE.search(errors[0].removeprefix("cacheport: error: ")), errors[0]
        after = snapshot(work)
        if result.code != 0:
            assert after == before, f"a failed run changed files: {before} -> {after}"
        for rel, (kind, data, mode) in after.items():
            if kind == "file" and mask(data.decode("utf-8", "replace"), FORMS) != data.decode("utf-8", "replace"):
                assert mode == 0o600, f"{rel} holds a secret with mode {oct(mode)}"


@pytest.mark.parametrize("target_kind", TARGETS)
@settings(SETTINGS, max_examples=20)
@given(data=st.data())
def test_args_and_explain_under_any_input(hostile: tuple[HostileRegistry, Recorder], target_kind: str,
                                          data: st.DataObject) -> None:
    registry = hostile[0]
    noisy = data.draw(st.booleans())
    argv = data.draw(command_lines(registry, ("args", "args", "explain", "backends", "plugins"), noisy))
    check_run(argv, data.draw(environments(registry, noisy)), data.draw(config_files(registry, noisy)), target_kind,
              registry)


@settings(SETTINGS, max_examples=60)
@given(data=st.data())
def test_registry_commands_under_any_input(hostile: tuple[HostileRegistry, Recorder], data: st.DataObject) -> None:
    registry = hostile[0]
    noisy = data.draw(st.booleans())
    argv = data.draw(command_lines(registry, ("status", "prune", "seed"), noisy))
    check_run(argv, data.draw(environments(registry, noisy)), data.draw(config_files(registry, noisy)), "none",
              registry)
    assert hostile[1].with_credentials() == [], hostile[1].seen


@settings(SETTINGS, max_examples=15)
@given(data=st.data())
def test_doctor_under_any_input(hostile: tuple[HostileRegistry, Recorder], data: st.DataObject) -> None:
    registry = hostile[0]
    argv = data.draw(command_lines(registry, ("doctor",), noisy=False))
    check_run(argv, data.draw(environments(registry, False)), data.draw(config_files(registry, False)), "none",
              registry)
    assert hostile[1].with_credentials() == [], hostile[1].seen
