"""Compaction in AWS: Athena writes each closed day as Parquet, Glue publishes it.

For each compacted provider, on each run (the schedule's input names the bucket, prefix, database,
workgroup and state table; see template.yaml):

1. list the raw objects (key, ETag) and group them by day: a day's *source digest*;
2. read the compacted table's Glue partitions: each names its run folder and the digest it was
   built from;
3. for each closed day (``compaction.day_closed``, from the checkpoint in DynamoDB) whose digest
   differs from its partition's (never compacted, or a late-event sweep or backfill added objects):
   ``UNLOAD`` the day into a fresh ``run=<id>/`` folder (``compaction_sql.unload``), wait, then
   create or update the day's partition to point at that folder: the one atomic publication;
4. replace the ``T_all`` view so its watermark is the last day up to which every raw day is
   published (``compaction.watermark``).

A crash or a failed query before step 3's partition write leaves an unread folder; a rerun finds
the same digest and does nothing. The raw objects are only ever read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from audit_collector.collector.provider import Descriptor
from audit_collector.compaction import sql
from audit_collector.compaction.rules import (
    compacted_prefix,
    day_closed,
    new_run_id,
    source_digest,
    watermark,
)
from audit_collector.errors import AuditCollectorError, ConfigError


class CompactionFailed(AuditCollectorError):
    """A query failed or timed out. Raised so Lambda records an error and the alarm fires."""


@dataclass(frozen=True)
class Target:
    """Where to compact: everything comes from the schedule's input (template.yaml)."""

    bucket: str
    prefix: str
    database: str
    workgroup: str
    state_table: str
    grace_seconds: float = 0
    max_days: int = 30  # per provider per run: a backlog is worked off over several runs
    concurrency: int = 5  # UNLOAD queries in flight at once

    @classmethod
    def from_event(cls, event: Any) -> Target:
        if not isinstance(event, dict):
            raise ConfigError("the compaction payload must be a JSON object")
        missing = [k for k in ("bucket", "database", "workgroup", "state_table") if not event.get(k)]
        if missing:
            raise ConfigError(f"the compaction payload lacks {', '.join(missing)}")
        prefix = str(event.get("prefix") or "").strip("/")
        return cls(
            bucket=str(event["bucket"]),
            prefix=f"{prefix}/" if prefix else "",
            database=str(event["database"]),
            workgroup=str(event["workgroup"]),
            state_table=str(event["state_table"]),
            grace_seconds=float(event.get("grace_seconds", 0)),
            max_days=int(event.get("max_days", 30)),
            concurrency=int(event.get("concurrency", 5)),
        )


