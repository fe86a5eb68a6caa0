"""An Athena client for tests that runs what it is sent: the SELECTs and UNLOADs of the compaction
function's Security Lake export run in DuckDB over the raw objects in (moto's) S3, and UNLOAD writes
its Parquet files into S3 as Athena would. moto's Athena runs no SQL; this one does.

It speaks the subset the code uses (start_query_execution, get_query_execution, get_query_results)
and runs each statement when it is started. The SQL is Athena's text; DuckDB gets the same macros the
local query path has (``compaction.add_athena_functions``, ``to_unixtime``, ``regexp_like``) and one
spelling change, ``array(T)`` to ``T[]`` (DuckDB's type syntax). Like Athena it refuses an UNLOAD
into a folder that holds objects, writes no file for no rows, and may split a result into several
files (``files_per_unload``), each sorted. Other statements (compaction's own UNLOAD, the views)
succeed without running, as in moto.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

from audit_collector import providers
from audit_collector.compaction import local as compaction
from audit_collector.compaction import sql
from audit_collector.ocsf import lake

PAGE_ROWS = 20  # get_query_results pages: smaller than a day's actions, so NextToken is followed


def duckdb_types(text: str) -> str:
    """``array(T)`` (Athena's type) as ``T[]`` (DuckDB's), nested ones too; ``ARRAY[...]`` is left."""
    out, i = [], 0
    while (j := text.find("array(", i)) >= 0:
        out.append(text[i:j])
        depth, k = 0, j + len("array")
        while True:
            depth += text[k] == "("
            depth -= text[k] == ")"
            if depth == 0:
                break
            k += 1
        out.append(duckdb_types(text[j + len("array(") : k]) + "[]")
        i = k + 1
    out.append(text[i:])
    return "".join(out)


class DuckAthena:
    def __init__(self, s3: Any, bucket: str, prefix: str, *, files_per_unload: int = 1, fail: Any = None) -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, prefix
        self.files_per_unload, self.fail = files_per_unload, fail
        self.queries: dict[str, dict[str, Any]] = {}
        self._con: Any = None
        self._tmp: Any = None
        self._copied: dict[str, str] = {}
        self._defined: set[str] = set()

    # ------------------------------------------------------------------ the client's calls

    def start_query_execution(self, QueryString: str, **_: Any) -> dict[str, Any]:
        query_id = str(uuid.uuid4())
        state, rows = "SUCCEEDED", []
        if self.fail is not None and self.fail(QueryString):
            state = "FAILED"
        elif QueryString.startswith("UNLOAD") and "/_compacted/" not in QueryString:
            state = self._unload(QueryString)
        elif QueryString.startswith("SELECT"):
            rows = self._select(QueryString)
        self.queries[query_id] = {"text": QueryString, "state": state, "rows": rows}
        return {"QueryExecutionId": query_id}

    def get_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:
        return {"QueryExecution": {"Status": {"State": self.queries[QueryExecutionId]["state"]}}}

    def get_query_results(self, QueryExecutionId: str, NextToken: str | None = None, **_: Any) -> dict[str, Any]:
        rows = self.queries[QueryExecutionId]["rows"]
        start = int(NextToken or 0)
        page = ([["code", "events"]] if start == 0 else []) + rows[start : start + PAGE_ROWS]
        out: dict[str, Any] = {
            "ResultSet": {
                "Rows": [{"Data": [{"VarCharValue": str(v)} if v is not None else {} for v in row]} for row in page]
            }
        }
        if start + PAGE_ROWS < len(rows):
            out["NextToken"] = str(start + PAGE_ROWS)
        return out

    # ------------------------------------------------------------------ running SQL

    def _connection(self) -> Any:
        """DuckDB with ``T_lines`` over a copy of every raw object now in the bucket (copied once)."""
        if self._con is None:
            self._tmp = tempfile.TemporaryDirectory()
            self._con = compaction.local_connection()
            self._con.execute("CREATE MACRO to_unixtime(t) AS epoch(t)")
            self._con.execute("CREATE MACRO regexp_like(s, p) AS regexp_matches(s, p)")
        tmp = Path(self._tmp.name)
        for descriptor in providers.all_descriptors():
            if not sql.compacted(descriptor):
                continue
            base = f"{self.prefix}{descriptor.name}/"
            found = changed = False
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
                for item in page.get("Contents", []):
                    found = True
                    if self._copied.get(item["Key"]) == item["ETag"]:
                        continue
                    path = tmp / item["Key"]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read())
                    self._copied[item["Key"]] = item["ETag"]
                    changed = True
            if changed or descriptor.name not in self._defined:  # read once into a table, not per query
                glob = (tmp / base).as_posix() + "/dt=*/*.jsonl.gz"
                lines = sql.lines_table(descriptor)
                compaction.define_lines(self._con, descriptor, glob if found else None)
                self._con.execute(f"CREATE OR REPLACE TEMP TABLE {lines}_copy AS SELECT * FROM {lines}")
                self._con.execute(f"CREATE OR REPLACE VIEW {lines} AS SELECT * FROM {lines}_copy")
                self._defined.add(descriptor.name)
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._tmp.cleanup()
            self._con = None

    def _select(self, text: str) -> list[list[Any]]:
        return [list(row) for row in self._connection().execute(duckdb_types(text)).fetchall()]

    def _unload(self, text: str) -> str:
        found = re.fullmatch(r"UNLOAD \((.*)\)\nTO 's3://([^/]+)/([^']*)'\nWITH \(.*\)", text, re.S)
        assert found, text[:200]
        select, bucket, folder = found[1], found[2], found[3]
        if self.s3.list_objects_v2(Bucket=bucket, Prefix=folder).get("KeyCount", 0):
            return "FAILED"  # Athena: the UNLOAD destination must be empty
        con = self._connection()
        with tempfile.TemporaryDirectory() as tmp:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE result AS "
                f"SELECT *, row_number() OVER () AS _n FROM ({duckdb_types(select)})"
            )
            for part in range(self.files_per_unload):
                where = f"_n % {self.files_per_unload} = {part}"
                if not con.execute(f"SELECT count(*) FROM result WHERE {where}").fetchone()[0]:
                    continue  # no rows: no file
                out = Path(tmp) / f"part-{part}.parquet"
                con.execute(
                    f'COPY (SELECT * EXCLUDE (_n) FROM result WHERE {where} ORDER BY "time", metadata.uid) '
                    f"TO '{out.as_posix()}' (FORMAT PARQUET, COMPRESSION ZSTD, "
                    f"DATA_PAGE_SIZE_LIMIT {lake.PAGE_BYTES}, ROW_GROUP_SIZE {lake.ROW_GROUP_ROWS})"
                )
                key = f"{folder}{uuid.uuid4()}_{part}.zstd.parquet"
                self.s3.put_object(Bucket=bucket, Key=key, Body=out.read_bytes())
        return "SUCCEEDED"


class BesideMoto:
    """moto's Athena client answered by a DuckAthena: every call still goes to moto (so a deployed-stack
    test's ledger authorizes it under the function's role), the states and results are DuckDB's. The
    DuckAthena's own S3 calls use the client it was given: under the role, as Athena runs UNLOAD with
    the caller's permissions."""

    def __init__(self, moto_client: Any, duck: DuckAthena) -> None:
        self.moto, self.duck, self.ids = moto_client, duck, {}

    def start_query_execution(self, **kwargs: Any) -> dict[str, Any]:
        query_id = self.moto.start_query_execution(**kwargs)["QueryExecutionId"]
        self.ids[query_id] = self.duck.start_query_execution(**kwargs)["QueryExecutionId"]
        return {"QueryExecutionId": query_id}

    def get_query_execution(self, QueryExecutionId: str) -> dict[str, Any]:
        self.moto.get_query_execution(QueryExecutionId=QueryExecutionId)
        return self.duck.get_query_execution(QueryExecutionId=self.ids[QueryExecutionId])

    def get_query_results(self, QueryExecutionId: str, **kwargs: Any) -> dict[str, Any]:
        self.moto.get_query_results(QueryExecutionId=QueryExecutionId)
        return self.duck.get_query_results(QueryExecutionId=self.ids[QueryExecutionId], **kwargs)
