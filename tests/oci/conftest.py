"""The fake registry (tests/fakes/registry.py), started and stopped around each test that asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.registry import FakeRegistry


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    with FakeRegistry() as registry:
        yield registry
