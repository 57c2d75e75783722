from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cacheport.entry import CacheEntry, split_csv
from cacheport.errors import EntryError

names = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,15}", fullmatch=True).filter(lambda n: n != "type")
values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30
) | st.sampled_from([",", '"', "=", 'a,"b"=c', "ü,ß", '""', " lead", "x="])
entries = st.builds(
    CacheEntry,
    type=names,
    attrs=st.lists(st.tuples(names, values), max_size=6, unique_by=lambda kv: kv[0]),
)


@given(entries)
def test_format_then_parse_is_identity(entry: CacheEntry) -> None:
    assert CacheEntry.parse(entry.format()) == entry


@given(entries)
def test_formatted_fields_split_back_into_key_value_pairs(entry: CacheEntry) -> None:
    fields = split_csv(entry.format())
    assert fields[0] == f"type={entry.type}"
    assert [tuple(f.split("=", 1)) for f in fields[1:]] == list(entry.attrs)


def test_a_field_with_a_comma_or_quote_is_quoted_whole() -> None:
    entry = CacheEntry("local", {"dest": "/tmp/a,b", "tag": 'say "hi"'})
    assert entry.format() == 'type=local,"dest=/tmp/a,b","tag=say ""hi"""'


def test_keys_and_type_are_lower_cased_and_values_kept() -> None:
    entry = CacheEntry.parse("Type=REGISTRY,REF=Host/Repo:Tag,Mode=MAX")
    assert entry == CacheEntry("registry", {"ref": "Host/Repo:Tag", "mode": "MAX"})


def test_a_string_without_equals_is_a_registry_ref() -> None:
    assert CacheEntry.parse("registry.example.com/app/cache:main") == CacheEntry(
        "registry", {"ref": "registry.example.com/app/cache:main"}
    )


@pytest.mark.parametrize("text, ref", [
    # buildx reads a ref-only string as CSV and then the one field again: quotes go, doubled ones too.
    ('"user/app:cache"', "user/app:cache"),
    ('"""user/app:cache"""', "user/app:cache"),
    ("user/app:cache\n", "user/app:cache"),
    ("user/app:cache\r\n", "user/app:cache"),
])
def test_a_ref_is_read_like_buildx_reads_it(text: str, ref: str) -> None:
    assert CacheEntry.parse(text) == CacheEntry("registry", {"ref": ref})


@given(entries)
def test_one_trailing_newline_is_dropped_as_buildx_does(entry: CacheEntry) -> None:
    assert CacheEntry.parse(entry.format() + "\n") == entry


def test_repeated_key_last_value_wins_like_buildx() -> None:
    assert CacheEntry.parse("type=local,src=a,src=b").get("src") == "b"


@pytest.mark.parametrize(
    "text, message",
    [
        ("ref=foo", "type= is required"),
        ("type=local,src", "not key=value"),
        ('type=local,src=a"b', 'bare "'),
        ('type=local,"src=a', "unterminated"),
        ('type=local,"src=a"x', "extraneous"),
        ("", "empty"),
        ("a,b", "several registry refs"),
        ('"a,b"', "not key=value"),
        ('""', "empty"),
        ("\n", "empty"),
        ("type=local,src=a\n\n", "line break"),
        ("type=local,", "not key=value"),
    ],
)
def test_malformed_entries_are_rejected(text: str, message: str) -> None:
    with pytest.raises(EntryError, match=message):
        CacheEntry.parse(text)


def test_values_with_line_breaks_are_rejected() -> None:
    with pytest.raises(EntryError, match="line break"):
        CacheEntry("local", {"src": "a\nb"})


def test_redaction_hides_only_named_attributes() -> None:
    entry = CacheEntry("azblob", {"account_url": "https://x", "secret_access_key": "s3cr3t"})
    text = entry.format(redact={"secret_access_key"})
    assert "s3cr3t" not in text
    assert "account_url=https://x" in text
    assert "secret_access_key=***" in text


def test_with_attrs_updates_and_removes() -> None:
    entry = CacheEntry("registry", {"ref": "r", "mode": "max"})
    assert entry.with_attrs(mode="min", ignore_error="true").attrs == (
        ("ref", "r"), ("mode", "min"), ("ignore-error", "true")
    )
    assert entry.with_attrs(mode=None).attrs == (("ref", "r"),)
