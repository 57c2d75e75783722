"""`cacheport doctor` on a builder that runs its own BuildKit: version, network and trust.

The texts below are what buildx 0.13 / 0.29 and BuildKit 0.32 printed on the e2e harness; the probe's
wiring runs against a stand-in docker that records what it was asked.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

from cacheport.context import Context
from cacheport.entry import CacheEntry
from cacheport.ops.buildkit import (
    ABSENT_DIGEST,
    Reach,
    buildkit_checks,
    classify,
    parse_node,
    reach_checks,
    registry_refs,
    version_checks,
)
from cacheport.plan import Plan

HOST = "127.0.0.1:46831"
PULP = CacheEntry("registry", {"ref": f"{HOST}/app:main", "mode": "max", "image-manifest": "true",
                               "oci-mediatypes": "true", "ignore-error": "true"})


def plan(*entries: CacheEntry) -> Plan:
    return Plan(Context("local", "p"), "x", imports=entries, exports=entries)


# --- the BuildKit version ----------------------------------------------------------------------------------------

def test_an_old_buildkit_fails_once_per_attribute_it_would_ignore() -> None:
    checks = version_checks(plan(PULP), "ci", (0, 11, 6))
    assert [c.ok for c in checks] == [False, False]
    assert "image-manifest=true (0.12 added it)" in checks[0].detail and "BuildKit 0.11.6" in checks[0].detail
    assert "ignore-error=true (0.12 added it)" in checks[1].detail
    assert all("BuildKit 0.12 or newer" in c.fix for c in checks)


def test_the_release_that_added_them_passes() -> None:
    checks = version_checks(plan(PULP), "ci", (0, 12, 0))
    assert [c.ok for c in checks] == [True] and "BuildKit 0.12.0" in checks[0].detail


def test_image_manifest_false_needs_no_new_buildkit() -> None:
    entry = CacheEntry("registry", {"ref": f"{HOST}/app:main", "image-manifest": "false"})
    assert all(c.ok for c in version_checks(plan(entry), "ci", (0, 11, 0)))


@pytest.mark.parametrize(("entry", "version", "needs"), [
    (CacheEntry("gha", {"scope": "s", "version": "2"}), (0, 19, 9), "version=2 (0.20"),
    (CacheEntry("gha", {"scope": "s", "url_v2": "http://127.0.0.1:1/"}), (0, 19, 0), "url_v2="),
    (CacheEntry("gha", {"scope": "s", "timeout": "1m"}), (0, 12, 5), "timeout=1m (0.13"),
    (CacheEntry("s3", {"bucket": "b", "region": "r"}), (0, 10, 6), "the s3 cache type (0.11"),
    (CacheEntry("azblob", {"name": "n"}), (0, 10, 0), "the azblob cache type (0.11"),
    (CacheEntry("registry", {"ref": f"{HOST}/a", "compression": "zstd"}), (0, 9, 3), "compression=zstd (0.10"),
])
def test_each_attribute_names_the_release_that_added_it(entry: CacheEntry, version: tuple[int, ...],
                                                        needs: str) -> None:
    failed = [c for c in version_checks(plan(entry), "ci", version) if not c.ok]
    assert len(failed) == 1 and needs in failed[0].detail


def test_a_builder_that_does_not_say_its_version_is_not_passed() -> None:
    [check] = version_checks(plan(PULP), "ci", None)
    assert not check.ok and "inspect --bootstrap ci" in check.fix


# --- what buildx inspect shows --------------------------------------------------------------------------------------

INSPECT_013 = """Name:          dr-dc
Driver:        docker-container
Last Activity: 2026-12-06 04:59:51 +0000 UTC

Nodes:
Name:                  dr-dc0
Endpoint:              unix:///var/tmp/cp-dr/docker/docker.sock
Driver Options:        image="127.0.0.1:46831/cacheport-e2e/buildkit:v0.32.2" network="host"
Status:                running
BuildKit daemon flags: --allow-insecure-entitlement=network.host
BuildKit version:      v0.32.2
Platforms:             linux/amd64, linux/amd64/v2, linux/amd64/v3, linux/386
GC Policy rule#0:
 All:           false
