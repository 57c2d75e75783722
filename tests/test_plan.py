from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cacheport.config import load_config
from cacheport.context import Context
from cacheport.errors import ConfigError, UnknownBackendError
from cacheport.plan import build_plan
from cacheport.plugins import Plugins

from .conftest import GITLAB_ENV

FEATURE = Context("gitlab", "group/app", branch="feature/Login-Form", default_branch="main", trusted=True,
                  default_backend="gitlab")


def plan_for(tmp_path: Path, plugins: Plugins, toml: str = "", env: dict[str, str] | None = None,
             ctx: Context = FEATURE, cli: list[tuple[str, object, str]] | None = None):
    if toml:
        (tmp_path / "pyproject.toml").write_text(toml)
    config = load_config(tmp_path, env or {}, cli=cli or [])
    return build_plan(config, ctx, plugins)


def test_gitlab_backend_in_a_gitlab_job(tmp_path: Path, builtins: Plugins) -> None:
    plan = plan_for(tmp_path, builtins, '[tool.cacheport]\nbackend = "gitlab"\n', GITLAB_ENV)
    assert [e.format() for e in plan.imports] == [
        "type=registry,ref=registry.example.com/group/app/cache:feature-login-form",
        "type=registry,ref=registry.example.com/group/app/cache:main",
    ]
    assert [e.format() for e in plan.exports] == [
        "type=registry,ref=registry.example.com/group/app/cache:feature-login-form,mode=max,ignore-error=true,image-manifest=true,oci-mediatypes=true"
    ]


def test_gitlab_is_the_default_inside_gitlab(tmp_path: Path, builtins: Plugins) -> None:
    plan = plan_for(tmp_path, builtins, env=GITLAB_ENV)
    assert plan.backend == "gitlab"
    assert plan.settings[0].setting.source.detail == "default (gitlab context)"


def test_switching_backend_is_one_line(tmp_path: Path, builtins: Plugins) -> None:
    base = '[tool.cacheport]\nbackend = "{}"\n[tool.cacheport.registry]\nref = "harbor.example.com/app/cache"\n'
    gitlab = plan_for(tmp_path, builtins, base.format("gitlab"), GITLAB_ENV)
    registry = plan_for(tmp_path, builtins, base.format("registry"), GITLAB_ENV)
    assert gitlab.imports[0].get("ref", "").startswith("registry.example.com/group/app/cache:")
    assert registry.imports[0].get("ref") == "harbor.example.com/app/cache:feature-login-form"
    assert registry.exports[0].get("ref") == "harbor.example.com/app/cache:feature-login-form"


def test_gitlab_outside_gitlab_names_the_missing_variable(tmp_path: Path, builtins: Plugins) -> None:
    with pytest.raises(ConfigError) as caught:
        plan_for(tmp_path, builtins, '[tool.cacheport]\nbackend = "gitlab"\n', {})
    # What is missing, plainly; not how to edit a default the user never wrote.
    assert str(caught.value) == ("gitlab.ref is not set, and its default needs the environment variable "
                                 "CI_REGISTRY_IMAGE, which is not set here either; set CI_REGISTRY_IMAGE, or set "
                                 "gitlab.ref (ref in the [gitlab] table, or CACHEPORT_GITLAB__REF)")


def test_no_config_no_ci_is_local_under_the_cache_dir(tmp_path: Path, builtins: Plugins) -> None:
    ctx = Context("local", "My App", branch="main")
    plan = plan_for(tmp_path, builtins, env={"XDG_CACHE_HOME": "/xdg"}, ctx=ctx)
    assert [e.format() for e in plan.imports] == ["type=local,src=/xdg/cacheport/my-app/default"]
    assert [e.format() for e in plan.exports] == [
        "type=local,dest=/xdg/cacheport/my-app/default.new,mode=max,ignore-error=true"
    ]
    assert [(s.new, s.current) for s in plan.swaps] == [
        ("/xdg/cacheport/my-app/default.new", "/xdg/cacheport/my-app/default")
    ]


def test_key_scopes_registry_and_local(tmp_path: Path, builtins: Plugins) -> None:
    plan = plan_for(tmp_path, builtins, '[tool.cacheport]\nbackend = "gitlab"\nkey = "arm64"\n', GITLAB_ENV)
    assert plan.exports[0].get("ref", "").endswith(":arm64-feature-login-form")
    local = plan_for(tmp_path, builtins, '[tool.cacheport]\nbackend = "local"\nkey = "arm64"\n', {"HOME": "/h"})
    assert local.imports[0].get("src") == "/h/.cache/cacheport/group-app/arm64"


@given(st.booleans(), st.booleans())
def test_untrusted_or_read_only_means_no_exports(trusted: bool, read_only: bool) -> None:
    import tempfile

    from cacheport_builtins import contexts, gitlab, local, registry

    plugins = Plugins.from_modules([registry, gitlab, local, contexts])
    ctx = Context("gitlab", "g/app", branch="b", default_branch="main", trusted=trusted)
    with tempfile.TemporaryDirectory() as tmp:
        cli = [("read-only", True, "--read-only")] if read_only else []
        plan = plan_for(Path(tmp), plugins, env={**GITLAB_ENV}, ctx=ctx, cli=cli)
    assert bool(plan.exports) == (trusted and not read_only)
    assert plan.read_only == (not trusted or read_only)
    if not plan.exports:
        assert not plan.swaps


def test_unknown_backend_lists_the_available_ones(tmp_path: Path, builtins: Plugins) -> None:
    with pytest.raises(UnknownBackendError, match=r"unknown backend 'regsitry' \(did you mean 'registry'\?\); available: azblob, gha, gitlab, inline, local, registry, s3"):
        plan_for(tmp_path, builtins, cli=[("backend", "regsitry", "--backend")])


