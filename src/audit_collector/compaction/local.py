"""Compaction on a laptop: DuckDB rewrites each closed day of the local archive as one sorted Parquet
file, and publishes it with ``_CURRENT.json`` (the rules are in ``rules.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit_collector.collector.provider import Descriptor
from audit_collector.compaction import sql
from audit_collector.compaction.rules import (
    CURRENT,
    DATA_FILE,
    compacted_prefix,
    day_closed,
    new_run_id,
    source_digest,
    watermark,
)
from audit_collector.errors import ArchiveError
from audit_collector.storage.files import atomic_write

# --------------------------------------------------------------------------- the local archive


@dataclass
class DayResult:
    day: str
    run: str
    events: int
    objects: int


@dataclass
class Report:
    provider: str
    compacted: list[DayResult] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    open_days: list[str] = field(default_factory=list)
    watermark: str | None = None


def raw_objects(root: Path, prefix: str, descriptor: Descriptor) -> dict[str, list[Path]]:
    """Raw objects by day."""
    days: dict[str, list[Path]] = {}
    base = root / f"{prefix}{descriptor.name}"
    for path in sorted(base.glob("dt=*/*")):  # every object: Athena's table reads them all, whatever the name
        if path.is_file() and not (path.name.startswith(".") and path.name.endswith((".tmp", ".new"))):
            days.setdefault(path.parent.name.removeprefix("dt="), []).append(path)
    return days


def local_digest(paths: Iterable[Path]) -> str:
    """The day's objects by name and MD5 (an S3 ETag for single-part uploads)."""
    return source_digest((p.name, hashlib.md5(p.read_bytes(), usedforsecurity=False).hexdigest()) for p in paths)


def read_markers(root: Path, prefix: str, descriptor: Descriptor) -> dict[str, dict[str, Any]]:
    """Published days: day -> the marker (run, source digest, files relative to the day folder)."""
    base = root / compacted_prefix(prefix, descriptor)
    out = {}
    for path in sorted(base.glob(f"dt=*/{CURRENT}")):
        out[path.parent.name.removeprefix("dt=")] = json.loads(path.read_text())
    return out


def compact_local(
    root: str | Path,
    descriptor: Descriptor,
    checkpoint: Mapping[str, Any],
    *,
    prefix: str = "",
    grace_seconds: float = 0,
    days: Iterable[str] | None = None,
    on_step: Callable[[str, str], None] | None = None,
) -> Report:
    """Compact every closed day whose raw objects changed since its last publication (or that
    never was published), with DuckDB. ``days`` limits the work to those days; ``on_step(step, day)``
    is called after each step ("written", "published", "cleaned"), for tests that crash there."""
    root = Path(root)
    report = Report(descriptor.name)
    if not sql.compacted(descriptor):
        return report
    with _compaction_lock(root / compacted_prefix(prefix, descriptor)):
        return _compact_days(root, prefix, descriptor, checkpoint, report, grace_seconds, days, on_step)


