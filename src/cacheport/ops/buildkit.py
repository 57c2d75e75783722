"""``cacheport doctor`` on a builder that runs its own BuildKit (``docker-container``, ``remote``,
``kubernetes``): whether that BuildKit knows every cache attribute the plan uses, whether it reaches the
registries the plan names, and whether its buildkitd config trusts them.

The registry probe is a build on that builder whose only step resolves ``FROM <registry>/<repository>@sha256:0…``:
a digest no registry holds. BuildKit asks the registry for it with its own network, its own TLS settings and
its own ``buildkitd.toml``, exactly as a cache import does, and the registry's "not found" (or a refusal of the
credentials) proves both; nothing is pulled, pushed or left behind. The docker driver is not probed: its
registries are the engine's (``daemon.json``).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence

import attrs

from cacheport.kit import registry_host
from cacheport.ops.docker import Docker
from cacheport.plan import Plan
from cacheport.records import Check

#: The digest the probe asks for: well formed, and held by no registry.
ABSENT_DIGEST = "sha256:" + "0" * 64


@attrs.frozen
class Since:
    """A cache attribute (or a cache type) and the BuildKit release that added it.

    Attributes:
        kind: the cache type it belongs to, or None for every type that has it.
        attr: the attribute, or None for the cache type itself.
        version: the first BuildKit release that knows it.
        older: what an older BuildKit does instead.
    """

    kind: str | None
    attr: str | None
    version: tuple[int, int]
    older: str


# Read from moby/buildkit's history (the first release tag holding each attribute's parser). An older BuildKit
# ignores an attribute it does not know, so each of these fails quietly rather than loudly.
SINCE = (
    Since(None, "image-manifest", (0, 12), "writes the cache as an index, which some registries (Pulp) refuse"),
    Since(None, "ignore-error", (0, 12), "fails the build when the cache export fails"),
    Since(None, "compression", (0, 10), "exports with its default compression"),
    Since(None, "compression-level", (0, 10), "exports with its default compression level"),
    Since(None, "force-compression", (0, 10), "keeps layers in the compression they have"),
    Since(None, "oci-mediatypes", (0, 8), "exports with Docker media types"),
    Since("gha", None, (0, 9), "has no gha cache"),
    Since("gha", "timeout", (0, 13), "waits its default 10 minutes for the cache service"),
    Since("gha", "repository", (0, 14), "ignores it"),
    Since("gha", "ghtoken", (0, 14), "ignores it"),
    Since("gha", "url_v2", (0, 20), "speaks only the old cache service API"),
    Since("gha", "version", (0, 20), "speaks only the old cache service API"),
    Since("s3", None, (0, 11), "has no s3 cache"),
    Since("s3", "upload_parallelism", (0, 16), "uploads 4 layers at a time"),
    Since("azblob", None, (0, 11), "has no azblob cache"),
)


def _shown(version: Sequence[int]) -> str:
    return ".".join(map(str, version))


def version_checks(plan: Plan, name: str, version: tuple[int, ...] | None) -> list[Check]:
    """One line per cache attribute the plan uses that BuildKit ``version`` does not know, or one passing line."""
    if version is None:
        return [Check("buildkit", False, f"{name!r} did not say which BuildKit it runs, so the cache attributes "
                      "were not checked against it", f"start the builder: `docker buildx inspect --bootstrap {name}`")]
    entries = (*plan.imports, *plan.exports)
    failed: list[Check] = []
    for since in SINCE:
        if version >= since.version:
            continue
        used = [e for e in entries if (since.kind in (None, e.type))
                and (since.attr is None or e.get(since.attr) is not None)]
        if since.attr == "image-manifest":
            used = [e for e in used if e.get("image-manifest") == "true"]
        if not used:
            continue
        what = f"{since.attr}={used[0].get(since.attr)}" if since.attr else f"the {since.kind} cache type"
        failed.append(Check("buildkit", False, f"{name!r} runs BuildKit {_shown(version)}, which does not know "
                            f"{what} ({_shown(since.version)} added it) and {since.older}",
                            f"run BuildKit {_shown(since.version)} or newer on this builder (`docker buildx create "
                            "--driver-opt image=…` for docker-container), or drop the option"))
    if failed:
        return failed
    return [Check("buildkit", True, f"{name!r} runs BuildKit {_shown(version)}, which knows every cache attribute "
                  "the plan uses")]


@attrs.frozen
class Node:
    """What ``docker buildx inspect --bootstrap`` says about a builder's first node.

    Attributes:
        name: the node's name (a docker-container builder's container is ``buildx_buildkit_<name>``).
        version: its BuildKit version, when it says.
        config: the buildkitd.toml buildx created it with, when buildx shows it (buildx 0.18 and newer).
    """

    name: str | None
    version: tuple[int, ...] | None
    config: str | None


def parse_node(text: str) -> Node:
    """The first node of ``docker buildx inspect``'s text (buildx 0.10 to 0.29)."""
    name = version = None
    config: list[str] | None = None
    in_nodes = False
    for line in text.splitlines():
        if config is not None:
            if line.startswith(" >"):
                config.append(line[3:])
                continue
            break
        key, sep, value = line.partition(":")
        if line.startswith("Nodes:"):
            in_nodes = True
        elif in_nodes and sep and key == "Name" and name is None:
            name = value.strip()
        elif sep and key.strip() in ("BuildKit version", "Buildkit") and version is None:
            version = value.strip()
        elif line.startswith("File#buildkitd.toml:"):
            config = []
    numbers = tuple(int(n) for n in re.findall(r"\d+", (version or "").split("+")[0])[:3])
    return Node(name, numbers if any(numbers) else None, "\n".join(config) if config is not None else None)


