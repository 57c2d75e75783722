"""Go's RFC 3339 timestamps (BuildKit's progress, history and annotations) as Python datetimes.

A leaf: no I/O and no import of cacheport's.
"""

from __future__ import annotations

import re
from datetime import datetime

_NANOS = re.compile(r"(\.\d{6})\d+")


def go_time(value: object) -> datetime | None:
    """``value`` read as Go writes time (``2024-05-01T10:00:00.123456789Z``), or None when it is not one.

    Go writes nanoseconds, Python reads microseconds at most: the digits beyond are dropped.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(_NANOS.sub(r"\1", value.replace("Z", "+00:00")))
    except ValueError:
        return None
