"""Cache entries: one `--cache-from`/`--cache-to` value, with buildx's CSV rules for parsing and formatting.

Only data and its two conversions live here; no knowledge of any backend.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping

import attrs

from cacheport.errors import EntryError

# buildkit's attribute and type names are lower-case words; anything else is a typo or an injection attempt.
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")
REDACTED = "***"


def _norm_attrs(value: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    pairs = value.items() if isinstance(value, Mapping) else value
    merged: dict[str, str] = {}
    for key, val in pairs:
        # buildx stores attributes in a map: the last value of a repeated key wins.
        merged[str(key).lower()] = str(val)
    return tuple(merged.items())


def _lower(value: object) -> str:
    return str(value).lower()


def _check_type(_inst: object, _attr: object, value: str) -> None:
    if not _NAME.match(value):
        raise EntryError(f"cache type {value!r} is not a lower-case name")


def _check_attrs(_inst: object, _attr: object, value: tuple[tuple[str, str], ...]) -> None:
    for key, val in value:
        if key == "type" or not _NAME.match(key):
            raise EntryError(f"cache attribute name {key!r} is not allowed")
        if "\n" in val or "\r" in val:
            raise EntryError(f"cache attribute {key}: a value cannot contain a line break")


@attrs.frozen
class CacheEntry:
    """One BuildKit cache import or export.

    Attributes:
        type: the cache type (``registry``, ``local``, ``gha``, ...), lower-case.
        attrs: ordered ``(key, value)`` pairs; keys are lower-cased and unique.
    """

    type: str = attrs.field(converter=_lower, validator=_check_type)
    attrs: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=_norm_attrs, validator=_check_attrs
    )

    @classmethod
    def parse(cls, text: str) -> CacheEntry:
        """Parse one entry as buildx does; a string with no ``=`` at all is a registry ref.

        Like buildx (and the CSV reader it uses), one trailing newline is dropped, and a ref-only string
        is unquoted and then read again as an entry of its own: ``"user/app:cache"`` is the ref
        ``user/app:cache``.
        """
        text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
        if text == "":
            raise EntryError("empty cache entry")
        if "=" not in text:
            fields = split_csv(text)
            if len(fields) > 1:
                raise EntryError(f"{text!r}: several registry refs in one entry; give one per flag")
            text = fields[0]
        fields = split_csv(text)
        if len(fields) == 1 and "=" not in fields[0]:
            if not fields[0]:
                raise EntryError("empty cache entry")
            return cls("registry", (("ref", fields[0]),))
        kind = ""
        pairs: list[tuple[str, str]] = []
        for field in fields:
            key, sep, value = field.partition("=")
            if not sep:
                raise EntryError(f"{text!r}: field {field!r} is not key=value")
            if key.lower() == "type":
                kind = value
            else:
                pairs.append((key, value))
        if not kind:
            raise EntryError(f"{text!r}: type= is required (for example type=registry,ref=...)")
        return cls(kind, pairs)

    def format(self, redact: Collection[str] = ()) -> str:
        """buildx's CSV form; attributes named in ``redact`` show as ``***``."""
        fields = [f"type={self.type}"]
        for key, value in self.attrs:
            field = f"{key}={REDACTED if key in redact else value}"
            if "," in field or '"' in field:
                field = '"' + field.replace('"', '""') + '"'
            fields.append(field)
        return ",".join(fields)

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of attribute ``key``, or ``default``."""
        return dict(self.attrs).get(key, default)

    def with_attrs(self, **updates: str | None) -> CacheEntry:
        """A copy with attributes set (underscores in names become dashes); None removes one."""
        merged = dict(self.attrs)
        for key, value in updates.items():
            key = key.replace("_", "-")
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return CacheEntry(self.type, merged)


def split_csv(text: str) -> list[str]:
    """Split one CSV record the way Go's encoding/csv does (no lazy quotes, no trimming)."""
    fields: list[str] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            i += 1
            buf: list[str] = []
            while True:
                j = text.find('"', i)
                if j < 0:
                    raise EntryError(f"{text!r}: unterminated quoted field")
                buf.append(text[i:j])
                if j + 1 < n and text[j + 1] == '"':
                    buf.append('"')
                    i = j + 2
                    continue
                i = j + 1
                break
            if i < n and text[i] != ",":
                raise EntryError(f"{text!r}: extraneous or missing \" in quoted field")
            fields.append("".join(buf))
        else:
            j = text.find(",", i)
            end = n if j < 0 else j
            field = text[i:end]
            if '"' in field:
                raise EntryError(f"{text!r}: bare \" in a field; quote the whole field instead")
            fields.append(field)
            i = end
        if i >= n:
            return fields
        i += 1  # the comma
