"""Amazon Security Lake custom sources: each closed day of the archive as OCSF Parquet, one source per class.

Security Lake reads a custom source from its own prefix of the lake's bucket (its Glue crawler then
catalogues it). Its published requirements for custom sources: one OCSF event class per source,
Apache Parquet, partitions ``ext/{source}/region={region}/accountId={account}/eventDay=YYYYMMDD/``,
zstd preferred, records sorted by time, data pages up to 1 MB (uncompressed) and row groups up to
256 MB (compressed). This module writes that layout, locally with DuckDB:

    {root}/ext/{source}/region={r}/accountId={a}/eventDay=YYYYMMDD/{provider}.parquet   (the data)
    {root}/_audit_collector/{provider}/dt=YYYY-MM-DD.json                             (what it came from)

Exactly once, by compaction's rule: a day is written only when closed (``compaction.day_closed``), and
again only when its raw objects changed (the same source digest as compaction's). Each (class,
provider, day) is one file with a fixed name, replaced whole by an atomic rename, so a reader sees
the old day or the new one, never both; the day's marker is written last, so a crash at any step is
finished by the next run. Files start life outside ``ext/``: the crawler never sees a partial one.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit_collector.collector.provider import Descriptor
from audit_collector.compaction.local import local_digest, raw_objects
from audit_collector.compaction.rules import day_closed
from audit_collector.errors import ArchiveError, ConfigError
from audit_collector.ocsf import mapping
from audit_collector.ocsf.classes import CLASSES, OcsfClass
from audit_collector.ocsf.views import OBJECT_COLUMNS
from audit_collector.storage.files import atomic_write

EXT = "ext"
STATE = "_audit_collector"  # markers and files being written: outside ext/, where the crawler looks
PAGE_BYTES = 512 * 1024  # DuckDB's limit is best effort (a page ends after the value that crosses it)
ROW_GROUP_BYTES = 128 * 1024 * 1024  # uncompressed: compressed, a row group is far under 256 MB
ROW_GROUP_ROWS = 122_880
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
_ACCOUNT = re.compile(r"^\d{12}$")
_PREFIX = re.compile(r"^[a-z][a-z0-9-]{0,12}$")  # + "-" + the longest short class name: 20 characters


@dataclass(frozen=True)
class LakeTarget:
    """Where the custom sources live: a local folder standing for the lake's bucket, its region and account."""

    root: Path
    region: str
    account_id: str
    source_prefix: str = "auditcol"

    def __post_init__(self) -> None:
        if not _REGION.fullmatch(self.region):
            raise ConfigError(f"not an AWS region: {self.region!r}")
        if not _ACCOUNT.fullmatch(self.account_id):
            raise ConfigError(f"an AWS account id is 12 digits, got {self.account_id!r}")
        if not _PREFIX.fullmatch(self.source_prefix):
            raise ConfigError(
                f"a source prefix is a lower-case letter then up to 12 letters, digits or -, got {self.source_prefix!r}"
            )

    def source(self, ocsf: OcsfClass) -> str:
        """The custom source of one class: Security Lake wants names of at most 20 characters (its provider
        role is named after the source), so the class goes by a short name (``OcsfClass.lake``)."""
        return f"{self.source_prefix}-{ocsf.lake[0]}"

    def day_folder(self, ocsf: OcsfClass, day: str) -> Path:
        return (
            self.root
            / EXT
            / self.source(ocsf)
            / f"region={self.region}"
            / f"accountId={self.account_id}"
            / f"eventDay={day.replace('-', '')}"
        )

    def marker(self, descriptor: Descriptor, day: str) -> Path:
        return self.root / STATE / descriptor.name / f"dt={day}.json"


# --------------------------------------------------------------------------- the Parquet schema

_TEXT = "VARCHAR"


def _struct(fields: Iterable[tuple[str, str]]) -> str:
    return "STRUCT(" + ", ".join(f'"{name}" {kind}' for name, kind in fields) + ")"


def schema(ocsf: OcsfClass) -> dict[str, str]:
    """The columns (DuckDB types) of a class's files: the OCSF attributes the mapping fills, nested."""
    cols = {
        "time": "BIGINT",
        "class_uid": "INTEGER",
        "class_name": _TEXT,
        "category_uid": "INTEGER",
        "category_name": _TEXT,
        "activity_id": "INTEGER",
        "activity_name": _TEXT,
        "type_uid": "BIGINT",
        "type_name": _TEXT,
        "severity_id": "INTEGER",
        "severity": _TEXT,
        "status_id": "INTEGER",
        "status": _TEXT,
        "metadata": _struct(
            [
                ("version", _TEXT),
                ("profiles", "VARCHAR[]"),
                ("product", _struct([("name", _TEXT), ("vendor_name", _TEXT)])),
                ("uid", _TEXT),
                ("event_code", _TEXT),
                ("log_name", _TEXT),
                ("original_time", _TEXT),
            ]
        ),
        "actor": _struct(
            [
                ("user", _struct([("uid", _TEXT), ("name", _TEXT), ("email_addr", _TEXT)])),
                ("session", _struct([("uid", _TEXT)])),
            ]
        ),
    }
    if ocsf.has_src_endpoint:
        cols["src_endpoint"] = _struct([("ip", _TEXT)])
    else:
        cols["device"] = _struct([("ip", _TEXT), ("type_id", "INTEGER"), ("type", _TEXT)])
    if ocsf.has_http_request:
        cols["http_request"] = _struct([("user_agent", _TEXT)])
    if ocsf.fixed.get("service"):
        cols["service"] = _struct([("name", _TEXT)])
    for kind in ocsf.objects:
        if kind == "privileges":
            cols["privileges"] = "VARCHAR[]"
        elif kind in OBJECT_COLUMNS:
            body = _struct((attr, _TEXT) for attr in OBJECT_COLUMNS[kind])
            cols[kind] = f"{body}[]" if kind == "web_resources" else body
    cols["unmapped"] = "MAP(VARCHAR, VARCHAR)"
    cols["raw_data"] = _TEXT
    return cols


