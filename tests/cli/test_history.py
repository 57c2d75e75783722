"""``cacheport history`` as a user runs it: every format, the chart file, and a bad or newer record as one line
and exit 2 (or left out with --skip-bad)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cacheport.ops.history import DirectoryShelf, keep
from cacheport.records import Context
from cacheport.report import BuildReport, Steps
from cacheport.report import record as rec

T0 = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)


def run(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacheport", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=60)


def records(folder: Path, count: int = 5) -> list[rec.BuildRecord]:
    shelf = DirectoryShelf(folder)
    made = []
    for i in range(count):
        cached = 0 if i == 0 else 3
        report = BuildReport("succeeded", steps=Steps(3, cached, 3 - cached), wall_seconds=10.0 if i == 0 else 1.0)
        made.append(rec.record_of(report, Context("gitlab", "g/app", branch="main"), "gitlab", {},
                                  now=T0 + timedelta(minutes=i)))
        keep(shelf, made[-1], 30)
    return made


def test_history_of_a_directory_of_records_in_every_format(clean_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "recs"
    made = records(folder)
    text = run("history", "--records", str(folder), env=clean_env)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == f"cache history: 5 builds in {folder} (oldest first)"
    assert re.search(r"main +5 +0 \(0%\) +80% +▁████", text.stdout)  # cached by the builder, not imported
    assert "cold 10.0 s (median of 1), warm 1.0 s (median of 4); the cache saved 36.0 s over 4 warm builds" \
        in text.stdout
    out = run("history", "--records", str(folder), "--format", "json", "--last", "2", env=clean_env)
    doc = json.loads(out.stdout)
    assert [b["name"] for b in doc["builds"]] == [r.name for r in made[-2:]]
    page = tmp_path / "history.html"
    chart = tmp_path / "history.svg"
    out = run("history", "--records", str(folder), "--format", "html", "-o", str(page), "--chart", str(chart),
              env=clean_env)
    assert out.returncode == 0 and out.stdout == "", out.stderr
    assert page.read_text().count("<svg") == 1
    ET.parse(chart)
    md = run("history", "--records", str(folder), "--format", "markdown", env=clean_env)
    assert "![cache history" in md.stdout
    github = run("history", "--records", str(folder), "--format", "github", env=clean_env)  # for a job summary
    assert github.returncode == 0, github.stderr
    assert github.stdout.count("```mermaid\n") == 2 and "data:image" not in github.stdout
    assert "  bar [0, 100, 100, 100, 100]" in github.stdout  # each build's share of cached steps
    assert github.stdout.split("```mermaid")[0] == md.stdout.split("![cache history")[0]  # the same heading


def test_a_bad_record_is_one_line_and_exit_2_unless_skipped(clean_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "recs"
    records(folder, 2)
    bad = rec.record_name("main", T0 + timedelta(hours=1), "0badbad0")
    (folder / f"{bad}.json").write_text('{"schema": 2, "cacheport": "3.0"}')
    out = run("history", "--records", str(folder), env=clean_env)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "newer cacheport (3.0" in out.stderr
    assert f"history record {folder / bad}.json: " in out.stderr  # the file, as a user deletes it
    skipped = run("history", "--records", str(folder), "--skip-bad", env=clean_env)
    assert skipped.returncode == 0, skipped.stderr
    assert f"history record {folder / bad}.json left out" in skipped.stderr
    assert "2 builds" in skipped.stdout
    huge = folder / f"{rec.record_name('main', T0 + timedelta(hours=2), '0badbad1')}.json"
    huge.write_bytes(b" " * (3 << 20))
    out = run("history", "--records", str(folder), "--skip-bad", env=clean_env)
    assert f"{huge} left out: over 65536 bytes, the most a record may be" in out.stderr, out.stderr


def test_no_records_yet(clean_env: dict[str, str], tmp_path: Path) -> None:
    out = run("history", env=clean_env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("no build records in ") and "history" in out.stdout


def test_a_missing_records_directory_is_one_line_and_an_unknown_branch_is_named(
        clean_env: dict[str, str], tmp_path: Path) -> None:
    out = run("history", "--records", str(tmp_path / "nonexistent"), env=clean_env)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == f"cacheport: error: --records {tmp_path / 'nonexistent'}: no such directory; name the " \
        "directory a job kept its records in\n"
    folder = tmp_path / "recs"
    records(folder, 1)
    one = run("history", "--records", str(folder), env=clean_env)
    assert one.stdout.startswith(f"cache history: 1 build in {folder} (oldest first)\n"), one.stdout
    none = run("history", "--records", str(folder), "--branch", "nosuch", env=clean_env)
    assert none.returncode == 0, none.stderr
    assert none.stdout.startswith(f"no build records in {folder} for branch nosuch yet"), none.stdout


def test_help_has_examples(clean_env: dict[str, str]) -> None:
    out = run("history", "--help", env=clean_env)
    assert out.returncode == 0 and "Examples:" in out.stdout and "--format [text|json|markdown|github|html]" in out.stdout


def test_a_bug_in_keeping_the_record_is_one_warning_never_a_failed_build(capsys) -> None:  # type: ignore[no-untyped-def]
    from cacheport.cli.history import keep_record

    class Broken:
        @property
        def plugins(self) -> object:
            raise RuntimeError("a bug")

    keep_record(Broken(), "build")(BuildReport("succeeded"))  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert err == ("cacheport: warning: history: the build record was not kept (RuntimeError: a bug); the build is "
                   "unaffected\n")


def test_under_signed_trust_history_counts_only_signed_records_and_says_how_many_it_left_out(
        clean_env: dict[str, str]) -> None:
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from cacheport.kit import registry_client
    from cacheport.oci.repository import RegistryRepository
    from cacheport.ops.history import StoreShelf
    from cacheport.ops.signatures import StoreSigning
    from cacheport.signing import Policy, Signer, key_id, public_der
    from tests.fakes.registry import FakeRegistry

    key = Ed25519PrivateKey.generate()
    der = public_der(key)
    signing = StoreSigning(Policy((Signer(key_id(der), der),), "CACHE_SIGNING_KEY", None, "group/app", True), key)
    made = [rec.record_of(BuildReport("succeeded", steps=Steps(3, 3, 0), wall_seconds=1.0),
                          Context("gitlab", "group/app", branch="main"), "registry", {}, now=T0 + timedelta(minutes=i))
            for i in range(4)]
    with FakeRegistry() as fake:
        repo = RegistryRepository(registry_client(fake.host), "group/app/cache")
        signed, plain = StoreShelf(repo, "here", signing), StoreShelf(repo, "here")
        for r in made[:2]:
            signed.write(r.name, rec.to_json(r))
            signed.sign(r.name)
        for r in made[2:]:  # pushed with the registry's credentials alone, as any job of the project can
            plain.write(r.name, rec.to_json(r))
        env = {**clean_env, "GITLAB_CI": "true", "CI_PROJECT_PATH": "group/app", "CI_COMMIT_BRANCH": "feature",
               "CI_COMMIT_REF_NAME": "feature", "CI_DEFAULT_BRANCH": "main", "CI_PIPELINE_SOURCE": "push",
               "CI_COMMIT_REF_PROTECTED": "false", "CACHEPORT_BACKEND": "registry",
               "CACHEPORT_REGISTRY__REF": f"{fake.host}/group/app/cache", "CACHEPORT_TRUST": "signed",
               "CACHEPORT_SIGNERS": base64.b64encode(der).decode()}
        out = run("history", "--format", "json", env=env)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert [b["name"] for b in doc["builds"]] == [r.name for r in made[:2]]
        assert doc["left_out"]["count"] == 2
        assert {(e["name"], e["kind"]) for e in doc["left_out"]["records"]} == {(r.name, "unsigned") for r in made[2:]}
        assert all(e["reason"].startswith("not signed (sha256:") for e in doc["left_out"]["records"])
        assert out.stderr.strip() == ("cacheport: warning: 2 records left out: not signed by an allowed key "
                                      "(2: not signed)")
        plain_env = {k: v for k, v in env.items() if k not in ("CACHEPORT_TRUST", "CACHEPORT_SIGNERS")}
        every = json.loads(run("history", "--format", "json", env=plain_env).stdout)
        assert len(every["builds"]) == 4 and every["left_out"] == {"count": 0, "records": []}


def test_the_exports_rule_reads_no_records_when_one_is_corrupt_or_the_store_is_down(
        tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import contextlib
    from types import SimpleNamespace

    from cacheport.cli.history import recent_records
    from cacheport.errors import RegistryError
    from cacheport.ops import history

    folder = tmp_path / "recs"
    made = records(folder, 3)
    session = SimpleNamespace(plan=SimpleNamespace(context=Context("gitlab", "g/app", branch="main"), backend="gitlab"),
                              plugins=SimpleNamespace(backend=lambda _name: SimpleNamespace(store=False,
                                                                                            cache_type="registry")),
                              environ={}, cwd=tmp_path)
    monkeypatch.setattr(history, "settings_of", lambda _plan: history.Settings())
    monkeypatch.setattr(history, "signing_of", lambda _plan, _environ: None)
    monkeypatch.setattr(history, "open_shelf", lambda *_a, **_k: contextlib.nullcontext(DirectoryShelf(folder)))
    assert [r.id for r in recent_records(session)()] == [r.id for r in made]  # type: ignore[arg-type]
    assert capsys.readouterr().err == ""

    (folder / f"{made[1].name}.json").write_text("{not json")
    unread: list[str] = []
    assert recent_records(session, unread)() == []  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not be read" in err and "its exports go as planned" in err
    # explain gets the same reason the build says
    assert len(unread) == 1 and unread[0].startswith("1 of this branch's build records could not be read")
    assert unread[0] in err

    def down(*_a: object, **_k: object) -> object:
        raise RegistryError("127.0.0.1:9 is unreachable")

    monkeypatch.setattr(history, "open_shelf", down)
    assert recent_records(session)() == []  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "127.0.0.1:9 is unreachable" in err and "its exports go as planned" in err
    assert "RegistryError" not in err  # no class names in a user's line


def test_a_history_dir_that_is_a_file_is_one_line_naming_the_key(clean_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("x")
    (tmp_path / "cacheport.toml").write_text('backend = "local"\nhistory-dir = "not-a-dir"\n')
    out = run("history", env=clean_env, cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == "", out.stderr
    assert out.stderr.count("\n") == 1 and "Error:" not in out.stderr and "Traceback" not in out.stderr
    assert f"cacheport.toml history-dir = '{tmp_path / 'not-a-dir'}': not a directory" in out.stderr
    # the build's record: its warning says the same
    from cacheport.errors import ConfigError

    shelf = DirectoryShelf(tmp_path / "not-a-dir", "cacheport.toml history-dir")
    for attempt in (shelf.names, lambda: shelf.write("r", b"{}")):
        try:
            attempt()
        except ConfigError as exc:
            assert str(exc).startswith("cacheport.toml history-dir = ") and "not a directory" in str(exc)
        else:
            raise AssertionError("a file taken for a directory")


def test_prune_bad_deletes_the_unreadable_records_naming_each(clean_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "recs"
    made = records(folder, 2)
    bad = folder / f"{rec.record_name('main', T0 + timedelta(hours=1), '0badbad0')}.json"
    bad.write_text("{not json")
    out = run("history", "--records", str(folder), env=clean_env)
    assert out.returncode == 2 and "--prune-bad deletes every record that can't be read" in out.stderr
    pruned = run("history", "--records", str(folder), "--prune-bad", env=clean_env)
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout == (f"deleted build record {bad}: not JSON\n"
                             f"1 build record that could not be read deleted from {folder}\n")
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{r.name}.json" for r in made)
    again = run("history", "--records", str(folder), "--prune-bad", env=clean_env)
    assert again.stdout == f"no build records that can't be read in {folder}\n"


def test_prune_bad_keeps_what_it_cannot_read_and_prunes_one_branch(clean_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "recs"
    made = records(folder, 1)
    unreadable = folder / f"{rec.record_name('main', T0 + timedelta(hours=1), '0badbad1')}.json"
    unreadable.mkdir()  # named like a record: can't be read, so it is kept (it was deleted, then a traceback)
    on_main = folder / f"{rec.record_name('main', T0 + timedelta(hours=2), '0badbad2')}.json"
    on_dev = folder / f"{rec.record_name('dev', T0 + timedelta(hours=2), '0badbad3')}.json"
    on_main.write_text("{not json")
    on_dev.write_text("{not json")
    dev = run("history", "--records", str(folder), "--prune-bad", "--branch", "dev", env=clean_env)
    assert dev.returncode == 0, dev.stderr
    assert dev.stdout == (f"deleted build record {on_dev}: not JSON\n"
                          f"1 build record of branch dev that could not be read deleted from {folder}\n")
    every = run("history", "--records", str(folder), "--prune-bad", env=clean_env)
    assert every.returncode == 0 and every.stderr == "", every.stderr
    assert every.stdout.splitlines()[0] == f"deleted build record {on_main}: not JSON"
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{made[0].name}.json", unreadable.name])


def test_prune_bad_goes_on_past_a_record_it_cannot_delete_and_fails_at_the_end(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cacheport.cli.history import pruned
    from cacheport.errors import RegistryError

    class Stuck(DirectoryShelf):
        def delete(self, name: str) -> bool:
            if name.endswith("0badbad1"):
                raise RegistryError("cannot delete: Permission denied")
            return super().delete(name)

    names = [rec.record_name("main", T0 + timedelta(hours=i), f"0badbad{i}") for i in (1, 2)]
    for name in names:
        (tmp_path / f"{name}.json").write_text("{not json")
    with pytest.raises(RegistryError, match=r"^1 build record that can't be read could not be deleted"):
        pruned(Stuck(tmp_path))
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"cacheport: warning: could not delete build record {tmp_path / names[0]}.json (not JSON): "
                                "cannot delete: Permission denied"]
    assert out.splitlines()[0] == f"deleted build record {tmp_path / names[1]}.json: not JSON"
    assert [p.name for p in tmp_path.iterdir()] == [f"{names[0]}.json"]


@pytest.mark.parametrize("extra", [("--format", "json"), ("--last", "5"), ("-o", "out.txt"), ("--skip-bad",),
                                   ("--chart", "c.svg")])
def test_prune_bad_refuses_what_it_would_ignore(clean_env: dict[str, str], tmp_path: Path,
                                               extra: tuple[str, ...]) -> None:
    folder = tmp_path / "recs"
    records(folder, 1)
    bad = folder / f"{rec.record_name('main', T0 + timedelta(hours=1), '0badbad1')}.json"
    bad.write_text("{not json")
    out = run("history", "--records", str(folder), "--prune-bad", *extra, env=clean_env, cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == "", out
    assert len(out.stderr.splitlines()) == 1 and f"--prune-bad does not go with {extra[0]}" in out.stderr.replace(
        "-o/--output", "-o"), out.stderr
    assert bad.exists() and not (tmp_path / "out.txt").exists() and not (tmp_path / "c.svg").exists()


def test_explain_json_carries_the_export_rule_and_the_reason_records_were_not_read(
        clean_env: dict[str, str], tmp_path: Path) -> None:
    args = ("explain", "--format", "json", "--backend", "registry", "--set", "ref=127.0.0.1:9/app/cache")
    plain = json.loads(run(*args, env=clean_env, cwd=tmp_path).stdout)
    assert plain["export_rule"]["rule"] == "auto" and plain["export_rule"]["history"] is False
    assert [e["outcome"] for e in plain["export_rule"]["exports"]] == [None] * len(plain["exports"])
    out = run(*args, "--history", env=clean_env, cwd=tmp_path)  # nothing listens on 127.0.0.1:9
    assert out.returncode == 0, out.stderr
    rule = json.loads(out.stdout)["export_rule"]
    assert rule["history"] is True and rule["exports"][0]["outcome"] == "written"
    assert "could not read this branch's build records (127.0.0.1:9" in rule["exports"][0]["why"]
    assert "its exports go as planned" in out.stderr.splitlines()[-1]
