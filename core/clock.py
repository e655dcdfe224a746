"""The one clock: UTC now, naive, to the second (the store keeps TIMESTAMP in UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def now_utc() -> datetime:
    """UTC now, naive, without microseconds (TIMESTAMPTZ would need pytz to read back)."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)
