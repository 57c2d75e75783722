"""The plan of what runs where (tests/e2e/conftest.py) names only tests that exist, and every test it leaves out
names tests that do run instead. Needs no servers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import ELSEWHERE, ESSENTIALS, HISTORY, entry, generations_for

HERE = Path(__file__).resolve().parent


def defined(name: str) -> bool:
    """Whether ``test_x.py`` or ``test_x.py::test_name`` is a file (and test function) in this directory."""
    file, _, test = name.partition("::")
    path = HERE / file
    return path.is_file() and (not test or re.search(rf"^def {re.escape(test)}\(", path.read_text(), re.M) is not None)


@pytest.mark.parametrize("name", [*(n for tests in ESSENTIALS.values() for n in tests), *HISTORY, *ELSEWHERE])
def test_every_entry_of_the_plan_is_a_test_here(name: str) -> None:
    assert defined(name), f"{name} is in tests/e2e/conftest.py's plan, but no such test is in tests/e2e"


@pytest.mark.parametrize("name", list(ELSEWHERE))
def test_a_test_left_out_names_tests_that_run(name: str) -> None:
    instead = re.findall(r"\btest_\w+", ELSEWHERE[name])
    assert instead, f"{name}: ELSEWHERE names no test that proves it instead"
    for test in instead:
        [file] = [f.name for f in HERE.glob("test_*.py") if defined(f"{f.name}::{test}")]
        assert entry(f"tests/e2e/{file}::{test}", ELSEWHERE) is None, f"{test} is left out too"


def test_a_test_s_generations_follow_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    from . import conftest

    monkeypatch.delenv("CACHEPORT_E2E_GENERATIONS", raising=False)
    monkeypatch.setattr(conftest, "WHOLE_PLAN", False)
    assert generations_for("tests/e2e/test_pulp.py::test_pulp_cold_then_warm[old]") == ["current", "old"]
    assert generations_for("tests/e2e/test_pulp.py::test_doctor_passes_against_the_real_pulp") == ["current"]
    assert entry("tests/e2e/test_history.py::test_pulp_history[current]", HISTORY) == "test_history.py"
    assert entry("tests/e2e/test_builds.py::test_registry_backend[old]", HISTORY) is None


def test_a_test_outside_history_builds_with_history_off() -> None:
    from .harness import clean_environ

    assert clean_environ()["CACHEPORT_HISTORY"] == "off"
    assert entry("tests/e2e/test_plan.py::test_a_test_outside_history_builds_with_history_off", HISTORY) is None