"""

# buildx prints an empty config line as " > " (with its trailing space).
INSPECT_029 = INSPECT_013 + "\n".join(["File#buildkitd.toml:", " > ", " > [registry]", " > ",
                                       ' >   [registry."127.0.0.1:46831"]', " >     http = true", " > ", ""])


def test_inspect_gives_the_node_and_version_and_on_new_buildx_the_config() -> None:
    old, new = parse_node(INSPECT_013), parse_node(INSPECT_029)
    assert (old.name, old.version, old.config) == ("dr-dc0", (0, 32, 2), None)
    assert (new.name, new.version) == ("dr-dc0", (0, 32, 2))
    assert new.config is not None and '[registry."127.0.0.1:46831"]' in new.config


def test_an_inactive_builder_has_no_version() -> None:
    assert parse_node("Name: b\nDriver: docker-container\n\nNodes:\nName: b0\nStatus: inactive\n").version is None


# --- what the probe's answer means -------------------------------------------------------------------------------

REF = f"{HOST}/app@{ABSENT_DIGEST}"
SOLVE = f"ERROR: failed to build: failed to solve: {REF}: failed to resolve source metadata for {REF}: "


@pytest.mark.parametrize(("cause", "outcome", "says"), [
    (f"{REF}: not found", "reached", "not found"),
    (f"unexpected status from HEAD request to http://{HOST}/v2/app/manifests/{ABSENT_DIGEST}: 401 Unauthorized",
     "reached", "401"),
    (f'failed to do request: Head "http://{HOST}/v2/app/manifests/{ABSENT_DIGEST}": dial tcp {HOST}: connect: '
     "connection refused", "network", f"dial tcp {HOST}: connect: connection refused"),
    (f'failed to do request: Head "https://{HOST}/v2/app/manifests/{ABSENT_DIGEST}": http: server gave HTTP '
     "response to HTTPS client", "trust", "answers in plain HTTP"),
    (f"unexpected status from HEAD request to http://{HOST}/v2/app/manifests/{ABSENT_DIGEST}: 400 Bad Request",
     "trust", "answers 400"),
    (f'failed to do request: Head "https://{HOST}/v2/app/manifests/{ABSENT_DIGEST}": tls: failed to verify '
     "certificate: x509: certificate signed by unknown authority", "trust", "unknown authority"),
])
def test_the_probe_answer_is_read_as_reached_network_or_trust(cause: str, outcome: str, says: str) -> None:
    found = classify(f"#2 ERROR: something\n------\n{SOLVE}{cause}\n", REF)
    assert found.outcome == outcome and says in found.detail
    assert ABSENT_DIGEST not in found.detail or outcome == "reached"


def test_a_probe_that_never_reached_the_registry_blames_the_builder() -> None:
    found = classify("ERROR: failed to build: no builder \"gone\" found\n", REF)
    assert found == Reach("probe", 'failed to build: no builder "gone" found')


def test_one_probe_per_registry_at_a_digest_nobody_has() -> None:
    refs = registry_refs(plan(CacheEntry("registry", {"ref": f"{HOST}/app:main"}),
                              CacheEntry("registry", {"ref": f"{HOST}/other:dev"}),
                              CacheEntry("registry", {"ref": "127.0.0.1:5000/ns/app@sha256:" + "a" * 64}),
                              CacheEntry("local", {"src": "/tmp/x"})))
    assert refs == {HOST: f"{HOST}/app@{ABSENT_DIGEST}", "127.0.0.1:5000": f"127.0.0.1:5000/ns/app@{ABSENT_DIGEST}"}


def test_each_registry_gets_a_network_line_and_a_trust_line_with_one_fix() -> None:
    config = f'[registry."{HOST}"]\n  http = false\n'
    checks = reach_checks("ci", "docker-container", {
        HOST: classify(f"{SOLVE}failed to do request: Head \"https://{HOST}/v2/\": http: server gave HTTP response "
                       "to HTTPS client", REF),
        "127.0.0.1:1": Reach("network", "dial tcp 127.0.0.1:1: connect: connection refused"),
    }, config, "")
    assert [(c.name, c.ok) for c in checks] == [("network", True), ("trust", False), ("network", False)]
    assert "its buildkitd.toml says http = false" in checks[1].detail
    assert f'set http = true under [registry."{HOST}"]' in checks[1].fix and "--buildkitd-config" in checks[1].fix
    assert "network=host" in checks[2].fix
    assert all("\n" not in c.detail + c.fix for c in checks)


def test_a_config_that_cannot_be_read_says_why() -> None:
    [_, trust] = reach_checks("ci", "remote", {HOST: Reach("reached", "not found")}, None,
                              "the remote driver's daemon keeps it")
    assert trust.ok and "can't be read from here (the remote driver's daemon keeps it)" in trust.detail


# --- the wiring, against a stand-in docker ------------------------------------------------------------------------

def stand_in(tmp_path: Path, inspect: str, build_error: str, config: str | None) -> tuple[list[str], Path]:
    """A docker that answers inspect, cp and build as recorded, and logs each call (argv and stdin)."""
    log = tmp_path / "calls.jsonl"
    tar = tmp_path / "config.tar"
    if config is not None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as out:
            info = tarfile.TarInfo("buildkitd.toml")
            info.size = len(config.encode())
            out.addfile(info, io.BytesIO(config.encode()))
        tar.write_bytes(buffer.getvalue())
    script = tmp_path / "docker.py"
    script.write_text(f"""import json, sys
