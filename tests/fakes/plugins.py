"""Plugin distributions made on the fly: a pip-shaped dist-info with a ``cacheport`` entry point, and the body
of a plugin module that fails to import."""

from __future__ import annotations

from pathlib import Path

BROKEN = "import cacheport_test_this_module_does_not_exist\n"


def make_dist(site: Path, dist: str, module: str, entry_name: str, body: str) -> Path:
    """Install a minimal distribution into ``site`` the way pip lays one out (dist-info + entry points)."""
    (site / module).mkdir(parents=True, exist_ok=True)
    (site / module / "__init__.py").write_text(body)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[cacheport]\n{entry_name} = {module}\n")
    return site
