"""The plugin API's records: every one in the records package, and every hook spec, resolves its annotations at runtime, as
documentation and plugin tooling need (``typing.get_type_hints``); the public names stay where 0.1 put them."""

from __future__ import annotations

import inspect
import typing

import attrs
import pytest

import cacheport
from cacheport import hookspecs, records

RECORDS = sorted(
    (obj for obj in vars(records).values()
     if inspect.isclass(obj) and obj.__module__.startswith(f"{records.__name__}.")
     and not obj.__name__.startswith("_")),
    key=lambda cls: cls.__name__,
)


def test_every_plugin_facing_record_is_in_records() -> None:
    names = {cls.__name__ for cls in RECORDS}
    assert {"Plan", "Migration", "Context", "Trust", "EntryRequest", "Backend", "Renderer", "Setting"} <= names
    exported = {name for name in cacheport.__all__ if inspect.isclass(getattr(cacheport, name))}
    assert exported - names == {"CacheEntry"}  # the entry has its own module: data and its two conversions


@pytest.mark.parametrize("record", RECORDS, ids=lambda cls: cls.__name__)
def test_a_record_s_annotations_resolve(record: type) -> None:
    hints = typing.get_type_hints(record)
    if attrs.has(record):
        assert set(hints) >= {field.name for field in attrs.fields(record)}
    for name, member in vars(record).items():
        if isinstance(member, property) and member.fget is not None:
            typing.get_type_hints(member.fget)
        elif inspect.isfunction(member) and not name.startswith("__"):
            typing.get_type_hints(member)
        elif isinstance(member, (classmethod, staticmethod)):
            typing.get_type_hints(member.__func__)


def test_a_store_session_s_methods_name_the_records_a_plugin_builds() -> None:
    # A protocol's methods are what a plugin implements: their annotations must resolve too, to the records.
    assert typing.get_type_hints(records.StoreSession.put_manifest)["manifest"] is records.Manifest
    assert typing.get_type_hints(records.StoreSession.put_blob)["descriptor"] is records.Descriptor
    assert typing.get_type_hints(records.StoreSession.get_manifest)["return"] == records.Manifest | None


@pytest.mark.parametrize("hook", [name for name in vars(hookspecs) if name.startswith("cacheport_")])
def test_a_hook_spec_s_annotations_resolve(hook: str) -> None:
    hints = typing.get_type_hints(getattr(hookspecs, hook))
    assert "return" in hints


def test_the_records_stay_importable_from_where_0_1_documented_them() -> None:
    from cacheport.config import Setting, Source
    from cacheport.context import Context, Trust
    from cacheport.plan import Migration, Plan, ShownSetting

    assert (Context, Trust, Plan, Migration, ShownSetting, Setting, Source) == (
        records.Context, records.Trust, records.Plan, records.Migration, records.ShownSetting, records.Setting,
        records.Source)
    assert cacheport.Context is records.Context