@contextlib.contextmanager
def _compaction_lock(folder: Path) -> Iterator[None]:
    """One local compaction of a provider at a time: a second waits, then finds the days done (two
    at once would each delete the other's run folder, leaving a pointer to nothing)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".compact.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _compact_days(
    root: Path,
    prefix: str,
    descriptor: Descriptor,
    checkpoint: Mapping[str, Any],
    report: Report,
    grace_seconds: float,
    days: Iterable[str] | None,
    on_step: Callable[[str, str], None] | None,
) -> Report:
    raw = raw_objects(root, prefix, descriptor)
    markers = read_markers(root, prefix, descriptor)
    wanted = set(days) if days is not None else None
    for day, paths in sorted(raw.items()):
        if wanted is not None and day not in wanted:
            continue
        if not day_closed(descriptor, checkpoint, day, grace_seconds):
            report.open_days.append(day)
            continue
        digest = local_digest(paths)
        marker = markers.get(day)
        if marker is not None and marker.get("source") == digest:
            report.up_to_date.append(day)
            continue
        report.compacted.append(_compact_day(root, prefix, descriptor, day, paths, digest, on_step))
    report.watermark = watermark(raw, read_markers(root, prefix, descriptor))
    return report


def _compact_day(
    root: Path,
    prefix: str,
    descriptor: Descriptor,
    day: str,
    paths: list[Path],
    digest: str,
    on_step: Callable[[str, str], None] | None,
) -> DayResult:
    step = on_step or (lambda _step, _day: None)
    day_dir = root / compacted_prefix(prefix, descriptor) / f"dt={day}"
    run = new_run_id()
    run_dir = day_dir / f"run={run}"
    run_dir.mkdir(parents=True, exist_ok=False)
    con = local_connection()
    try:
        define_lines(con, descriptor, paths)
        # Counted first (a plain read of the lines), so the row group size follows the day's size;
        # then sorted and written in one statement, the sorted day held once.
        events = con.execute(sql.count_day(descriptor, day)).fetchone()[0]
        written = con.execute(sql.copy_day(descriptor, day, (run_dir / DATA_FILE).as_posix(), events)).fetchone()[0]
        if written != events:
            raise ArchiveError(
                f"{descriptor.name} dt={day}: {events} raw events counted but {written} compacted (the day "
                "changed while it was read); nothing was published, run compact again"
            )
    finally:
        con.close()
    step("written", day)
    marker = {
        "run": run,
        "files": [f"run={run}/{DATA_FILE}"],
        "source": digest,
        "objects": len(paths),
        "events": events,
    }
    atomic_write(day_dir / CURRENT, json.dumps(marker, indent=2, sort_keys=True).encode())
    step("published", day)
    for stale in day_dir.glob("run=*"):  # earlier runs, and runs that crashed before publication
        if stale.name != f"run={run}":
            shutil.rmtree(stale, ignore_errors=True)
    step("cleaned", day)
    return DayResult(day, run, int(events), len(paths))


# --------------------------------------------------------------------------- DuckDB definitions


def local_connection() -> Any:
    """A DuckDB connection that speaks the Athena functions the shared SQL uses, in UTC."""
    import duckdb  # the laptop extra; the Lambda never imports this

    con = duckdb.connect()
    add_athena_functions(con)
    return con


def add_athena_functions(con: Any) -> None:
    con.execute("SET TimeZone = 'UTC'")
    for statement in (
        "CREATE MACRO json_extract_scalar(j, p) AS json_extract_string(j, p)",
        "CREATE MACRO from_unixtime(s) AS epoch_ms(CAST(s * 1000 AS BIGINT))",  # UTC, as in Athena
        "CREATE MACRO from_iso8601_timestamp(s) AS CAST(CAST(s AS TIMESTAMPTZ) AS TIMESTAMP)",  # UTC wall time,
        "CREATE MACRO json_format(j) AS CAST(j AS VARCHAR)",
    ):
        try:
            con.execute(statement)
        except Exception as exc:  # already defined on this connection
            if "already exists" not in str(exc):
                raise


def _read_lines(source: str) -> str:
    return (
        f"SELECT line, dt FROM read_csv({source}, columns={{'line': 'VARCHAR'}}, delim=chr(1), quote='', "
        "escape='', header=false, auto_detect=false, new_line='\\n', max_line_size=16777216, "
        "hive_partitioning=true, hive_types={'dt': 'VARCHAR'})"
    )


def _empty(descriptor_columns: list[tuple[str, str]]) -> str:
    select = ", ".join(f'CAST(NULL AS {kind}) AS "{name}"' for name, kind in descriptor_columns)
    return f"SELECT {select} WHERE false"


def _paths_literal(paths: Iterable[Path]) -> str:
    items = [p.as_posix() for p in paths]
    if any("'" in p for p in items):
        raise ValueError("a quote in an archive path")
    return "[" + ", ".join(f"'{p}'" for p in items) + "]"


def define_lines(con: Any, descriptor: Descriptor, paths: list[Path] | str | None) -> None:
    """``T_lines`` over given raw objects (a list), a glob (a string), or none."""
    name = sql.lines_table(descriptor)
    if not paths:
        body = _empty([("line", "VARCHAR"), ("dt", "VARCHAR")])
    elif isinstance(paths, str):
        body = _read_lines(f"'{paths}'")
    else:
        body = _read_lines(_paths_literal(paths))
    con.execute(f"CREATE OR REPLACE VIEW {name} AS {body}")


def define_views(con: Any, root: str | Path, prefix: str = "") -> None:
    """``T_lines``, ``T_compacted`` and ``T_all`` for every compacted provider, over a local archive,
    with the columns (and the view text) Athena has."""
    from audit_collector import providers

    add_athena_functions(con)
    root = Path(root)
    for descriptor in providers.all_descriptors():
        if not sql.compacted(descriptor):
            continue
        base = root / f"{prefix}{descriptor.name}"
        days = raw_days(base)
        define_lines(con, descriptor, base.as_posix() + "/dt=*/*.jsonl.gz" if days else None)
        markers = read_markers(root, prefix, descriptor)
        folder = root / compacted_prefix(prefix, descriptor)
        files = [folder / f"dt={day}" / name for day, marker in markers.items() for name in marker["files"]]
        typed = [(name, duck) for name, _, duck in sql.columns(descriptor)]
        if files:
            names = ", ".join(name for name, _ in typed)
            body = (
                f"SELECT {names}, dt FROM read_parquet({_paths_literal(files)}, hive_partitioning=true, "
                "hive_types={'dt': 'VARCHAR', 'run': 'VARCHAR'})"
            )
        else:
            body = _empty([*typed, ("dt", "VARCHAR")])
        con.execute(f"CREATE OR REPLACE VIEW {sql.compacted_table(descriptor)} AS {body}")
        mark = watermark(days, markers)
        open_days = [day for day in days if day > (mark or sql.NO_DAY)]
        open_lines = f"{sql.lines_table(descriptor)}_open"  # the raw days the view reads: after the mark
        globs = [f"{base.as_posix()}/dt={day}/*.jsonl.gz" for day in open_days]
        body = _read_lines("[" + ", ".join(f"'{g}'" for g in globs) + "]") if globs else None
        con.execute(
            f"CREATE OR REPLACE VIEW {open_lines} AS {body or _empty([('line', 'VARCHAR'), ('dt', 'VARCHAR')])}"
        )
        con.execute(sql.create_view(descriptor, mark, lines=open_lines))


def raw_days(base: Path) -> list[str]:
    """Days that hold at least one raw object (one directory listing a day, no stat of each object)."""
    if not base.is_dir():
        return []
    out = []
    for entry in os.scandir(base):
        if entry.is_dir() and entry.name.startswith("dt="):
            with os.scandir(entry.path) as objects:
                if any(o.name.endswith(".jsonl.gz") for o in objects):
                    out.append(entry.name.removeprefix("dt="))
    return sorted(out)
