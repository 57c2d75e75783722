"""cacheport against a hostile registry (tests/fakes/hostile.py) and in odd corners: where credentials go, one-line
errors, bounded time, no secret and no terminal escape in what a person reads.

Every run of the CLI here is in-process under a watchdog (:func:`tests.fakes.hostile.run_cli`): a hang fails the test
with :class:`~tests.fakes.hostile.Hung`, a traceback is an exception out of ``main``.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cacheport.errors import RegistryError
from cacheport.oci import registry as client_module
from cacheport.oci.auth import Credentials
from cacheport.oci.realm import Realm, parse_realm, withheld
from cacheport.oci.reference import parse_reference
from cacheport.oci.registry import Registry
from tests.fakes.hostile import (
    BEHAVIOURS,
    MARKER,
    USER,
    HostileRegistry,
    Recorder,
    assert_clean,
    base_env,
    basic,
    run_cli,
    servers,
)


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[HostileRegistry, Recorder]]:
    with servers() as pair:
        yield pair


@pytest.fixture
def registry(hostile: tuple[HostileRegistry, Recorder]) -> HostileRegistry:
    hostile[0].seen.clear()
    hostile[1].seen.clear()
    return hostile[0]


@pytest.fixture
def recorder(hostile: tuple[HostileRegistry, Recorder]) -> Recorder:
    return hostile[1]


# --- the credential rule ----------------------------------------------------------------------------------------

def realm(url: str) -> Realm:
    return parse_realm(url, "registry.example")


@pytest.mark.parametrize(("registry_scheme", "registry_host", "url", "declared", "allowed"), [
    # GitLab.com: the registry sends its clients to another host, over HTTPS: fine, as Docker and containerd do.
    ("https", "registry.gitlab.com", "https://gitlab.com/jwt/auth", (), True),
    ("https", "registry.example:5000", "https://registry.example:5001/token", (), True),
    ("http", "127.0.0.1:5000", "https://auth.example/token", (), True),  # an upgrade is fine
    # A downgrade never, whoever the host is and whatever was declared.
    ("https", "registry.example", "http://registry.example/token", (), False),
    ("https", "registry.example", "http://auth.example/token", ("auth.example",), False),
    # Plain HTTP: the registry's own host (any port) yes, another host only when declared insecure.
    ("http", "127.0.0.1:5000", "http://127.0.0.1:5001/token", (), True),
    ("http", "127.0.0.1:5000", "http://127.0.0.2:5001/token", (), False),
    ("http", "reg.internal:5000", "http://auth.internal/token", (), False),
    ("http", "127.0.0.1:5000", "http://127.0.0.2:5001/token", ("127.0.0.2",), True),
    ("http", "127.0.0.1:5000", "http://127.0.0.2:5001/token", ("127.0.0.2:5001",), True),
    ("http", "127.0.0.1:5000", "http://127.0.0.2:5001/token", ("127.0.0.2:5002",), False),
    ("http", "127.0.0.1:5000", "http://127.0.0.2:5001/token", ("127.0.0.0/8",), True),
    ("http", "reg.internal:5000", "http://10.1.2.3/token", ("10.0.0.0/8",), True),
])
def test_the_credential_rule(registry_scheme: str, registry_host: str, url: str, declared: tuple[str, ...],
                             allowed: bool) -> None:
    why = withheld(registry_scheme, registry_host, realm(url), declared)
    assert (why is None) == allowed, why


@pytest.mark.parametrize("url", ["", "not a url", "::not a url::", "file:///etc/passwd", "javascript:alert(1)",
                                 "https://", "http://user:pw@auth.example/token", "http://h:99999999/token",
                                 "http://" + "a" * 64 + ".example/token", "https://x.example/\x1b[2J",
                                 "https://x.example/" + "a" * 3000])
def test_a_realm_that_is_not_an_http_url_is_one_line(url: str) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_realm(url, "registry.example")
    message = str(caught.value)
    assert message.startswith("registry.example: the token service it names") and "\n" not in message
    assert "\x1b" not in message and len(message) < 400


def test_basic_credentials_go_to_an_https_realm_on_another_host_as_gitlab_com_needs() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.host == "gitlab.example":
            return httpx.Response(200, json={"token": "t0k"})
        if request.headers.get("Authorization") == "Bearer t0k":
            return httpx.Response(200, json={"tags": ["main"]})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://gitlab.example/jwt/auth"'})

    with Registry("registry.gitlab.example", Credentials("u", "pw"), transport=httpx.MockTransport(handler)) as r:
        assert r.list_tags("g/app/cache") == ["main"]
    token_request = sent[1]
    assert str(token_request.url).startswith("https://gitlab.example/jwt/auth")
    assert token_request.headers["Authorization"] == basic("u", "pw")


@pytest.mark.parametrize("realm_url", ["http://registry.example/token", "http://auth.example/token"])
def test_an_https_registry_never_sends_credentials_to_an_http_realm(realm_url: str) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(401, headers={"WWW-Authenticate": f'Bearer realm="{realm_url}"'})

    with Registry("registry.example", Credentials("u", "pw"), transport=httpx.MockTransport(handler)) as r, \
            pytest.raises(RegistryError, match="downgrade"):
        r.list_tags("app/cache")
    assert [str(s.url) for s in sent] == ["https://registry.example/v2/app/cache/tags/list?n=1000"]


def test_without_credentials_any_http_realm_is_asked_anonymously(registry: HostileRegistry,
                                                                 recorder: Recorder) -> None:
    with Registry(registry.host) as client:
        assert client.list_tags("realm-elsewhere/cache") == ["main"]
    assert [s.path.split("?")[0] for s in recorder.seen] == ["/token"] and not recorder.with_credentials()


def test_credentials_go_to_the_registrys_own_host_or_a_declared_one(registry: HostileRegistry,
                                                                    recorder: Recorder) -> None:
    with Registry(registry.host, Credentials(USER, MARKER)) as client:
        assert client.list_tags("realm-own-host/cache") == ["main"]
    assert [s.authorization for s in registry.seen if s.path.startswith("/token")] == [basic(USER, MARKER)]
    with Registry(registry.host, Credentials(USER, MARKER)) as client, \
            pytest.raises(RegistryError, match="plain HTTP on another host"):
        client.list_tags("realm-elsewhere/cache")
    assert recorder.seen == []
    with Registry(registry.host, Credentials(USER, MARKER), insecure_hosts=[recorder.host]) as client:
        assert client.list_tags("realm-elsewhere/cache") == ["main"]
    assert [s.authorization for s in recorder.seen] == [basic(USER, MARKER)]


# --- every command, every credential source: where did the credentials go? ------------------------------------

SOURCES = ("password-env", "CI_REGISTRY_PASSWORD", "CI_JOB_TOKEN", "PULP_PASSWORD", "docker config")
COMMANDS = ("status", "prune", "doctor", "seed")


def _backend_for(source: str, registry: HostileRegistry, behaviour: str, tmp_path: Path,
                 env: dict[str, str]) -> tuple[str, list[str]]:
    """The backend and its --set flags that make ``source`` the credentials for ``behaviour``'s repository."""
    ref = registry.ref(behaviour)
    if source == "password-env":
        env["REG_PW"] = MARKER
        return "registry", [f"registry.ref={ref}", f"registry.username={USER}", "registry.password-env=REG_PW"]
    if source == "CI_REGISTRY_PASSWORD":
        env.update(CI_REGISTRY_USER=USER, CI_REGISTRY_PASSWORD=MARKER)
        return "gitlab", [f"gitlab.ref={ref}"]
    if source == "CI_JOB_TOKEN":
        env.update(CI_JOB_TOKEN=MARKER)
        return "gitlab", [f"gitlab.ref={ref}"]
    if source == "PULP_PASSWORD":
        env.update(PULP_USERNAME=USER, PULP_PASSWORD=MARKER)
        return "pulp", [f"pulp.url=http://{registry.host}", f"pulp.repository={behaviour}/cache"]
    docker = Path(env["HOME"]) / ".docker"
    docker.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{USER}:{MARKER}".encode()).decode()
    (docker / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    return "registry", [f"registry.ref={ref}"]


def command_line(command: str, backend: str, sets: list[str], tmp_path: Path) -> list[str]:
    flags = [f for s in sets for f in ("--set", s)]
    if command == "seed":
        return ["seed", "--from", backend, "--to", "local", "--all", *flags, "--set", f"local.src={tmp_path / 'dst'}"]
    if command == "prune":
        return ["prune", "-b", backend, "main", "--yes", *flags]
    return [command, "-b", backend, *flags]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("source", SOURCES)
def test_credentials_never_reach_a_plain_http_realm_on_another_host(
        source: str, command: str, registry: HostileRegistry, recorder: Recorder, tmp_path: Path) -> None:
    env = base_env(tmp_path)
    backend, sets = _backend_for(source, registry, "realm-elsewhere", tmp_path, env)
    result = run_cli(command_line(command, backend, sets, tmp_path), env, tmp_path / "work")
    assert recorder.with_credentials() == [], recorder.seen
    assert result.code == 1, result
    assert "credentials not sent to its token service" in result.out + result.err
    assert_clean(result)


@pytest.mark.parametrize("source", SOURCES)
def test_declared_insecure_the_realm_gets_them_and_the_command_works(
        source: str, registry: HostileRegistry, recorder: Recorder, tmp_path: Path) -> None:
    env = base_env(tmp_path, CACHEPORT_INSECURE_REGISTRIES=recorder.host)
    backend, sets = _backend_for(source, registry, "realm-elsewhere", tmp_path, env)
    result = run_cli(command_line("status", backend, sets, tmp_path), env, tmp_path / "work")
    assert result.code == 0, result
    assert "main" in result.out
    assert {s.authorization for s in recorder.with_credentials()} <= {basic(USER, MARKER),
                                                                      basic("gitlab-ci-token", MARKER)}
    assert recorder.with_credentials()
    assert_clean(result)


# --- hostile and broken registries: one line, in time, in every command ------------------------------------------

#: behaviour -> what the error line must say (a fragment).
BROKEN = {
    "realm-not-url": "is not usable",
    "realm-file": "is not an http:// or https:// URL",
    "token-list": "not an object with a token",
    "token-endless": "longer than 4 MiB",
    "redirect-loop": "redirected more than 10 times",
    "gzip-lie": "not encoded the way its Content-Encoding says",
    "errors-dict": "HTTP 400",
    "errors-strings": "HTTP 400",
    "tags-number": 'not {"tags": [names]}',
    "tags-mixed": "which is not a tag name",
    "tags-escape": "which is not a tag name",
    "not-json": "the tag list is not JSON",
    "deep-json": "the tag list is not JSON",
    "no-digest": "without a valid digest",
    "endless-body": "longer than 4 MiB",
    "echo": "HTTP 403",
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("behaviour", sorted(BROKEN))
def test_a_broken_registry_is_one_line_in_every_command(behaviour: str, command: str, registry: HostileRegistry,
                                                        recorder: Recorder, tmp_path: Path) -> None:
    env = base_env(tmp_path)
    backend, sets = _backend_for("password-env", registry, behaviour, tmp_path, env)
    result = run_cli(command_line(command, backend, sets, tmp_path), env, tmp_path / "work")
    assert_clean(result)
    assert result.code == 1, result
    expected = "did not return it as written" if (behaviour, command) == ("no-digest", "doctor") else BROKEN[behaviour]
    assert expected in result.out + result.err
    assert recorder.with_credentials() == []
    if command != "doctor":
        said = [line for line in result.err.splitlines() if not line.startswith("cacheport: warning: ")]
        assert len(said) == 1 and said[0].startswith("cacheport: error: "), result.err


@pytest.mark.parametrize("command", ["status", "seed"])
@pytest.mark.parametrize("behaviour", ["link-self", "link-foreign", "redirect-elsewhere"])
def test_pagination_and_redirects_stop_where_they_must(behaviour: str, command: str, registry: HostileRegistry,
                                                       recorder: Recorder, tmp_path: Path) -> None:
    env = base_env(tmp_path)
    backend, sets = _backend_for("password-env", registry, behaviour, tmp_path, env)
    result = run_cli(command_line(command, backend, sets, tmp_path), env, tmp_path / "work")
    assert_clean(result)
    assert recorder.with_credentials() == []
    if behaviour == "link-foreign":
        assert recorder.seen == []  # a next page on another host is not followed at all
    if behaviour != "redirect-elsewhere":
        assert result.code == 0, result
        with Registry(registry.host) as client:
            registry.seen.clear()
            assert client.list_tags(f"{behaviour}/cache") == ["main"]
        assert len(registry.seen) == 1  # the first page only: its next page is itself, or elsewhere


def test_an_endless_tag_list_stops_after_a_bounded_number_of_pages(registry: HostileRegistry,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "MAX_PAGES", 20)
    with Registry(registry.host) as client, pytest.raises(RegistryError, match="more than 20 pages"):
        client.list_tags("link-endless/cache")
    assert len([s for s in registry.seen if "/tags/list" in s.path]) == 20


def test_a_body_that_dribbles_in_is_cut_off_in_time(registry: HostileRegistry) -> None:
    with Registry(registry.host, timeout=1) as client, pytest.raises(RegistryError, match="longer than 1 s"):
        client.list_tags("slow-body/cache")


def test_a_blob_that_never_ends_is_cut_off_at_its_size(registry: HostileRegistry, tmp_path: Path) -> None:
    env = base_env(tmp_path)
    backend, sets = _backend_for("password-env", registry, "blob-endless", tmp_path, env)
    result = run_cli(command_line("seed", backend, sets, tmp_path), env, tmp_path / "work")
    assert_clean(result)
    assert result.code == 1 and "more than the" in result.out + result.err
    assert not [p for p in (tmp_path / "dst").rglob("*") if p.is_file() and p.stat().st_size > 4096]


def test_a_digest_header_that_is_not_a_digest_is_not_used(registry: HostileRegistry, tmp_path: Path) -> None:
    env = base_env(tmp_path)
    backend, sets = _backend_for("password-env", registry, "bad-digest-header", tmp_path, env)
    result = run_cli(command_line("prune", backend, sets, tmp_path), env, tmp_path / "work")
    assert_clean(result)
    assert result.code == 0, result
    deletes = [s.path for s in registry.seen if s.method == "DELETE"]
    assert deletes and all(p.startswith("/v2/bad-digest-header/cache/manifests/sha256:") for p in deletes)


def test_a_server_message_is_printable_bounded_and_never_our_credentials(registry: HostileRegistry) -> None:
    with Registry(registry.host, Credentials(USER, MARKER)) as client, pytest.raises(RegistryError) as caught:
        client.list_tags("echo/cache")
    message = str(caught.value)
    assert "\x1b" not in message and "\x07" not in message and "\\x1b[2J" in message
    assert MARKER not in message and basic(USER, MARKER)[6:] not in message and "***" in message
    assert len(message) <= 500 and "\n" not in message


def test_a_manifests_own_words_are_shown_escaped(registry: HostileRegistry, tmp_path: Path) -> None:
    """Seeding into Pulp converts the index, and a document that is none says so with its mediaType escaped."""
    env = base_env(tmp_path)
    _backend, sets = _backend_for("password-env", registry, "mediatype-escape", tmp_path, env)
    flags = [f for s in sets for f in ("--set", s)]
    result = run_cli(["seed", "--from", "registry", "--to", "pulp", "--all", *flags, "--set",
                      f"pulp.url=http://{registry.host}", "--set", "pulp.repository=good/cache"], env, tmp_path / "work")
    assert_clean(result)
    assert result.code == 1 and "x\\x1b[2J" in result.out and "is not a BuildKit cache index" in result.out


def test_every_behaviour_of_the_fixture_is_exercised() -> None:
    covered = set(BROKEN) | {"realm-elsewhere", "realm-own-host", "link-self", "link-foreign", "link-endless",
                             "redirect-elsewhere", "slow-body", "blob-endless", "bad-digest-header",
                             "mediatype-escape"}
    assert covered == set(BEHAVIOURS)


# --- the pulp plugin's own registry checks ----------------------------------------------------------------------

def test_pulps_doctor_follows_the_same_credential_rule(registry: HostileRegistry, recorder: Recorder) -> None:
    from cacheport_pulp.checks import Registry as PulpRegistry
    from cacheport_pulp.checks import RegistryError as PulpRegistryError

    pulp = PulpRegistry(f"http://{registry.host}", (USER, MARKER), verify=True)
    with pytest.raises(PulpRegistryError, match="plain HTTP on another host"):
        pulp.caches(["realm-elsewhere/cache"])
    assert recorder.seen == []
    own = PulpRegistry(f"http://{registry.host}", (USER, MARKER), verify=True)
    assert own.caches(["realm-own-host/cache"]) == ({}, [])  # main is an index here, not a pulp-style cache
    assert [s.authorization for s in registry.seen if s.path.startswith("/token")] == [basic(USER, MARKER)]
    declared = PulpRegistry(f"http://{registry.host}", (USER, MARKER), verify=True, insecure=(recorder.host,))
    declared.caches(["realm-elsewhere/cache"])
    assert [s.authorization for s in recorder.seen] == [basic(USER, MARKER)]


@pytest.mark.parametrize("behaviour", ["realm-not-url", "token-list", "token-endless", "redirect-loop",
                                       "gzip-lie", "tags-number", "tags-mixed", "not-json", "deep-json",
                                       "endless-body"])
def test_pulps_doctor_on_a_broken_registry_is_one_line(behaviour: str, registry: HostileRegistry) -> None:
    import requests
    from cacheport_pulp.checks import Registry as PulpRegistry
    from cacheport_pulp.checks import RegistryError as PulpRegistryError
    from cacheport_pulp.checks import _reason

    pulp = PulpRegistry(f"http://{registry.host}", (USER, MARKER), verify=True)
    with pytest.raises((PulpRegistryError, requests.RequestException)) as caught:
        pulp.caches([f"{behaviour}/cache"])
    assert "\n" not in _reason(caught.value) and MARKER not in _reason(caught.value)


@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
def test_an_https_pulp_never_sends_credentials_to_an_http_realm(tmp_path: Path, recorder: Recorder) -> None:
    """A real TLS registry (self-signed, insecure accepted) whose realm is plain HTTP: a downgrade, refused."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cacheport_pulp.checks import Registry as PulpRegistry
    from cacheport_pulp.checks import RegistryError as PulpRegistryError

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="http://{recorder.host}/token",service="s"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        pulp = PulpRegistry(f"https://127.0.0.1:{server.server_address[1]}", (USER, MARKER), verify=False,
                            insecure=(recorder.host,))
        with pytest.raises(PulpRegistryError, match="downgrade"):
            pulp.caches(["team/cache"])
    finally:
        server.shutdown()
        server.server_close()
    assert recorder.seen == []


# --- refs that are too long or not refs -------------------------------------------------------------------------

@pytest.mark.parametrize("ref", ["127.0.0.1:1/" + "a" * 70_000, "a" * 64 + ".example.com/app/cache",
                                 "127.0.0.1:99999/app", "reg.example/App Cache", "reg.example/app/\x1b[2J",
                                 "reg.example/app:" + "t" * 200, "[::1/app", "reg.example/a//b"])
@pytest.mark.parametrize("command", ["args", "status", "doctor"])
def test_an_invalid_or_overlong_ref_is_one_line(ref: str, command: str, tmp_path: Path) -> None:
    env = base_env(tmp_path)
    result = run_cli([command, "-b", "registry", "--set", f"ref={ref}"], env, tmp_path / "work")
    assert_clean(result)
    assert result.code == 2 and "is not an image repository" in result.err
    assert len(result.err) < 600


@pytest.mark.parametrize("ref", ["127.0.0.1:1/" + "a" * 70_000, "a" * 64 + ".example/app", "h/" + "A b"])
def test_the_client_refuses_what_docker_would_refuse(ref: str) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_reference(ref)
    assert "is not an image reference" in str(caught.value) and len(str(caught.value)) < 400