# --------------------------------------------------------------------------- one day


@dataclass
class LakeReport:
    provider: str
    written: dict[str, int] = field(default_factory=dict)  # day -> events written (all classes)
    files: int = 0
    up_to_date: list[str] = field(default_factory=list)
    open_days: list[str] = field(default_factory=list)
    without_class: int = 0  # events whose action has no class (or is not in the mapping)


def _lines(paths: list[Path]) -> Iterable[tuple[Path, int, str]]:
    """Each event's text, from every object of the day (as compaction and Athena's table read them)."""
    import zlib

    for path in paths:
        body = path.read_bytes()
        text = zlib.decompress(body, 31) if path.name.endswith(".gz") else body
        for number, line in enumerate(text.decode().split("\n"), 1):
            if line:
                yield path, number, line


def write_class(con: Any, target: LakeTarget, ocsf: OcsfClass, provider: str, day: str, events: list[dict]) -> Path:
    """One file for (class, provider, day), written beside the lake and renamed into place."""
    folder = target.day_folder(ocsf, day)
    folder.mkdir(parents=True, exist_ok=True)
    staging = target.root / STATE / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    final = folder / f"{provider}.parquet"
    with tempfile.TemporaryDirectory(dir=staging) as tmp:
        source, out = Path(tmp) / "events.jsonl", Path(tmp) / "part.parquet"
        source.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
        columns = ", ".join(f"'{name}': '{kind}'" for name, kind in schema(ocsf).items())
        con.execute(
            f"COPY (SELECT * FROM read_json('{source.as_posix()}', format='newline_delimited', "
            f"columns={{{columns}}}, maximum_object_size=67108864) ORDER BY time, metadata.uid) "
            f"TO '{out.as_posix()}' (FORMAT PARQUET, COMPRESSION ZSTD, DATA_PAGE_SIZE_LIMIT {PAGE_BYTES}, "
            f"ROW_GROUP_SIZE {ROW_GROUP_ROWS}, ROW_GROUP_SIZE_BYTES {ROW_GROUP_BYTES})"
        )
        os.replace(out, final)
    return final


def connection() -> Any:
    import duckdb  # the laptop extra

    return duckdb.connect(config={"threads": 1})  # a day of one class is small: no thread start-up


def export_day(
    target: LakeTarget,
    descriptor: Descriptor,
    day: str,
    paths: list[Path],
    digest: str,
    step: Callable[[str, str], None],
) -> tuple[int, int, int]:
    """Write one closed day of one provider; (events written, files, events without a class)."""
    m = mapping(descriptor)
    assert m is not None
    by_class: dict[str, list[dict]] = {}
    without = 0
    for path, number, line in _lines(paths):
        try:
            raw = json.loads(line)
        except ValueError as exc:  # before any file is written: the day stays as it was
            raise ArchiveError(
                f"{descriptor.name} dt={day}: {path.name} line {number} is not a JSON event ({exc}); "
                "nothing was written to Security Lake for this day"
            ) from exc
        event = m.to_ocsf(raw, line)
        if event is None:
            without += 1
            continue
        by_class.setdefault(CLASSES_BY_UID[event["class_uid"]], []).append(event)
    con = connection()
    try:
        for name, events in sorted(by_class.items()):
            write_class(con, target, CLASSES[name], descriptor.name, day, events)
            step(f"written {name}", day)
    finally:
        con.close()
    for ocsf in CLASSES.values():  # a class that no longer has events this day (a changed mapping)
        if ocsf.name not in by_class:
            (target.day_folder(ocsf, day) / f"{descriptor.name}.parquet").unlink(missing_ok=True)
    marker = target.marker(descriptor, day)
    marker.parent.mkdir(parents=True, exist_ok=True)
    record = {"source": digest, "classes": {n: len(e) for n, e in sorted(by_class.items())}, "without_class": without}
    atomic_write(marker, json.dumps(record, indent=2, sort_keys=True).encode())
    step("published", day)
    return sum(len(e) for e in by_class.values()), len(by_class), without


CLASSES_BY_UID = {c.uid: c.name for c in CLASSES.values()}


def export_local(
    archive_root: str | Path,
    descriptor: Descriptor,
    checkpoint: Mapping[str, Any],
    target: LakeTarget,
    *,
    prefix: str = "",
    grace_seconds: float = 0,
    on_step: Callable[[str, str], None] | None = None,
) -> LakeReport:
    """Every closed day whose raw objects changed since it was last written (or never was), as OCSF
    Parquet in the custom sources. ``on_step(step, day)`` runs after each file and each marker (tests)."""
    report = LakeReport(descriptor.name)
    if mapping(descriptor) is None:
        return report
    step = on_step or (lambda _step, _day: None)
    for day, paths in sorted(raw_objects(Path(archive_root), prefix, descriptor).items()):
        if not day_closed(descriptor, checkpoint, day, grace_seconds):
            report.open_days.append(day)
            continue
        digest = local_digest(paths)
        marker = target.marker(descriptor, day)
        if marker.exists() and json.loads(marker.read_text()).get("source") == digest:
            report.up_to_date.append(day)
            continue
        events, files, without = export_day(target, descriptor, day, paths, digest, step)
        report.written[day] = events
        report.files += files
        report.without_class += without
    return report