class AthenaCompactor:
    """Compaction of one archive through Athena and Glue. Clients are injected (tests: moto, stubs)."""

    def __init__(
        self,
        target: Target,
        *,
        athena: Any,
        glue: Any,
        s3: Any,
        store: Any,
        sleep: Callable[[float], None] = time.sleep,
        poll_seconds: float = 2.0,
        query_timeout_seconds: float = 600,
        now: Callable[[], float] = time.time,
        lake: Any = None,
    ) -> None:
        self.target, self.lake = target, lake  # lake: ocsf.athena_lake.AthenaLakeExporter, or None
        self.athena, self.glue, self.s3, self.store = athena, glue, s3, store
        self.sleep, self.poll_seconds, self.query_timeout = sleep, poll_seconds, query_timeout_seconds
        self.now = now

    # ------------------------------------------------------------------ reading

    def raw_days(self, descriptor: Descriptor) -> dict[str, tuple[str, int]]:
        """day -> (source digest, objects) of the raw archive."""
        objects: dict[str, list[tuple[str, str]]] = {}
        paginator = self.s3.get_paginator("list_objects_v2")
        base = f"{self.target.prefix}{descriptor.name}/"
        for page in paginator.paginate(Bucket=self.target.bucket, Prefix=base):
            for item in page.get("Contents", []):
                rest = item["Key"][len(base) :]
                if not rest.startswith("dt=") or rest.endswith("/"):  # every object Athena's table reads
                    continue
                day, _, name = rest[3:].partition("/")
                objects.setdefault(day, []).append((name, item["ETag"].strip('"')))
        return {day: (source_digest(items), len(items)) for day, items in objects.items()}

    def partitions(self, descriptor: Descriptor) -> dict[str, dict[str, str]]:
        """day -> the published partition's parameters (run, source, objects)."""
        out = {}
        paginator = self.glue.get_paginator("get_partitions")
        for page in paginator.paginate(DatabaseName=self.target.database, TableName=sql.compacted_table(descriptor)):
            for partition in page.get("Partitions", []):
                out[partition["Values"][0]] = dict(partition.get("Parameters", {}))
        return out

    # ------------------------------------------------------------------ Athena

    def start(self, statement: str) -> str:
        return self.athena.start_query_execution(
            QueryString=statement,
            QueryExecutionContext={"Database": self.target.database},
            WorkGroup=self.target.workgroup,
        )["QueryExecutionId"]

    def wait(self, query_ids: list[str]) -> dict[str, str]:
        """query id -> final state (SUCCEEDED, FAILED, CANCELLED, or TIMEOUT)."""
        states: dict[str, str] = {}
        deadline = self.now() + self.query_timeout
        while True:
            for query_id in query_ids:
                if query_id not in states:
                    status = self.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
                    if status["State"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                        states[query_id] = status["State"]
            if len(states) == len(query_ids):
                return states
            if self.now() > deadline:
                return {q: states.get(q, "TIMEOUT") for q in query_ids}
            self.sleep(self.poll_seconds)

    # ------------------------------------------------------------------ publication

    def location(self, descriptor: Descriptor, day: str, run: str) -> str:
        return f"s3://{self.target.bucket}/{compacted_prefix(self.target.prefix, descriptor)}dt={day}/run={run}/"

    def files(self, location: str) -> int | None:
        """How many files an UNLOAD wrote into its run folder. Athena may write a day's rows in
        parallel, several files each in order; the count is kept with the partition and reported,
        so "at most 2 objects a day" can be checked in the deployed stack, not assumed. None when
        the folder cannot be listed: the count is a diagnosis, not a reason to leave the day raw."""
        prefix = location.removeprefix(f"s3://{self.target.bucket}/")
        paginator = self.s3.get_paginator("list_objects_v2")
        try:
            return sum(
                len(page.get("Contents", [])) for page in paginator.paginate(Bucket=self.target.bucket, Prefix=prefix)
            )
        except Exception:  # any listing failure: publish without the count
            return None

    def publish(
        self, descriptor: Descriptor, day: str, run: str, digest: str, objects: int, exists: bool, files: int | None
    ) -> None:
        """Point the day's partition at the run's folder: the day is compacted from now on."""
        table = self.glue.get_table(DatabaseName=self.target.database, Name=sql.compacted_table(descriptor))["Table"]
        storage = dict(table["StorageDescriptor"], Location=self.location(descriptor, day, run))
        partition = {
            "Values": [day],
            "StorageDescriptor": storage,
            "Parameters": {
                "run": run,
                "source": digest,
                "objects": str(objects),
                "files": "unknown" if files is None else str(files),
            },
        }
        name = sql.compacted_table(descriptor)
        if exists:
            self.glue.update_partition(
                DatabaseName=self.target.database, TableName=name, PartitionValueList=[day], PartitionInput=partition
            )
            return
        response = self.glue.batch_create_partition(
            DatabaseName=self.target.database, TableName=name, PartitionInputList=[partition]
        )
        for error in response.get("Errors", []):
            if error.get("ErrorDetail", {}).get("ErrorCode") == "AlreadyExistsException":  # a concurrent run
                self.glue.update_partition(
                    DatabaseName=self.target.database,
                    TableName=name,
                    PartitionValueList=[day],
                    PartitionInput=partition,
                )
            else:
                raise CompactionFailed(f"{name} dt={day}: {error.get('ErrorDetail')}")

    # ------------------------------------------------------------------ one provider

    def compact(self, descriptor: Descriptor) -> dict[str, Any]:
        raw = self.raw_days(descriptor)
        published = self.partitions(descriptor)
        checkpoint = self.store.read(descriptor.name).get("checkpoint", {})
        closed = [day for day in sorted(raw) if day_closed(descriptor, checkpoint, day, self.target.grace_seconds)]
        stale = [day for day in closed if published.get(day, {}).get("source") != raw[day][0]]
        todo = stale[: self.target.max_days]
        done, failed, files = [], [], {}
        for i in range(0, len(todo), max(1, self.target.concurrency)):
            batch = todo[i : i + max(1, self.target.concurrency)]
            runs = {day: new_run_id(self.now()) for day in batch}
            queries = {
                day: self.start(sql.unload(descriptor, day, self.location(descriptor, day, runs[day]))) for day in batch
            }
            states = self.wait(list(queries.values()))
            for day in batch:
                if states[queries[day]] != "SUCCEEDED":
                    failed.append(f"{day}: {states[queries[day]]} ({queries[day]})")
                    continue
                digest, objects = raw[day]
                files[day] = self.files(self.location(descriptor, day, runs[day]))
                self.publish(descriptor, day, runs[day], digest, objects, exists=day in published, files=files[day])
                published[day] = {"run": runs[day], "source": digest}
                done.append(day)
        current = [day for day in raw if published.get(day, {}).get("source") == raw[day][0]]
        mark = watermark(raw, current)
        view = self.start(sql.create_view(descriptor, mark))
        if self.wait([view])[view] != "SUCCEEDED":
            failed.append(f"view {sql.all_view(descriptor)}: query {view}")
        behind = len([day for day in closed if published.get(day, {}).get("source") != raw[day][0]])
        lake = self.lake.export(self, descriptor, raw, checkpoint) if self.lake is not None else None
        failed += lake["failed"] if lake is not None else []
        return {
            "provider": descriptor.name,
            "compacted": done,
            "failed": failed,
            "watermark": mark,
            "behind": behind,
            # Of the days this run compacted (None: it compacted none, or could list none of them).
            "most_files_a_day": max((n for n in files.values() if n is not None), default=None),
            **({"security_lake": lake} if lake is not None else {}),
        }
