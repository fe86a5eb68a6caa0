"""Every SQL statement compaction runs, built in one place, for Athena and for the local DuckDB.

The SELECT that turns one day of raw JSON Lines into typed rows is one text: Athena runs it inside
``UNLOAD (...) TO 's3://…/run=<id>/' WITH (format = 'PARQUET', compression = 'ZSTD')``, DuckDB inside
``COPY (...) TO '…/run=<id>/part-0.parquet' (FORMAT PARQUET, COMPRESSION ZSTD)``. The view users query
is one text too, run by Athena and by DuckDB as written. Tests parse each statement for Athena's
dialect (sqlglot) and run the SELECTs and the view through DuckDB on real archives.

Names (the same in both engines), for a provider whose raw table is ``T``:

- ``T``: the raw table (unchanged): gzip JSON Lines, one object per collection run.
- ``T_lines``: the same objects, one string column ``line`` per event (the exact archived text) and
  ``dt``. Compaction reads it: the typed columns are extracted from the text, and the text is kept.
- ``T_compacted``: Parquet (zstd), one folder per compacted day, sorted by event type, time, id; the
  provider's typed columns (``Descriptor.compacted_columns``), ``event`` (the archived JSON text,
  byte for byte) and ``dt``.
- ``T_all``: what to query. Days up to the compaction watermark come from ``T_compacted``, later days
  from ``T_lines`` (with the same columns, extracted on the fly): each day from one side only.
"""

from __future__ import annotations

import re

from audit_collector.collector.provider import Descriptor

EVENT = "event"  # the column holding the archived JSON text
NO_DAY = "0000-00-00"  # the watermark before any day is compacted: every day is read raw
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LOCATION = re.compile(r"^[A-Za-z0-9:/._=+\-]+$")


def lines_table(descriptor: Descriptor) -> str:
    return f"{descriptor.table}_lines"


def compacted_table(descriptor: Descriptor) -> str:
    return f"{descriptor.table}_compacted"


def all_view(descriptor: Descriptor) -> str:
    return f"{descriptor.table}_all"


def compacted(descriptor: Descriptor) -> bool:
    return bool(descriptor.compacted_columns)


def columns(descriptor: Descriptor) -> list[tuple[str, str, str]]:
    """(name, Glue type, DuckDB type) of the compacted table, without the ``dt`` partition."""
    typed = [(c.name, c.athena, c.duckdb) for c in descriptor.compacted_columns]
    return [*typed, (EVENT, "string", "VARCHAR")]


def _day(day: str) -> str:
    if not _DAY.fullmatch(day):
        raise ValueError(f"not a day: {day!r}")
    return day


def _order(descriptor: Descriptor) -> str:
    return ", ".join(descriptor.compacted_sort or (descriptor.compacted_columns[0].name, descriptor.id_field))


def _extracted(descriptor: Descriptor) -> str:
    return ",\n       ".join([*(f"{c.sql} AS {c.name}" for c in descriptor.compacted_columns), f"line AS {EVENT}"])


def select_day(descriptor: Descriptor, day: str) -> str:
    """One day of raw events as compacted rows, in the provider's order (``compacted_sort``)."""
    return (
        f"SELECT {_extracted(descriptor)}\nFROM {lines_table(descriptor)}\n"
        f"WHERE dt = '{_day(day)}'\nORDER BY {_order(descriptor)}"
    )


def unload(descriptor: Descriptor, day: str, location: str) -> str:
    """Athena: write one day's compacted rows as Parquet (zstd) under a fresh, empty ``location``."""
    if not (location.startswith("s3://") and location.endswith("/") and _LOCATION.fullmatch(location)):
        raise ValueError(f"not an S3 folder: {location!r}")
    return f"UNLOAD ({select_day(descriptor, day)})\nTO '{location}'\nWITH (format = 'PARQUET', compression = 'ZSTD')"


# Dictionaries (and so bloom filters, which DuckDB writes for dictionary columns) up to 100,000 values
# a column: an id lookup then reads a few kilobytes a row group instead of the whole id column.
PARQUET_OPTIONS = "FORMAT PARQUET, COMPRESSION ZSTD, DICTIONARY_SIZE_LIMIT 100000"
VECTOR = 2048  # DuckDB's rows per vector: row groups end on one
ROW_GROUPS_A_DAY = 8
SMALLEST_ROW_GROUP = 2 * VECTOR
LARGEST_ROW_GROUP = 60 * VECTOR  # DuckDB's default


def row_group_rows(events: int) -> int:
    """Rows per row group for a day of ``events``: about eight a day, so that a question about one
    event type (the day is sorted by type) skips the row groups holding none, and reads only the
    columns it names in the others. Not under 4,096 rows, where per-group overhead starts to
    outweigh the skipping, nor over DuckDB's default."""
    wanted = -(-events // ROW_GROUPS_A_DAY)
    rows = -(-wanted // VECTOR) * VECTOR
    return max(SMALLEST_ROW_GROUP, min(LARGEST_ROW_GROUP, rows))


def count_day(descriptor: Descriptor, day: str) -> str:
    return f"SELECT count(*) FROM {lines_table(descriptor)} WHERE dt = '{_day(day)}'"


def copy_day(descriptor: Descriptor, day: str, path: str, events: int) -> str:
    """DuckDB: the same rows as Athena's UNLOAD, into one local Parquet file, in row groups sized
    for a day of ``events``."""
    if "'" in path:
        raise ValueError(f"a quote in a path: {path!r}")
    options = f"{PARQUET_OPTIONS}, ROW_GROUP_SIZE {row_group_rows(events)}"
    return f"COPY ({select_day(descriptor, day)})\nTO '{path}' ({options})"


def create_view(descriptor: Descriptor, watermark: str | None, lines: str | None = None) -> str:
    """``T_all``: days up to ``watermark`` (every raw day up to it is compacted) from ``T_compacted``,
    the later ones from the raw lines. A day is on one side of the watermark only, so every event
    appears once; moving the watermark is replacing the view, atomic in Glue and in DuckDB.

    ``lines`` names the raw side's table when not ``T_lines``: locally, a view over the days after
    the watermark only, so DuckDB does not list every raw object of the year to find none."""
    mark = _day(watermark or NO_DAY)
    names = ", ".join(name for name, _, _ in columns(descriptor))
    return (
        f"CREATE OR REPLACE VIEW {all_view(descriptor)} AS\n"
        f"SELECT {names}, dt\nFROM {compacted_table(descriptor)}\nWHERE dt <= '{mark}'\n"
        "UNION ALL\n"
        f"SELECT {_extracted(descriptor)}, dt\nFROM {lines or lines_table(descriptor)}\nWHERE dt > '{mark}'"
    )


def partition_columns_ddl(descriptor: Descriptor) -> list[dict[str, str]]:
    """The compacted table's columns as Glue wants them (``StorageDescriptor.Columns``)."""
    return [{"Name": name, "Type": athena} for name, athena, _ in columns(descriptor)]
