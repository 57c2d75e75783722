from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cacheport.context import Context
from cacheport.refs import TAG_PATTERN, branch_refs, branch_tag, repository, slug

branch_names = st.text(min_size=1, max_size=300) | st.sampled_from(
    ["feature/x", "Feature/Ünïcode", "-lead", "..", "a" * 300, "日本語", "release/1.2.3", "_x"]
)


@pytest.mark.parametrize(
    "branch, expected",
    [
        # What GitLab puts in CI_COMMIT_REF_SLUG for these names.
        ("main", "main"),
        ("feature/Login-Form", "feature-login-form"),
        ("release/1.2.3", "release-1-2-3"),
        ("-leading--and-trailing-", "leading-and-trailing"),
        ("a" * 70, "a" * 63),
        ("x" * 62 + "/y", "x" * 62),
    ],
)
def test_slug_follows_gitlab_ref_slug(branch: str, expected: str) -> None:
    assert slug(branch) == expected


@given(branch_names, st.none() | st.text(max_size=80))
def test_every_branch_gives_a_valid_tag(branch: str, key: str | None) -> None:
    assert TAG_PATTERN.match(branch_tag(branch, key))


def test_names_without_ascii_still_get_distinct_tags() -> None:
    assert branch_tag("日本語") != branch_tag("中文")


def test_key_scopes_the_tag() -> None:
    assert branch_tag("main", "linux/arm64") == "linux-arm64-main"
    assert branch_tag("main", "linux/arm64") != branch_tag("main", "linux/amd64")


def test_repository_is_lower_cased() -> None:
    assert repository("Registry.Example.com/Group/App/cache/") == "registry.example.com/group/app/cache"


contexts = st.builds(
    Context,
    provider=st.just("test"),
    project=st.just("p"),
    branch=st.none() | branch_names,
    default_branch=st.none() | branch_names,
    target_branch=st.none() | branch_names,
    trusted=st.booleans(),
)


@given(contexts, st.none() | st.text(max_size=10))
def test_fallback_chain_starts_with_the_branch_and_has_no_duplicates(ctx: Context, key: str | None) -> None:
    imports, export = branch_refs("r.example/app/cache", ctx, key)
    assert len(set(imports)) == len(imports)
    if ctx.branch:
        assert imports[0] == f"r.example/app/cache:{branch_tag(ctx.branch, key)}"
    if export is not None:
        assert export == imports[0]


@given(contexts)
def test_untrusted_never_exports(ctx: Context) -> None:
    _imports, export = branch_refs("r/app", ctx)
    if not ctx.trusted:
        assert export is None


def test_mr_chain_is_branch_then_target_then_default() -> None:
    ctx = Context("gitlab", "g/app", branch="feat", target_branch="develop", default_branch="main")
    imports, export = branch_refs("reg/g/app/cache", ctx)
    assert imports == ("reg/g/app/cache:feat", "reg/g/app/cache:develop", "reg/g/app/cache:main")
    assert export == "reg/g/app/cache:feat"
