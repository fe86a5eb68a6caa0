"""UTC dates and ISO 8601 text from epoch seconds: the archive's partitions and every report."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_date(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d")


def end_of_utc_day(epoch_seconds: int) -> int:
    """The last second of the UTC day holding ``epoch_seconds``."""
    return epoch_seconds - epoch_seconds % 86400 + 86399


def iso(epoch_seconds: float, timespec: str = "seconds") -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
