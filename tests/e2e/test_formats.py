"""A registry cache's format does not depend on which BuildKit wrote it.

BuildKit changed its own default in v0.21: an OCI index before, an OCI image manifest since. cacheport states the
format on every registry-type export, so the same plan writes the same kind of manifest on every generation.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from .harness import Harness, gitlab_env

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CACHECONFIG = "application/vnd.buildkit.cacheconfig.v0"


def shape(manifest: dict[str, object]) -> tuple[object, ...]:
    """What a cache's format is made of: the manifest's type, its config's type, its blobs' types."""
    config = manifest.get("config")
    entries = manifest.get("layers") or manifest.get("manifests") or []
    assert isinstance(entries, list)
    return (manifest.get("mediaType"), config.get("mediaType") if isinstance(config, dict) else None,
            tuple(sorted({str(e["mediaType"]) for e in entries})))


def test_the_same_plan_writes_the_same_format_on_every_generation(every_generation: dict[str, Harness],
                                                                   tmp_path: Path) -> None:
    any_engine = next(iter(every_generation.values()))
    reg = any_engine.env["CACHEPORT_E2E_REGISTRY"]
    repo = f"e2e/format-{uuid.uuid4().hex[:8]}"
    ctx = any_engine.project(tmp_path, work=1.0)
    written, unstated = {}, {}
    for name, h in every_generation.items():
        h.prune()
        built = h.build(ctx, env=gitlab_env(f"{reg}/{repo}", name))  # one cache tag per generation
        assert built.code == 0, built.log
        written[name] = h.manifest(reg, f"{repo}/cache", name)
        # The same export without a stated format, as a hand-written --cache-to has it: BuildKit's own default.
        plain = h.docker("buildx", "build", "--network=host", "--output=type=cacheonly",
                         f"--cache-to=type=registry,ref={reg}/{repo}/unstated:{name},mode=max", str(ctx), check=False)
        assert plain.returncode == 0, plain.stderr
        unstated[name] = h.manifest(reg, f"{repo}/unstated", name)

    shapes = {name: shape(m) for name, m in written.items()}
    assert set(shapes.values()) == {(OCI_MANIFEST, CACHECONFIG, ("application/vnd.oci.image.layer.v1.tar+gzip",))}, \
        shapes
    # Why the format must be stated: left to BuildKit, the generations disagree.
    assert {name: m.get("mediaType") for name, m in unstated.items()} == {"old": OCI_INDEX, "current": OCI_MANIFEST}
