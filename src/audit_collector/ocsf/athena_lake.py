"""Security Lake custom sources in AWS: the compaction function writes each closed day as OCSF Parquet
with Athena, in the layout, schema and file names ``lake.py`` writes locally.

Why Athena: the function has no Parquet writer (256 MB, no DuckDB or pyarrow in the package) and the
rows are already a SELECT: the ``ocsf_<class>`` views' per-provider SELECT (``views.py``), read from
the day's raw lines instead of ``T_all``, with an outer SELECT that nests the flat view columns into
the OCSF objects of ``lake.schema`` (the same columns and types, cast explicitly).

For each provider, each closed day (``compaction.day_closed``, the same rule as compaction) whose
raw objects' digest has no marker yet for this destination:

1. one count query: events per action in the day's raw lines, so that only classes with events are
   unloaded and a class left without events has its old file removed;
2. one ``UNLOAD (SELECT … ORDER BY time, metadata.uid) TO 's3://<staging>/<provider>/dt=D/run=<id>/<class>/'
   WITH (format = 'PARQUET', compression = 'ZSTD')`` per class: a fresh, empty folder (UNLOAD refuses a
   non-empty one) outside the lake, in the query results bucket, whose lifecycle expires what is left;
3. per class, the staged files are copied to fixed names in
   ``ext/{source}/region={r}/accountId={a}/eventDay=YYYYMMDD/``: ``{provider}.parquet``, and
   ``{provider}-1.parquet``, … when Athena's parallel writers split the day (each file sorted, as Athena
   sorts within a file). One file replaces the old one in a single PUT (readers see the old day or the
   new); when either side has several files the old ones are deleted first, so a reader may briefly
   miss rows but never sees one twice. Files of this provider in the folder that the new set does
   not name are deleted;
4. the marker ``{prefix}_compacted/_security_lake/{provider}/dt=D/{digest}-{destination}.json`` is written
   last, in the archive bucket (outside ``ext/``: the crawler never sees it). Its name carries the
   source digest and the destination, so one listing tells which days are current.

A crash or a failed query at any step leaves no marker: the next run redoes the day into a new
staging folder and the copies overwrite, so every event is in its class once when a run completes.
A late object changes the digest and the day is written again.

What differs from ``lake.py``: ``unmapped`` is NULL (the column is there, with its type; SQL cannot
walk an event's arbitrary fields the way ``mapping._leaves`` does; ``raw_data`` holds them all), and
an address is kept when it matches ``IP_PATTERN`` (``ipaddress`` locally). Row groups and pages are
Athena's Parquet writer's own (it takes no size options in UNLOAD); its defaults, 128 MB row groups
and 1 MB pages, are within Security Lake's 256 MB and 1 MB, and a day of one class is a few MB.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit_collector.collector.provider import Descriptor
from audit_collector.compaction.rules import COMPACTED, day_closed, new_run_id
from audit_collector.errors import ConfigError
from audit_collector.ocsf import mapping
from audit_collector.ocsf.classes import CLASSES, OcsfClass
from audit_collector.ocsf.lake import LakeTarget
from audit_collector.ocsf.lake_sql import STAGING_URI, classes_of, count_codes, unload_class

FIELDS = ("bucket", "region", "account_id", "staging")  # with source_prefix, the payload's security_lake
MARKERS = "_security_lake"  # under the archive's _compacted/: no provider name starts with "_"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_HIDDEN = ("_", ".")  # names writers use for markers and temporary files, never data


# --------------------------------------------------------------------------- where


@dataclass(frozen=True)
class LakeDestination:
    """The lake's bucket, the partition's region and account, the sources' prefix, and the staging folder."""

    bucket: str
    region: str
    account_id: str
    source_prefix: str
    staging: str  # s3://bucket/folder/ for the UNLOADs (Athena's results bucket)

    def __post_init__(self) -> None:
        if not _BUCKET.fullmatch(self.bucket):
            raise ConfigError(f"not an S3 bucket name: {self.bucket!r}")
        if not STAGING_URI.fullmatch(self.staging):
            raise ConfigError(f"not an S3 folder (s3://bucket/folder/): {self.staging!r}")
        self.layout  # noqa: B018 - LakeTarget checks the region, the account and the prefix

    @classmethod
    def from_event(cls, spec: Any) -> LakeDestination | None:
        """From the schedule's input (``security_lake``, template.yaml); None when the stack's option is
        off (no source prefix)."""
        if not isinstance(spec, Mapping) or not spec.get("source_prefix"):
            return None
        missing = [name for name in FIELDS if not spec.get(name)]
        if missing:
            raise ConfigError(f"security_lake has a source_prefix but no {', '.join(missing)}")
        return cls(
            str(spec["bucket"]),
            str(spec["region"]),
            str(spec["account_id"]),
            str(spec["source_prefix"]),
            str(spec["staging"]),
        )

    @property
    def layout(self) -> LakeTarget:
        """The local writer's layout (source names, partition folders), rooted at the bucket."""
        return LakeTarget(Path(), self.region, self.account_id, self.source_prefix)

    def folder(self, ocsf: OcsfClass, day: str) -> str:
        return self.layout.day_folder(ocsf, day).as_posix() + "/"

    @property
    def fingerprint(self) -> str:
        """In each marker's name: a day written to another lake (or region, account, prefix) is not done."""
        text = "\t".join((self.bucket, self.region, self.account_id, self.source_prefix))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def file_names(provider: str, count: int) -> list[str]:
    """The fixed names of a (class, provider, day)'s files: ``slack.parquet``, ``slack-1.parquet``, …"""
    return [f"{provider}.parquet" if i == 0 else f"{provider}-{i}.parquet" for i in range(count)]


