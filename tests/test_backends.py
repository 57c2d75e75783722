"""Backend behaviour: the gha, inline, s3 and azblob specifics, and laws every registered backend obeys."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cacheport import render
from cacheport.config import load_config
from cacheport.context import Context
from cacheport.entry import CacheEntry
from cacheport.errors import CacheportError, ConfigError, RenderError
from cacheport.plan import Plan, build_plan
from cacheport.plugins import Plugins, load
from cacheport.records import Backend, EntryRequest, Option

FEATURE = Context("github", "Org/App", branch="feat/x", target_branch="main", default_branch="main")
ALL = load({})  # every installed backend: built-ins and third-party plugins alike


def plan(plugins: Plugins, backend: str, options: dict[str, Any] | None = None, env: dict[str, str] | None = None,
         ctx: Context = FEATURE) -> Plan:
    cli = [("backend", backend, "--backend")] + [(f"{backend}.{k}", v, f"--set {k}=") for k, v in (options or {}).items()]
    with tempfile.TemporaryDirectory() as tmp:
        return build_plan(load_config(Path(tmp), env or {}, cli=cli), ctx, plugins)


def csv(entries: tuple[CacheEntry, ...]) -> list[str]:
    return [e.format() for e in entries]


def test_gha_scopes_follow_the_branch_chain_and_key(builtins: Plugins) -> None:
    p = plan(builtins, "gha", env={"ACTIONS_RUNTIME_TOKEN": "t", "ACTIONS_CACHE_URL": "http://c/"})
    assert csv(p.imports) == ["type=gha,scope=org-app-feat-x", "type=gha,scope=org-app-main"]
    assert csv(p.exports) == ["type=gha,scope=org-app-feat-x,mode=max,ignore-error=true"]
    assert p.warnings == ()
    keyed = plan(builtins, "gha", {"version": "2"}, env={"ACTIONS_RUNTIME_TOKEN": "t", "ACTIONS_RESULTS_URL": "u"},
                 ctx=Context("github", "org/app", branch="main"))
    assert csv(keyed.imports) == ["type=gha,scope=org-app-main,version=2"]


def test_gha_never_renders_the_token_and_warns_when_it_is_missing(builtins: Plugins) -> None:
    p = plan(builtins, "gha", env={"ACTIONS_RUNTIME_TOKEN": "tok3n-value", "ACTIONS_CACHE_URL": "http://cache/"})
    assert "tok3n-value" not in render.args(p) and "http://cache/" not in render.args(p)
    bare = plan(builtins, "gha")
    assert any("ACTIONS_RUNTIME_TOKEN" in w and "silently drops" in w for w in bare.warnings)


def test_inline_exports_inline_with_the_branch_tag_and_imports_images(builtins: Plugins) -> None:
    p = plan(builtins, "inline", {"ref": "reg.example/App"})
    assert csv(p.imports) == ["type=registry,ref=reg.example/app:feat-x", "type=registry,ref=reg.example/app:main"]
    assert csv(p.exports) == ["type=inline"]
    assert p.tags == ("reg.example/app:feat-x",)
    assert "--tag=reg.example/app:feat-x" in render.args(p).split()
    assert json.loads(render.bake(p))["target"]["default"]["tags"] == ["reg.example/app:feat-x"]
    assert any("mode=min" in w for w in plan(builtins, "inline", {"ref": "r/a", "mode": "max"}).warnings)
    untrusted = plan(builtins, "inline", {"ref": "r/a"}, ctx=Context("github", "o/a", branch="b", trusted=False))
    assert untrusted.exports == () and untrusted.tags == ()


def test_s3_names_per_branch_and_no_credentials(builtins: Plugins) -> None:
    env = {"AWS_SECRET_ACCESS_KEY": "aws-s3cret-key", "AWS_ACCESS_KEY_ID": "AKIA123"}
    p = plan(builtins, "s3", {"bucket": "b", "region": "eu-west-1", "use_path_style": "true",
                              "endpoint_url": "http://minio:9000", "upload_parallelism": "8"}, env=env)
    assert csv(p.imports) == [
        "type=s3,bucket=b,region=eu-west-1,endpoint_url=http://minio:9000,use_path_style=true,name=org-app-feat-x",
        "type=s3,bucket=b,region=eu-west-1,endpoint_url=http://minio:9000,use_path_style=true,name=org-app-main",
    ]
    assert csv(p.exports) == [
        "type=s3,bucket=b,region=eu-west-1,endpoint_url=http://minio:9000,use_path_style=true,name=org-app-feat-x,"
        "mode=max,ignore-error=true,upload_parallelism=8"
    ]
    assert "s3cret" not in render.args(p) and "AKIA" not in render.args(p)
    with pytest.raises(ConfigError, match="needs option 'bucket'"):
        plan(builtins, "s3", {"region": "x"})


def test_azblob_inlines_the_key_for_buildkit_but_redacts_it_for_people(builtins: Plugins) -> None:
    env = {"AZURE_STORAGE_ACCOUNT_KEY": "azure-k3y-value=="}
    p = plan(builtins, "azblob", {"account_url": "https://acct.blob.core.windows.net"}, env=env)
    assert "secret_access_key=azure-k3y-value==" in render.args(p)
    for text in (render.explain(p), render.as_json(p), render.args(render.redacted(p)), *p.warnings):
        assert "azure-k3y-value" not in text
    assert p.exports[0].get("name") == "org-app-feat-x"


def test_s3_and_azblob_names_are_scoped_by_project_and_key(builtins: Plugins) -> None:
    s3 = {"bucket": "b", "region": "r"}
    one, other = plan(builtins, "s3", s3), plan(builtins, "s3", s3, ctx=attrs.evolve(FEATURE, project="org/web"))
    assert {e.get("name") for e in one.imports}.isdisjoint(e.get("name") for e in other.imports)
    keyed = plan(builtins, "s3", {**s3, "manifests_prefix": "m/", "blobs_prefix": "b/", "retry_mode": "adaptive",
                                  "retry_max_attempts": "5", "disable_accept_encoding": "true"},
                 env={"CACHEPORT_KEY": "arm64"})
    assert csv(keyed.exports) == ["type=s3,bucket=b,region=r,manifests_prefix=m/,blobs_prefix=b/,"
                                  "disable_accept_encoding=true,retry_mode=adaptive,retry_max_attempts=5,"
                                  "name=org-app-arm64-feat-x,mode=max,ignore-error=true"]
    az = plan(builtins, "azblob", {"account_url": "https://acct.blob.core.windows.net", "manifests_prefix": "m",
                                   "blobs_prefix": "b"})
    assert [(e.get("name"), e.get("manifests_prefix"), e.get("blobs_prefix")) for e in az.imports] == [
        ("org-app-feat-x", "m", "b"), ("org-app-main", "m", "b")]
    fixed = plan(builtins, "s3", {**s3, "name": "shared"})
    assert csv(fixed.exports)[0].startswith("type=s3,bucket=b,region=r,name=shared,")


def test_s3_warns_when_no_aws_credentials_are_visible(builtins: Plugins, tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path)}
    bare = plan(builtins, "s3", {"bucket": "b", "region": "r"}, env=home)
    assert any("no AWS credentials are visible" in w and "AWS_WEB_IDENTITY_TOKEN_FILE" in w for w in bare.warnings)
    for env in ({"AWS_ACCESS_KEY_ID": "a"}, {"AWS_PROFILE": "ci"}, {"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/t"},
                {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/creds"}):
        assert not any("AWS credentials" in w for w in plan(builtins, "s3", {"bucket": "b", "region": "r"},
                                                             env={**home, **env}).warnings)


def test_s3_entries_never_read_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Entries are pure: a ~/.aws file neither silences the warning nor is opened; `cacheport doctor` reads it.
    from cacheport_builtins.objstore import aws_credential_sources
    from cacheport_builtins.s3 import BACKEND

    from cacheport.trust import decide

    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text("[default]\nregion = eu-west-1\n")
    home = {"HOME": str(tmp_path)}
    assert aws_credential_sources(home) == [str(tmp_path / ".aws" / "config")]
    options = {**{o.name: o.default for o in BACKEND.options}, "bucket": "b", "region": "r"}
    request = EntryRequest(options, attrs.evolve(FEATURE, trust=decide(FEATURE)), None, str(tmp_path), home)
    touched: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        touched.append(repr(args[:1]))
        raise AssertionError("entries touched the host")

    for name in ("is_file", "exists", "stat", "open", "read_text", "expanduser", "home"):
        monkeypatch.setattr(Path, name, refuse)
    monkeypatch.setattr("builtins.open", refuse)
    monkeypatch.setattr("os.stat", refuse)
    try:
        entries = BACKEND.entries(request)
    finally:
        monkeypatch.undo()
    assert touched == []
    assert any("no AWS credentials are visible in the environment" in w for w in entries.warnings)
    assert [e.get("name") for e in entries.imports] == ["org-app-feat-x", "org-app-main"]


def test_gha_passes_a_github_token_for_cache_listing_but_never_shows_it(builtins: Plugins) -> None:
    env = {"ACTIONS_RUNTIME_TOKEN": "t", "ACTIONS_CACHE_URL": "http://c/", "GITHUB_TOKEN": "ghs_t0ken"}
    p = plan(builtins, "gha", {"ghtoken-env": "GITHUB_TOKEN"}, env=env)
    assert p.exports[0].get("ghtoken") == "ghs_t0ken" and p.exports[0].get("repository") == "Org/App"
    assert "ghtoken" in p.secret_attrs
    for text in (render.explain(p), render.as_json(p), render.args(render.redacted(p))):
        assert "ghs_t0ken" not in text
    assert "ghtoken" not in csv(plan(builtins, "gha", env=env).exports)[0]


def test_local_passes_its_export_options_and_names_its_store_by_tag(builtins: Plugins, tmp_path: Path) -> None:
    opts = {"src": str(tmp_path / "c"), "tag": "web", "image-manifest": "true", "oci-mediatypes": "true",
            "compression": "zstd", "compression-level": "3", "force-compression": "true", "reset": "true"}
    p = plan(builtins, "local", opts)
    assert csv(p.imports) == [f"type=local,src={tmp_path / 'c'},tag=web"]
    assert csv(p.exports) == [f"type=local,dest={tmp_path / 'c'}.new,tag=web,mode=max,ignore-error=true,"
                              "image-manifest=true,oci-mediatypes=true,compression=zstd,compression-level=3,"
                              "force-compression=true,reset=true"]
    backend = builtins.backend("local")
    assert p.request is not None and backend.store is not None
    store = backend.store(p.request)
    assert (store.name_for("any"), store.format) == ("web", "image-manifest")


def test_azblob_needs_an_account_name_for_ip_and_custom_domains(builtins: Plugins) -> None:
    for url in ("http://127.0.0.1:10000", "https://cache.example.com"):
        with pytest.raises(ConfigError, match="set account_name"):
            plan(builtins, "azblob", {"account_url": url})
    assert plan(builtins, "azblob", {"account_url": "http://127.0.0.1:10000", "account_name": "dev"}).imports


# --- laws for every registered backend -------------------------------------------------------------------

safe_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)


def option_values(backend: Backend) -> st.SearchStrategy[dict[str, Any]]:
    def one(o: Option) -> st.SearchStrategy[Any]:
        if o.choices:
            return st.sampled_from(o.choices)
        if o.type is bool:
            return st.booleans()
        if o.type is int:
            return st.integers(1, 64)
        return safe_text

    required = {o.name: one(o) for o in backend.options if o.required}
    optional = {o.name: one(o) for o in backend.options if not o.required}
    return st.fixed_dictionaries(required, optional=optional)


@pytest.mark.parametrize("name", sorted(ALL.backends()))
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_schema_options_give_entries_that_round_trip(name: str, data: st.DataObject) -> None:
    backend = ALL.backends()[name]
    options = data.draw(option_values(backend))
    try:
        p = plan(ALL, name, {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in options.items()})
    except CacheportError as exc:
        assert "\n" not in str(exc)  # a clean one-line error, never a crash
        return
    for entry in (*p.imports, *p.exports):
        assert CacheEntry.parse(entry.format()) == entry


SECRET_VARS = ("CI_REGISTRY_PASSWORD", "CI_JOB_TOKEN", "ACTIONS_RUNTIME_TOKEN", "AWS_SECRET_ACCESS_KEY",
               "AWS_SESSION_TOKEN", "AZURE_STORAGE_ACCOUNT_KEY", "PULP_PASSWORD", "GITHUB_TOKEN")
REQUIRED = {"registry": {"ref": "r.example/app"}, "inline": {"ref": "r.example/app"}, "s3": {"bucket": "b", "region": "r"},
            "gha": {"ghtoken-env": "GITHUB_TOKEN"},
            "azblob": {"account_url": "https://a.blob.core.windows.net"}, "pulp": {"url": "pulp.example"}}


@pytest.mark.parametrize("name", sorted(ALL.backends()))
@settings(max_examples=25)
@given(secret=st.text(st.characters(whitelist_categories=("Lu", "Ll", "Nd")), min_size=12, max_size=30))
def test_no_secret_reaches_human_readable_output(name: str, secret: str) -> None:
    env = {var: secret for var in SECRET_VARS} | {"CI_REGISTRY_IMAGE": "reg.example/g/app",
                                                  "ACTIONS_CACHE_URL": "http://cache/"}
    p = plan(ALL, name, REQUIRED.get(name, {}), env=env)
    for text in (render.explain(p), render.as_json(p), *p.warnings):
        assert secret not in text
    if not p.secret_attrs:
        assert secret not in render.args(p)  # only what BuildKit must receive inline may appear in flags
    # Error messages are read by people too: make every entry unrenderable and look at what is said.
    spaced = attrs.evolve(p, imports=tuple(e.with_attrs(prefix="a b,c") for e in p.imports))
    for attempt in (render.args, render.dotenv, lambda x: render.github_output(x, "D")):
        try:
            attempt(spaced)
        except RenderError as exc:
            assert secret not in str(exc)


@pytest.mark.parametrize("name", sorted(ALL.backends()))
def test_unknown_option_names_the_close_matches(name: str) -> None:
    backend = ALL.backends()[name]
    if not backend.options:
        pytest.skip("no options")
    real = backend.options[0].name
    typo = real[:-1] + ("x" if real[-1] != "x" else "y")
    with pytest.raises(ConfigError, match=rf"has no option '{typo}' \(did you mean '{real}'"):
        plan(ALL, name, {**REQUIRED.get(name, {}), typo: "1"})