args = sys.argv[1:]
stdin = sys.stdin.read() if "build" in args else ""
with open({str(log)!r}, "a") as f:
    f.write(json.dumps({{"args": args, "stdin": stdin}}) + "\\n")
if args[:2] == ["buildx", "inspect"]:
    sys.stdout.write({inspect!r})
elif args[0] == "cp":
    try:
        sys.stdout.buffer.write(open({str(tar)!r}, "rb").read())
    except OSError:
        sys.stderr.write("Error response from daemon: No such container\\n"); sys.exit(1)
elif args[:2] == ["buildx", "build"]:
    ref = stdin.split()[1]
    sys.stderr.write({build_error!r}.replace("REF", ref) + "\\n"); sys.exit(1)
""")
    return [sys.executable, str(script)], log


def calls(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_docker_container_builder_is_probed_read_only_and_its_container_config_read(tmp_path: Path) -> None:
    docker, log = stand_in(tmp_path, INSPECT_013, "ERROR: failed to solve: REF: failed to resolve source metadata "
                           "for REF: REF: not found", f'[registry."{HOST}"]\n  http = true\n')
    checks = buildkit_checks(plan(PULP), "ci", "docker-container", docker, {"PATH": "/usr/bin"})
    assert [(c.name, c.ok) for c in checks] == [("buildkit", True), ("network", True), ("trust", True)]
    assert "its buildkitd.toml says http = true" in checks[2].detail
    made = calls(log)
    assert made[0]["args"] == ["buildx", "inspect", "--bootstrap", "ci"]
    assert made[1]["args"] == ["cp", "buildx_buildkit_dr-dc0:/etc/buildkit/buildkitd.toml", "-"]
    [build] = [c for c in made if c["args"][:2] == ["buildx", "build"]]
    assert build["stdin"] == f"FROM {HOST}/app@{ABSENT_DIGEST}\n"
    args = build["args"]
    assert isinstance(args, list) and args[2:4] == ["--builder", "ci"]
    # Nothing written anywhere: no output, no push, no cache export.
    assert not [a for a in args if a.startswith(("--push", "--load", "--output", "-o", "--cache-to", "--tag"))]


def test_new_buildx_shows_the_config_and_the_container_is_not_asked(tmp_path: Path) -> None:
    docker, log = stand_in(tmp_path, INSPECT_029, "ERROR: failed to solve: REF: failed to resolve source metadata "
                           f'for REF: failed to do request: Head "https://{HOST}/v2/": http: server gave HTTP '
                           "response to HTTPS client", None)
    checks = buildkit_checks(plan(PULP), "ci", "docker-container", docker, {})
    assert [(c.name, c.ok) for c in checks] == [("buildkit", True), ("network", True), ("trust", False)]
    assert "its buildkitd.toml says http = true" in checks[2].detail
    assert not [c for c in calls(log) if c["args"][0] == "cp"]


def test_the_docker_driver_is_not_probed(tmp_path: Path) -> None:
    docker, log = stand_in(tmp_path, INSPECT_013, "", None)
    assert buildkit_checks(plan(PULP), "default", "docker", docker, {}) == []
    assert not log.exists()


def test_a_builder_that_does_not_start_is_one_failed_line(tmp_path: Path) -> None:
    script = tmp_path / "docker.sh"
    script.write_text("#!/bin/sh\necho 'ERROR: no builder \"ci\" found' >&2\nexit 1\n")
    script.chmod(0o755)
    [check] = buildkit_checks(plan(PULP), "ci", "remote", [str(script)], {})
    assert not check.ok and check.detail == "'ci' does not start: ERROR: no builder \"ci\" found"


def test_a_builder_without_a_config_runs_on_buildkits_defaults() -> None:
    [_, trust] = reach_checks("ci", "docker-container", {HOST: Reach("reached", "not found")}, "", "")
    assert trust.ok and "it has no buildkitd.toml, so BuildKit's defaults apply" in trust.detail