def test_backend_names_are_case_insensitive(tmp_path: Path, builtins: Plugins) -> None:
    plan = plan_for(tmp_path, builtins, cli=[("backend", "LOCAL", "--backend")])
    assert plan.backend == "local"


def test_fixed_tag_ref_is_one_cache_for_all_branches(tmp_path: Path, builtins: Plugins) -> None:
    plan = plan_for(tmp_path, builtins, '[tool.cacheport]\nbackend = "registry"\n[tool.cacheport.registry]\nref = "r/app:buildcache"\n')
    assert [e.get("ref") for e in plan.imports] == ["r/app:buildcache"]
    assert [e.get("ref") for e in plan.exports] == ["r/app:buildcache"]


def test_registry_options_render_as_buildkit_attributes(tmp_path: Path, builtins: Plugins) -> None:
    toml = ('[tool.cacheport]\nbackend = "registry"\n[tool.cacheport.registry]\nref = "r/app"\nmode = "min"\n'
            "image_manifest = true\noci-mediatypes = true\ncompression = \"zstd\"\ninsecure = true\nignore-error = false\n")
    plan = plan_for(tmp_path, builtins, toml)
    assert plan.imports[0].format() == "type=registry,ref=r/app:feature-login-form,registry.insecure=true"
    assert plan.exports[0].format() == (
        "type=registry,ref=r/app:feature-login-form,mode=min,ignore-error=false,image-manifest=true,"
        "oci-mediatypes=true,compression=zstd,registry.insecure=true"
    )


@pytest.mark.parametrize(("given", "stated"), [
    ("", "image-manifest=true,oci-mediatypes=true"),
    ("oci-mediatypes = false\n", "image-manifest=false,oci-mediatypes=false"),
    ("image-manifest = false\n", "image-manifest=false,oci-mediatypes=true"),
])
def test_registry_exports_state_their_format(tmp_path: Path, builtins: Plugins, given: str, stated: str) -> None:
    """BuildKit's own default changed in v0.21 (index before, image manifest since): the flags never leave it open."""
    plan = plan_for(tmp_path, builtins, f'[tool.cacheport]\nbackend = "registry"\n[tool.cacheport.registry]\n'
                    f'ref = "r/app"\n{given}')
    assert plan.exports[0].format() == f"type=registry,ref=r/app:feature-login-form,mode=max,ignore-error=true,{stated}"


def test_an_image_manifest_with_docker_media_types_is_a_config_error(tmp_path: Path, builtins: Plugins) -> None:
    """BuildKit fails such an export, and ignore-error would hide that: refuse it up front."""
    with pytest.raises(ConfigError, match="image-manifest = true needs oci-mediatypes = true"):
        plan_for(tmp_path, builtins, '[tool.cacheport]\nbackend = "gitlab"\n[tool.cacheport.gitlab]\n'
                 'image-manifest = true\noci-mediatypes = false\n', GITLAB_ENV)


def test_options_for_an_idle_backend_are_still_checked(tmp_path: Path, builtins: Plugins) -> None:
    with pytest.raises(ConfigError, match="has no option 'mdoe'"):
        plan_for(tmp_path, builtins, '[tool.cacheport]\nbackend = "local"\n[tool.cacheport.registry]\nmdoe = "x"\n')


def test_a_table_for_an_uninstalled_backend_is_a_warning(tmp_path: Path, builtins: Plugins) -> None:
    plan = plan_for(tmp_path, builtins, '[tool.cacheport]\nbackend = "local"\n[tool.cacheport.pulp]\nurl = "x"\n')
    assert any("[pulp] names no installed backend" in w for w in plan.warnings)


def test_missing_default_backend_falls_back_to_local(tmp_path: Path, builtins: Plugins) -> None:
    ctx = Context("github", "org/app", branch="main", default_backend="no-such-backend")
    plan = plan_for(tmp_path, builtins, env={"HOME": "/h"}, ctx=ctx)
    assert plan.backend == "local"
    assert any("not installed" in w for w in plan.warnings)


LAPTOP = Context("local", "p", branch="main")


def test_a_misspelt_backend_in_a_flag_or_variable_is_an_error(tmp_path: Path, builtins: Plugins) -> None:
    with pytest.raises(ConfigError, match=r"--set registy.ref=: there is no backend 'registy' \(did you mean 'registry'"):
        plan_for(tmp_path, builtins, cli=[("registy.ref", "x", "--set registy.ref=")], ctx=LAPTOP)
    with pytest.raises(ConfigError, match=r"CACHEPORT_REGISTY__REF: there is no backend 'registy'"):
        plan_for(tmp_path, builtins, env={"CACHEPORT_REGISTY__REF": "x"}, ctx=LAPTOP)


def test_an_empty_variable_is_unset(tmp_path: Path, builtins: Plugins) -> None:
    assert plan_for(tmp_path, builtins, env={"CACHEPORT_BACKEND": "", "HOME": "/h"},
                    ctx=Context("local", "p", branch="main")).backend == "local"


def test_a_branch_whose_tag_collides_with_the_default_branch_never_exports(tmp_path: Path, builtins: Plugins) -> None:
    for branch in ("Main", "main-", "-main"):
        ctx = Context("gitlab", "g/app", branch=branch, default_branch="main")
        plan = plan_for(tmp_path, builtins, '[tool.cacheport]\nbackend = "gitlab"\n', GITLAB_ENV, ctx=ctx)
        assert plan.exports == () and plan.imports[0].get("ref", "").endswith(":main")
