from __future__ import annotations

import json
import shlex

import pytest

from cacheport import render
from cacheport.context import Context
from cacheport.entry import CacheEntry
from cacheport.errors import RenderError
from cacheport.plan import Plan

CTX = Context("gitlab", "g/app", branch="feat", default_branch="main")
PLAN = Plan(
    context=CTX,
    backend="registry",
    imports=(CacheEntry("registry", {"ref": "r/app:feat"}), CacheEntry("registry", {"ref": "r/app:main"})),
    exports=(CacheEntry("registry", {"ref": "r/app:feat", "mode": "max"}),),
)


def test_args_survive_word_splitting_unchanged() -> None:
    text = render.args(PLAN)
    assert text.split() == shlex.split(text) == [
        "--cache-from=type=registry,ref=r/app:feat",
        "--cache-from=type=registry,ref=r/app:main",
        "--cache-to=type=registry,ref=r/app:feat,mode=max",
    ]


def test_args_refuse_values_that_word_splitting_would_break() -> None:
    plan = Plan(CTX, "local", imports=(CacheEntry("local", {"src": "/my cache"}),), exports=())
    with pytest.raises(RenderError, match="--format lines"):
        render.args(plan)
    assert render.lines(plan) == '--cache-from=type=local,src=/my cache\n'


def test_json_is_the_plan() -> None:
    doc = json.loads(render.as_json(PLAN))
    assert [i["csv"] for i in doc["imports"]] == ["type=registry,ref=r/app:feat", "type=registry,ref=r/app:main"]
    assert doc["exports"][0]["attrs"] == {"ref": "r/app:feat", "mode": "max"}
    assert doc["context"]["branch"] == "feat"


def test_bake_file_has_cache_lists_per_target() -> None:
    doc = json.loads(render.bake(PLAN, ["app", "worker"]))
    assert set(doc["target"]) == {"app", "worker"}
    assert doc["target"]["app"]["cache-to"] == ["type=registry,ref=r/app:feat,mode=max"]
    assert doc["target"]["worker"]["cache-from"][1] == "type=registry,ref=r/app:main"


def test_buildctl_flags() -> None:
    assert render.buildctl(PLAN).splitlines() == [
        "--import-cache", "type=registry,ref=r/app:feat",
        "--import-cache", "type=registry,ref=r/app:main",
        "--export-cache", "type=registry,ref=r/app:feat,mode=max",
    ]


def test_github_output_uses_the_given_delimiter() -> None:
    text = render.github_output(PLAN, "EOF_abc")
    assert text == (
        "cache-from<<EOF_abc\ntype=registry,ref=r/app:feat\ntype=registry,ref=r/app:main\nEOF_abc\n"
        "cache-to<<EOF_abc\ntype=registry,ref=r/app:feat,mode=max\nEOF_abc\n"
    )


def test_github_output_refuses_csv_quoting_that_build_push_action_would_strip() -> None:
    plan = Plan(CTX, "local", imports=(CacheEntry("local", {"src": "/a,b"}),), exports=())
    with pytest.raises(RenderError, match="build-push-action"):
        render.github_output(plan, "D")


def test_dotenv_for_gitlab() -> None:
    lines = dict(line.split("=", 1) for line in render.dotenv(PLAN).splitlines())
    assert lines["CACHEPORT_CACHE_FROM"] == "type=registry,ref=r/app:feat type=registry,ref=r/app:main"
    assert lines["CACHEPORT_CACHE_TO"] == "type=registry,ref=r/app:feat,mode=max"
    assert lines["CACHEPORT_BUILDX_ARGS"] == render.args(PLAN)


def test_explain_and_json_redact_secret_attributes_but_args_carry_them() -> None:
    plan = Plan(CTX, "azblob", imports=(), exports=(CacheEntry("azblob", {"name": "n", "secret_access_key": "hunter2"}),),
                secret_attrs=frozenset({"secret_access_key"}))
    assert "hunter2" not in render.explain(plan)
    assert "hunter2" not in render.as_json(plan)
    assert "hunter2" in render.args(plan)
