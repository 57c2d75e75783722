"""The pulp backend (plugins/cacheport-pulp), a third-party distribution: entries, the format guard, logins,
discovery through entry points, and no heavy imports when it loads."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cacheport_pulp
import pytest
from cacheport_builtins import contexts

from cacheport import Login, render
from cacheport.config import load_config
from cacheport.context import Context
from cacheport.errors import ConfigError
from cacheport.kit import NO_BRANCH_WARNING
from cacheport.plan import Plan, build_plan
from cacheport.plugins import Plugins, load

FEATURE = Context("gitlab", "Group/App", branch="feature/Login-Form", default_branch="main", trusted=True,
                  default_backend="gitlab")
BASE = '[tool.cacheport]\nbackend = "pulp"\n[tool.cacheport.pulp]\nurl = "pulp.example.com"\n'
PLUGIN = Path(__file__).resolve().parent.parent / "plugins" / "cacheport-pulp"
HEAVY = {"pulp_glue", "requests", "urllib3", "pydantic", "httpx", "python_on_whales"}


@pytest.fixture
def plugins() -> Plugins:
    """Only the pulp plugin and the context providers, in a fresh manager."""
    return Plugins.from_modules([cacheport_pulp, contexts])


def plan_for(tmp_path: Path, plugins: Plugins, extra: str = "", env: dict[str, str] | None = None,
             ctx: Context = FEATURE, key: str | None = None) -> Plan:
    (tmp_path / "pyproject.toml").write_text(BASE + extra)
    cli: list[tuple[str, object, str]] = [("key", key, "--key")] if key else []
    return build_plan(load_config(tmp_path, env or {}, cli=cli), ctx, plugins)


def test_default_repository_is_the_project_lower_cased_plus_cache(tmp_path: Path, plugins: Plugins) -> None:
    plan = plan_for(tmp_path, plugins)
    assert [e.format() for e in plan.imports] == [
        "type=registry,ref=pulp.example.com/group/app/cache:feature-login-form",
        "type=registry,ref=pulp.example.com/group/app/cache:main",
    ]
    assert [e.format() for e in plan.exports] == [
        "type=registry,ref=pulp.example.com/group/app/cache:feature-login-form,mode=max,ignore-error=true,"
        "image-manifest=true,oci-mediatypes=true"
    ]


def test_a_project_named_after_a_directory_becomes_a_valid_path(tmp_path: Path, plugins: Plugins) -> None:
    plan = plan_for(tmp_path, plugins, ctx=Context("local", "My App", branch="main"))
    assert plan.imports[0].get("ref") == "pulp.example.com/my-app/cache:main"


def test_the_repository_option_is_lower_cased_and_checked(tmp_path: Path, plugins: Plugins) -> None:
    plan = plan_for(tmp_path, plugins, 'repository = "/Team/Builds/App-Cache/"\n')
    assert plan.exports[0].get("ref") == "pulp.example.com/team/builds/app-cache:feature-login-form"
    with pytest.raises(ConfigError, match=r"repository 'team/my cache' is not a valid repository path"):
        plan_for(tmp_path, plugins, 'repository = "team/my cache"\n')


def test_branch_chain_mr_target_and_key(tmp_path: Path, plugins: Plugins) -> None:
    ctx = Context("gitlab", "group/app", branch="fix/Bug", target_branch="release/1.2", default_branch="main")
    plan = plan_for(tmp_path, plugins, ctx=ctx, key="arm64")
    assert [e.get("ref") for e in plan.imports] == [
        "pulp.example.com/group/app/cache:arm64-fix-bug",
        "pulp.example.com/group/app/cache:arm64-release-1-2",
        "pulp.example.com/group/app/cache:arm64-main",
    ]
    assert [e.get("ref") for e in plan.exports] == ["pulp.example.com/group/app/cache:arm64-fix-bug"]


def test_an_untrusted_job_imports_but_never_exports(tmp_path: Path, plugins: Plugins) -> None:
    ctx = Context("gitlab", "group/app", branch=None, target_branch="main", default_branch="main", trusted=False)
    plan = plan_for(tmp_path, plugins, ctx=ctx)
    assert [e.get("ref") for e in plan.imports] == ["pulp.example.com/group/app/cache:main"]
    assert plan.exports == ()
    assert cacheport_pulp.BACKEND.entries(plan.request).exports == ()  # type: ignore[arg-type]


def test_no_branch_at_all_uses_latest(tmp_path: Path, plugins: Plugins) -> None:
    plan = plan_for(tmp_path, plugins, ctx=Context("local", "app"))
    assert [e.get("ref") for e in plan.imports] == ["pulp.example.com/app/cache:latest"]
    assert NO_BRANCH_WARNING in plan.warnings


def test_the_pulp_format_is_rendered_whatever_else_is_set(tmp_path: Path, plugins: Plugins) -> None:
    plan = plan_for(tmp_path, plugins, 'mode = "min"\nignore-error = false\ncompression = "zstd"\n'
                                       "image-manifest = true\n")
    assert plan.exports[0].format() == (
        "type=registry,ref=pulp.example.com/group/app/cache:feature-login-form,mode=min,ignore-error=false,"
        "image-manifest=true,oci-mediatypes=true,compression=zstd"
    )


@pytest.mark.parametrize("option", ["image-manifest", "oci-mediatypes"])
def test_the_format_pulp_rejects_is_an_error(tmp_path: Path, plugins: Plugins, option: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan_for(tmp_path, plugins, f"{option} = false\n")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"pulp: {option} = false cannot work: Pulp rejects that cache format")
    assert "silently stores nothing" in message and "force = true" in message


@pytest.mark.parametrize("option", ["image-manifest", "oci-mediatypes"])
def test_force_renders_what_was_asked_with_a_warning(tmp_path: Path, plugins: Plugins, option: str) -> None:
    plan = plan_for(tmp_path, plugins, f"{option} = false\nforce = true\n")
    assert plan.exports[0].get(option) == "false"
    other = next(o for o in cacheport_pulp.FORMAT if o != option)
    assert plan.exports[0].get(other) == "true"
    assert any(w.startswith(f"{option} = false is forced: Pulp rejects that cache format") and "nothing is stored"
               in w for w in plan.warnings)


def test_an_http_url_means_a_plain_http_registry(tmp_path: Path, plugins: Plugins) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.cacheport]\nbackend = "pulp"\n'
                                             '[tool.cacheport.pulp]\nurl = "http://127.0.0.1:24880/"\n')
    plan = build_plan(load_config(tmp_path, {}), FEATURE, plugins)
    assert {e.get("registry.insecure") for e in (*plan.imports, *plan.exports)} == {"true"}
    assert plan.imports[0].get("ref") == "127.0.0.1:24880/group/app/cache:feature-login-form"
    assert plan.logins[0].registry == "127.0.0.1:24880"
    secure = plan_for(tmp_path, plugins)
    assert all(e.get("registry.insecure") is None for e in (*secure.imports, *secure.exports))


@pytest.mark.parametrize("url", ["pulp.example.com/group", "ftp://pulp.example.com", "https://"])
def test_a_url_that_is_not_a_host_is_an_error(tmp_path: Path, plugins: Plugins, url: str) -> None:
    (tmp_path / "pyproject.toml").write_text(f'[tool.cacheport]\nbackend = "pulp"\n[tool.cacheport.pulp]\nurl = "{url}"\n')
    with pytest.raises(ConfigError, match="must be a registry host"):
        build_plan(load_config(tmp_path, {}), FEATURE, plugins)


def test_the_url_is_required(tmp_path: Path, plugins: Plugins) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.cacheport]\nbackend = "pulp"\n')
    with pytest.raises(ConfigError, match="backend 'pulp' needs option 'url'"):
        build_plan(load_config(tmp_path, {}), FEATURE, plugins)


@pytest.mark.parametrize(("options", "expected"), [
    ({"url": "pulp.example.com"}, "https://pulp.example.com"),
    ({"url": "pulp.example.com", "insecure": True}, "http://pulp.example.com"),
    ({"url": "http://pulp.example.com:8080"}, "http://pulp.example.com:8080"),
    ({"url": "https://pulp.example.com", "insecure": True}, "https://pulp.example.com"),
    ({"url": "pulp.example.com", "api-url": "https://api.example.com/api/pulp/"}, "https://api.example.com/api/pulp"),
])
def test_api_url_defaults_to_the_registry_host(options: dict[str, object], expected: str) -> None:
    assert cacheport_pulp.api_url(options) == expected


def test_logins_carry_variable_names_never_values(tmp_path: Path, plugins: Plugins) -> None:
    env = {"PULP_USERNAME": "builder", "PULP_PASSWORD": "s3cret-pw", "CI_PASS": "other-s3cret"}
    plan = plan_for(tmp_path, plugins, env=env)
    assert plan.logins == (Login("pulp.example.com", "PULP_PASSWORD", "PULP_USERNAME", ""),)
    custom = plan_for(tmp_path, plugins, 'username = "ci"\npassword-env = "CI_PASS"\nusername-env = ""\n', env=env)
    assert custom.logins == (Login("pulp.example.com", "CI_PASS", "", "ci"),)
    for p in (plan, custom):
        shown = render.as_json(p) + render.explain(p) + render.args(p) + render.dotenv(p) + repr(p)
        assert "s3cret" not in shown
    # its own login is the only one: no "username-env is set but password-env is not" from the kit
    assert not [w for w in plan.warnings + custom.warnings if "password-env" in w], plan.warnings + custom.warnings


def test_discovered_as_an_installed_third_party_distribution() -> None:
    plugins = load({})
    info = next(i for i in plugins.infos if i.name == "pulp")
    assert (info.distribution, info.source, info.module, info.error) == (
        "cacheport-pulp", "entry point", "cacheport_pulp", None)
    assert plugins.backends()["pulp"] is cacheport_pulp.BACKEND
    assert plugins.backend_owners()["pulp"] == info
    assert "pulp" not in load({"CACHEPORT_LOAD_PLUGINS": ""}).backends()


def test_the_plugin_uses_only_the_public_api() -> None:
    source = PLUGIN / "src" / "cacheport_pulp"
    imported = {line.split()[1] for f in source.glob("*.py") for line in f.read_text().splitlines()
                if line.startswith(("from cacheport", "import cacheport"))}
    assert imported <= {"cacheport", "cacheport.kit", "cacheport.refs", "cacheport.errors", "cacheport_pulp"}


def test_every_option_is_in_the_plugin_readme() -> None:
    text = (PLUGIN / "README.md").read_text()
    for option in cacheport_pulp.OPTIONS:
        assert f"| `{option.name}` |" in text, option.name


def _modules_after(code: str, env: dict[str, str]) -> list[str]:
    # a None entry in sys.modules is a module kept from loading (httpx's own CLI), not one that was loaded
    probe = (f"import sys\n{code}\nprint(sorted({HEAVY!r} & "
             "{m.split('.')[0] for m, mod in sys.modules.items() if mod is not None}))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_loading_the_plugin_imports_nothing_heavy(clean_env: dict[str, str]) -> None:
    assert _modules_after("import cacheport_pulp", clean_env) == []
    args = ("from cacheport.cli import main\n"
            "try:\n    main(['args', '--backend', 'pulp', '--set', 'url=pulp.example.com'])\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code\n")
    assert _modules_after(args, clean_env) == []
    # ...while doctor does load them, which is where they belong.
    assert set(_modules_after("import cacheport_pulp.checks", clean_env)) >= {"pulp_glue", "requests"}


class _TokenRegistry(BaseHTTPRequestHandler):
    """A registry that wants a Bearer token, as Pulp does with token auth on (its default)."""

    token_requests = 0

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        if self.path.startswith("/token"):
            type(self).token_requests += 1
            ok = auth == "Basic dTpw"  # u:p
            self._send(200 if ok else 401, {"token": "t0k"} if ok else {})
        elif auth != "Bearer t0k":
            challenge = (f'Bearer realm="http://{self.headers["Host"]}/token",service="pulp",'
                         'scope="repository:team/cache:pull"')
            self._send(401, {}, {"WWW-Authenticate": challenge})
        elif self.path.split("?")[0] == "/v2/team/cache/tags/list":  # a page size may follow
            self._send(200, {"name": "team/cache", "tags": ["main", "v1"]})
        elif self.path == "/v2/team/cache/manifests/main":
            self._send(200, {"schemaVersion": 2, "config": {"mediaType": "application/vnd.buildkit.cacheconfig.v0"}})
        else:
            self._send(200, {"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json"}})

    def _send(self, code: int, body: dict[str, object], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def token_registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_cache_tags_are_found_through_a_token_protected_registry(token_registry: str) -> None:
    from cacheport_pulp.checks import Registry

    _TokenRegistry.token_requests = 0
    registry = Registry(token_registry, ("u", "p"), verify=True)
    assert registry.caches(["team/cache"]) == ({"team/cache": ["main"]}, [])  # v1 is an image, not cache
    assert _TokenRegistry.token_requests == 1  # one token per repository, reused


def test_doctor_gives_up_on_a_server_that_never_answers(tmp_path: Path, plugins: Plugins,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from cacheport_pulp import checks

    monkeypatch.setattr(checks, "TIMEOUT", 0.5)
    with socket.socket() as silent:  # accepts connections (the backlog does), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        plan = plan_for(tmp_path, plugins, env={"CACHEPORT_PULP__URL": url})
        found = checks.run(plan.request, {})  # type: ignore[arg-type]
    assert [(c.name, c.ok) for c in found] == [("pulp export format", True), ("pulp server", False)]
    assert found[1].detail == f"no Pulp API at {url}: no answer within 0.5 s"