@attrs.frozen
class Reach:
    """What the probe found about one registry.

    Attributes:
        outcome: ``reached`` (the registry answered), ``trust`` (BuildKit reached it but the TLS or plain-HTTP
            setting does not match what it speaks), ``network`` (no answer), or ``probe`` (the probe build
            itself failed: the builder, not the registry).
        detail: the cause, from BuildKit's own message.
    """

    outcome: str
    detail: str


def classify(output: str, ref: str) -> Reach:
    """What the probe build's output (``--progress=plain``) says about the registry of ``ref``."""
    errors = [line for line in output.splitlines() if line.startswith("ERROR:")]
    last = errors[-1] if errors else (output.strip().splitlines() or [""])[-1]
    marker = f"failed to resolve source metadata for {ref}: "
    if marker not in last:
        return Reach("probe", last.removeprefix("ERROR: ").strip() or "the probe build failed without a message")
    cause = last.split(marker, 1)[1].replace(f"{ref}: ", "").strip()
    cause = re.sub(r'^failed to do request: \w+ "[^"]*": ', "", cause)
    if "server gave HTTP response to HTTPS client" in cause:
        return Reach("trust", "BuildKit speaks HTTPS to it, and it answers in plain HTTP")
    if re.search(r"x509:|tls:|certificate", cause):
        return Reach("trust", f"BuildKit does not trust its TLS certificate ({cause})")
    if "400 Bad Request" in cause and "http://" in cause:
        return Reach("trust", "BuildKit speaks plain HTTP to it, and it answers 400 (an HTTPS registry does)")
    if re.search(r"not found|\b40[13]\b|unauthorized|denied|forbidden", cause, re.IGNORECASE):
        return Reach("reached", cause)
    return Reach("network", cause)


def registry_refs(plan: Plan) -> dict[str, str]:
    """One probe reference per registry host the plan's registry caches name: its repository at a digest no
    registry holds."""
    refs: dict[str, str] = {}
    for entry in (*plan.imports, *plan.exports):
        ref = entry.get("ref") if entry.type == "registry" else None
        if not ref:
            continue
        host = registry_host(ref)
        repository = ref.split("@", 1)[0]
        if ":" in repository.rsplit("/", 1)[-1]:
            repository = repository.rsplit(":", 1)[0]
        refs.setdefault(host, f"{repository}@{ABSENT_DIGEST}")
    return refs


def registry_section(config: str | None, host: str) -> dict[str, object] | None:
    """The ``[registry."host"]`` table of a buildkitd.toml, or None when it has none (or can't be read)."""
    import tomllib

    if config is None:
        return None
    try:
        table = tomllib.loads(config).get("registry", {}).get(host)
    except (tomllib.TOMLDecodeError, AttributeError):
        return None
    return table if isinstance(table, dict) else None


def _setting(section: dict[str, object] | None, config: str | None, where: str) -> str:
    if config is None:
        return f"its buildkitd.toml can't be read from here ({where})"
    if not config.strip():
        return "it has no buildkitd.toml, so BuildKit's defaults apply"
    if section is None:
        return "its buildkitd.toml has no section for it"
    said = ", ".join(f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in section.items()
                     if k in ("http", "insecure", "ca"))
    return f"its buildkitd.toml says {said or 'nothing about http, insecure or ca'}"


def _trust_fix(host: str, reach: Reach) -> str:
    if "answers 400" in reach.detail:
        settings = 'http = false and ca = ["/path/to/its-ca.pem"]'
    elif "plain HTTP" in reach.detail:
        settings = "http = true"
    else:
        settings = 'ca = ["/path/to/its-ca.pem"] (or insecure = true)'
    return (f'set {settings} under [registry."{host}"] in a buildkitd.toml and recreate the builder with it '
            "(`docker buildx create --buildkitd-config FILE …`)")


