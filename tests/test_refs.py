from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cacheport.context import Context
from cacheport.refs import SLUG_PATTERN, TAG_PATTERN, branch_refs, branch_tag, reference_problem, repository, slug

# These hold the names to the trust rules' defaults, on contexts made by hand: the deprecated path (a context
# without the plan's decision), which warns. tests/test_trust.py covers the decided one.
pytestmark = pytest.mark.filterwarnings("ignore:a context without a trust decision:DeprecationWarning")

branch_names = st.text(min_size=1, max_size=300) | st.sampled_from(
    ["feature/x", "Feature/Ünïcode", "-lead", "..", "a" * 300, "日本語", "release/1.2.3", "_x"]
)


# GitLab's own cases for Gitlab::Utils.slugify (spec/lib/gitlab/utils_spec.rb), which computes
# CI_COMMIT_REF_SLUG: downcase, gsub(/[^a-z0-9]/, '-'), [0..62], then leading and trailing '-' removed.
GITLAB_SPEC_CASES = [
    ("TEST", "test"),
    ("project_with_underscores", "project-with-underscores"),
    ("namespace/project", "namespace-project"),
    ("a" * 70, "a" * 63),
    ("test_trailing_", "test-trailing"),
]
# The same rule on the names that tell it apart from a "collapse the separators" slug.
MORE_CASES = [
    ("main", "main"),
    ("feature/Login-Form", "feature-login-form"),
    ("release/1.2.3", "release-1-2-3"),
    # Separator runs: every character becomes its own '-', so a-b, a--b and a_-b are three tags.
    ("deps/bump__v2", "deps-bump--v2"),
    ("a-b", "a-b"),
    ("a--b", "a--b"),
    ("a_-b", "a--b"),
    ("feature//x", "feature--x"),
    ("-leading--and-trailing-", "leading--and-trailing"),
    ("__init__", "init"),
    # The cut comes first, then the strip: a cut that ends in '-' loses it, and so do the '-' before it.
    ("x" * 62 + "/y", "x" * 62),
    ("x" * 61 + "//yy", "x" * 61),
    ("x" * 63 + "-tail", "x" * 63),
    ("/" + "y" * 63, "y" * 62),
    # Non-ASCII letters are not [a-z0-9] once lower-cased: each one is a '-'.
    ("Fix/Ünïcode", "fix--n-code"),
    ("ÄB", "b"),
]


@pytest.mark.parametrize(("branch", "expected"), GITLAB_SPEC_CASES + MORE_CASES)
def test_slug_is_gitlab_s_ci_commit_ref_slug(branch: str, expected: str) -> None:
    assert slug(branch) == expected


@pytest.mark.parametrize("branch", ["___", "-", "日本語", "üï", "/.-_"])
def test_a_name_gitlab_slugs_to_nothing_gets_a_hash_tag(branch: str) -> None:
    # GitLab's CI_COMMIT_REF_SLUG is empty for these; an empty tag is invalid, so: x + 12 hex digits of sha256.
    import hashlib

    assert slug(branch) == "x" + hashlib.sha256(branch.encode()).hexdigest()[:12]
    assert TAG_PATTERN.match(branch_tag(branch))


@given(branch_names)
def test_a_slug_has_gitlab_s_shape(branch: str) -> None:
    out = slug(branch)
    assert SLUG_PATTERN.match(out)
    assert len(out) <= 63 and not out.startswith("-") and not out.endswith("-")


def test_the_ci_s_own_slug_names_the_branch_s_tag() -> None:
    # gitlab-ci-local, for one, collapses separator runs; the tag must be what the pipeline calls the branch.
    ctx = Context("gitlab", "g/app", branch="deps/bump__v2", default_branch="main",
                  branch_slugs=(("deps/bump__v2", "deps-bump-v2"),))
    assert branch_tag("deps/bump__v2", None, ctx) == "deps-bump-v2"
    assert branch_tag("deps/bump__v2", "worker", ctx) == "worker-deps-bump-v2"
    assert branch_tag("main", None, ctx) == "main"
    assert branch_refs("reg/g/app/cache", ctx) == (("reg/g/app/cache:deps-bump-v2", "reg/g/app/cache:main"),
                                                   "reg/g/app/cache:deps-bump-v2")


def test_a_slug_for_one_branch_never_names_another() -> None:
    # seed re-plans with another branch in the same context: the job's slug must not follow it there.
    ctx = Context("gitlab", "g/app", branch="feature/x", branch_slugs=(("feature/x", "feature-x"),))
    other = attrs.evolve(ctx, branch="release/2")
    assert branch_refs("r/app", other)[1] == "r/app:release-2"


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


@pytest.mark.parametrize("ref", ["https://127.0.0.1:5000/app/cache", "oci://reg.example.com/app/cache",
                                 "http://u:secret@reg.example.com/app"])
def test_a_url_in_place_of_a_ref_is_told_to_drop_its_scheme_not_that_its_port_is_wrong(ref: str) -> None:
    problem = reference_problem(ref)
    assert problem is not None and problem.startswith("a ref is host/path, with no '") and "port" not in problem
    assert "secret" not in problem