def _is_file_of(provider: str, name: str) -> bool:
    return re.fullmatch(rf"{re.escape(provider)}(-[1-9][0-9]*)?\.parquet", name) is not None


# --------------------------------------------------------------------------- the SQL


# --------------------------------------------------------------------------- the export


def _split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [item["Key"] for item in page.get("Contents", [])]
    return sorted(out)


class AthenaLakeExporter:
    """Writes the custom sources of closed days through a compactor's Athena (``start``, ``wait``) and S3.

    ``deadline`` (the compactor's clock): no new day is started after it, so a backlog is worked off
    over several runs within the function's 15 minutes."""

    def __init__(self, destination: LakeDestination, *, deadline: float | None = None) -> None:
        self.destination, self.deadline = destination, deadline

    def marker_prefix(self, compactor: Any, descriptor: Descriptor) -> str:
        return f"{compactor.target.prefix}{COMPACTED}/{MARKERS}/{descriptor.name}/"

    def current(self, compactor: Any, descriptor: Descriptor) -> set[tuple[str, str]]:
        """(day, source digest) of every day written to this destination."""
        base = self.marker_prefix(compactor, descriptor)
        out = set()
        for key in _keys(compactor.s3, compactor.target.bucket, base):
            found = re.fullmatch(rf"dt=([0-9-]+)/([0-9a-f]+)-{self.destination.fingerprint}\.json", key[len(base) :])
            if found:
                out.add((found[1], found[2]))
        return out

    def export(
        self, compactor: Any, descriptor: Descriptor, raw: Mapping[str, tuple[str, int]], checkpoint: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Every closed day not yet written (or whose raw objects changed since); the report names
        what failed (the compactor raises on it after the other providers ran)."""
        report: dict[str, Any] = {"written": {}, "files": 0, "up_to_date": 0, "failed": [], "behind": 0}
        if not classes_of(descriptor):
            return report
        target = compactor.target
        closed = [day for day in sorted(raw) if day_closed(descriptor, checkpoint, day, target.grace_seconds)]
        done = self.current(compactor, descriptor)
        todo = [day for day in closed if (day, raw[day][0]) not in done]
        report["up_to_date"] = len(closed) - len(todo)
        step = max(1, target.concurrency)
        for i in range(0, min(len(todo), target.max_days), step):
            if self.deadline is not None and compactor.now() > self.deadline:
                break
            batch = todo[i : i + step][: target.max_days - i]
            for day, result in self._days(compactor, descriptor, batch, raw).items():
                if isinstance(result, str):
                    report["failed"].append(f"security lake dt={day}: {result}")
                else:
                    report["written"][day], files = result
                    report["files"] += files
        report["behind"] = len(todo) - len(report["written"])
        return report

    def _run(self, compactor: Any, statements: list[str]) -> list[tuple[str, str]]:
        """(query id, final state) of each statement, at most ``concurrency`` in flight."""
        out: list[tuple[str, str]] = []
        step = max(1, compactor.target.concurrency)
        for i in range(0, len(statements), step):
            ids = [compactor.start(s) for s in statements[i : i + step]]
            states = compactor.wait(ids)
            out += [(q, states[q]) for q in ids]
        return out

    def _days(
        self, compactor: Any, descriptor: Descriptor, days: list[str], raw: Mapping[str, tuple[str, int]]
    ) -> dict[str, tuple[int, int] | str]:
        m = mapping(descriptor)
        assert m is not None
        results: dict[str, tuple[int, int] | str] = {}
        counted = dict(zip(days, self._run(compactor, [count_codes(descriptor, d) for d in days]), strict=True))
        unloads: list[tuple[str, OcsfClass, str]] = []  # (day, class, staging folder)
        per_day: dict[str, dict[str, int]] = {}
        for day, (query, state) in counted.items():
            if state != "SUCCEEDED":
                results[day] = f"count query {state} ({query})"
                continue
            classes: dict[str, int] = {}
            without = 0
            for code, events in _rows(compactor.athena, query):
                rule = m.rules.get(code) if code is not None else None
                if rule is None:
                    without += int(events)
                else:
                    classes[rule.ocsf.name] = classes.get(rule.ocsf.name, 0) + int(events)
            per_day[day] = {**classes, "": without}
            run = new_run_id(compactor.now())
            for name in sorted(classes):
                staging = f"{self.destination.staging}{descriptor.name}/dt={day}/run={run}/{name}/"
                unloads.append((day, CLASSES[name], staging))
        states = self._run(compactor, [unload_class(descriptor, c, d, s) for d, c, s in unloads])
        for (day, _, _), (query, state) in zip(unloads, states, strict=True):
            if state != "SUCCEEDED" and day not in results:
                results[day] = f"UNLOAD {state} ({query})"
        for day, counts in per_day.items():
            if day in results:
                continue  # nothing of the day is copied: the next run redoes it whole
            staged = {c.name: s for d, c, s in unloads if d == day}
            files = self._publish(compactor, descriptor, day, staged)
            if isinstance(files, str):
                results[day] = files
                continue
            self._mark(compactor, descriptor, day, raw[day][0], counts)
            results[day] = (sum(n for k, n in counts.items() if k), files)
        return results

    def _publish(self, compactor: Any, descriptor: Descriptor, day: str, staged: Mapping[str, str]) -> int | str:
        """Copy each class's staged files to their fixed names; remove what the new set does not name."""
        s3, lake = compactor.s3, self.destination.bucket
        written = 0
        for ocsf in CLASSES.values():  # all: a class the mapping no longer gives loses its old files too
            folder = self.destination.folder(ocsf, day)
            existing = [
                k for k in _keys(s3, lake, folder + descriptor.name) if _is_file_of(descriptor.name, k[len(folder) :])
            ]
            sources: list[tuple[str, str]] = []
            if ocsf.name in staged:
                bucket, key = _split_uri(staged[ocsf.name])
                sources = [
                    (bucket, k)
                    for k in _keys(s3, bucket, key)
                    if not k[len(key) :].startswith(_HIDDEN) and not k.endswith("/")
                ]
                if not sources:
                    return f"the UNLOAD of {ocsf.name} wrote no file under {staged[ocsf.name]}"
            names = [folder + n for n in file_names(descriptor.name, len(sources))]
            # One file over one: a single PUT replaces it. Otherwise the old files go first: a reader
            # may miss the day's rows for a moment, never see a row twice.
            stale = [k for k in existing if k not in names] if len(names) == 1 and len(existing) <= 1 else existing
            for key in stale:
                s3.delete_object(Bucket=lake, Key=key)
            for (bucket, key), name in zip(sources, names, strict=True):
                s3.copy_object(Bucket=lake, Key=name, CopySource={"Bucket": bucket, "Key": key})
            written += len(names)
        return written

    def _mark(self, compactor: Any, descriptor: Descriptor, day: str, digest: str, counts: Mapping[str, int]) -> None:
        d = self.destination
        key = f"{self.marker_prefix(compactor, descriptor)}dt={day}/{digest}-{d.fingerprint}.json"
        record = {
            "source": digest,
            "destination": {
                "bucket": d.bucket,
                "region": d.region,
                "account_id": d.account_id,
                "prefix": d.source_prefix,
            },
            "classes": {k: n for k, n in sorted(counts.items()) if k},
            "without_class": counts.get("", 0),
        }
        body = json.dumps(record, indent=2, sort_keys=True).encode()
        compactor.s3.put_object(Bucket=compactor.target.bucket, Key=key, Body=body, ContentType="application/json")


def _rows(athena: Any, query_id: str) -> list[list[str | None]]:
    """A SELECT's rows as text, without the header row, every page."""
    rows: list[list[str | None]] = []
    kwargs: dict[str, Any] = {"QueryExecutionId": query_id}
    while True:
        page = athena.get_query_results(**kwargs)
        rows += [[cell.get("VarCharValue") for cell in row["Data"]] for row in page["ResultSet"]["Rows"]]
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    return rows[1:]


def from_event(event: Any, deadline: float | None = None) -> AthenaLakeExporter | None:
    """The exporter the schedule's input asks for (``security_lake``), or None when the option is off."""
    destination = LakeDestination.from_event(event.get("security_lake") if isinstance(event, Mapping) else None)
    return None if destination is None else AthenaLakeExporter(destination, deadline=deadline)