def _network_fix(host: str, driver: str, name: str) -> str:
    from cacheport.oci.reference import is_loopback

    if is_loopback(host) and driver == "docker-container":
        return (f"{host.rsplit(':', 1)[0]} inside a docker-container builder is its own container: recreate it "
                "with `--driver-opt network=host`, or name the registry by an address the builder can reach")
    return f"check that {host} is up, and the network, DNS and proxy of the builder {name!r} (not of this machine)"


def reach_checks(name: str, driver: str, probe: Mapping[str, Reach], config: str | None, where: str) -> list[Check]:
    """A ``network`` and a ``trust`` line per registry, from what the probe found (``probe``: host → Reach)."""
    checks: list[Check] = []
    for host, reach in probe.items():
        setting = _setting(registry_section(config, host), config, where)
        if reach.outcome == "probe":
            checks.append(Check("network", False, f"a probe build on {name!r} failed before it asked {host}: "
                                f"{reach.detail}", f"check the builder: `docker buildx inspect --bootstrap {name}`"))
        elif reach.outcome == "network":
            checks.append(Check("network", False, f"{name!r} can't reach {host}: {reach.detail}",
                                _network_fix(host, driver, name)))
        elif reach.outcome == "trust":
            checks += [Check("network", True, f"{name!r} reaches {host}"),
                       Check("trust", False, f"{name!r} does not trust {host}: {reach.detail}; {setting}",
                             _trust_fix(host, reach))]
        else:
            checks += [Check("network", True, f"{name!r} reaches {host}"),
                       Check("trust", True, f"{name!r} talks to {host} the way it answers (TLS or plain HTTP); "
                             f"{setting}")]
    return checks


def probe(docker: Docker, name: str, ref: str) -> Reach:
    """Resolve ``ref`` (at a digest no registry holds) on the builder ``name``. Never raises."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cacheport-doctor-") as empty:
        try:
            done = docker.run("buildx", "build", "--builder", name, "--progress=plain", "--file", "-", empty,
                              stdin=f"FROM {ref}\n", cwd=empty)
        except (OSError, subprocess.SubprocessError) as exc:
            return Reach("probe", str(exc))
    if done.returncode == 0:  # a registry that answered for a digest nobody has: it did answer
        return Reach("reached", "it answered")
    return classify(done.stderr + done.stdout, ref)


def container_config(docker: Docker, node: str) -> str | None:
    """The buildkitd.toml inside a docker-container builder's container (``docker cp`` needs no tool in the
    image), ``""`` when it has none, or None when the current engine does not hold that container."""
    import io
    import tarfile

    try:
        done = subprocess.run([*docker.command, "cp", f"buildx_buildkit_{node}:/etc/buildkit/buildkitd.toml", "-"],
                              capture_output=True, env=dict(docker.environ), timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        # The container is there but has no file: the builder runs on BuildKit's defaults.
        return "" if b"Could not find the file" in done.stderr else None
    try:
        with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
            member = next((m for m in tar if m.isfile()), None)
            data = tar.extractfile(member) if member is not None else None
            return data.read().decode("utf-8", "replace") if data is not None else None
    except tarfile.TarError:
        return None


def buildkit_checks(plan: Plan, name: str, driver: str, command: Sequence[str],
                    environ: Mapping[str, str]) -> list[Check]:
    """Version, network and trust on the builder ``name`` when it runs its own BuildKit, asked through the docker
    client ``command``; nothing for the docker driver. Never raises: a failure is a failed check."""
    from concurrent.futures import ThreadPoolExecutor

    if driver == "docker":
        return []
    docker = Docker(tuple(command), name, environ)
    try:
        found = docker.run("buildx", "inspect", "--bootstrap", name, stdin="")
    except (OSError, subprocess.SubprocessError) as exc:
        found = subprocess.CompletedProcess([], 1, "", str(exc))
    if found.returncode != 0:
        line = (found.stderr or found.stdout).strip().splitlines()[-1:] or ["no answer"]
        return [Check("buildkit", False, f"{name!r} does not start: {line[0]}",
                      f"check the builder: `docker buildx inspect --bootstrap {name}`")]
    node = parse_node(found.stdout)
    checks = version_checks(plan, name, node.version)
    refs = registry_refs(plan)
    if not refs:
        return checks
    config, where = node.config, ""
    if config is None and driver == "docker-container" and node.name:
        config = container_config(docker, node.name)
        where = "the builder's container is not in this engine"
    elif config is None:
        where = f"the {driver} driver's daemon keeps it"
    with ThreadPoolExecutor(min(4, len(refs))) as pool:
        answers = pool.map(lambda ref: probe(docker, name, ref), refs.values())
        found_by_host = dict(zip(refs, answers, strict=True))
    return checks + reach_checks(name, driver, found_by_host, config, where)
