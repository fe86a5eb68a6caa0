"""SQL over a local archive with DuckDB, through tables shaped like the Athena ones.

Each provider's table (its descriptor's ``table``) has the columns its Glue table in template.yaml
declares (stable fields as columns and structs; drifting ones as strings holding JSON) and the
``dt`` partition, so the query cookbook's (docs/query.md) Athena queries run here as written. ``json_extract_scalar`` is
provided as in Athena.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audit_collector import providers
from audit_collector.storage.keys import MANIFEST_FOLDER


def connect(archive_root: str | Path, prefix: str = "") -> Any:
    """A DuckDB connection with every provider's table defined over ``archive_root``."""
    import duckdb  # the laptop extra; the Lambda never imports this module

    con = duckdb.connect()
    con.execute("CREATE MACRO json_extract_scalar(j, p) AS json_extract_string(j, p)")
    con.execute("CREATE MACRO from_unixtime(s) AS epoch_ms(CAST(s * 1000 AS BIGINT))")  # UTC, as in Athena
    for descriptor in providers.all_descriptors():
        table, columns = descriptor.table, {c.name: c.duckdb for c in descriptor.columns}
        root = Path(archive_root) / f"{prefix}{descriptor.name}"
        files = sorted(root.glob("dt=*/*.jsonl.gz"))
        column_sql = ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items())
        if files:
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_json("
                f"'{root.as_posix()}/dt=*/*.jsonl.gz', format='newline_delimited', columns={{{column_sql}}}, "
                "hive_partitioning=true, hive_types={'dt': 'VARCHAR'})"
            )
        else:  # an empty table with the same columns, so queries still run
            select = ", ".join(f'CAST(NULL AS {kind}) AS "{name}"' for name, kind in columns.items())
            con.execute(f"CREATE VIEW {table} AS SELECT {select}, CAST(NULL AS VARCHAR) AS dt WHERE false")
    define_manifests(con, archive_root, prefix)
    from audit_collector.compaction.local import define_views

    define_views(con, archive_root, prefix)
    from audit_collector.ocsf.views import define_local  # ocsf_<class>, over the T_all views (ocsf/views.py)

    define_local(con)
    return con


MANIFEST_COLUMNS = {  # as the Glue table audit_manifests declares them (template.yaml)
    "format": "INTEGER",
    "provider": "VARCHAR",
    "job": "VARCHAR",
    "window_id": "VARCHAR",
    "revision": "INTEGER",
    "range_start": "BIGINT",
    "range_end": "BIGINT",
    "units_per_second": "INTEGER",
    "range_start_iso": "VARCHAR",
    "range_end_iso": "VARCHAR",
    "objects": "STRUCT(key VARCHAR, bytes BIGINT, events BIGINT, sha256 VARCHAR, ids_digest VARCHAR)[]",
    "events": "BIGINT",
    "ids_digest": "VARCHAR",
    "first_event": "VARCHAR",
    "last_event": "VARCHAR",
    "seq": "BIGINT",
    "prev": "VARCHAR",
    "written_at": "VARCHAR",
    "collector_version": "VARCHAR",
}


def define_manifests(con: Any, archive_root: str | Path, prefix: str = "") -> None:
    """``audit_manifests``: a row per manifest, with Athena's columns and partitions (source, dt)."""
    root = Path(archive_root) / f"{prefix}{MANIFEST_FOLDER}"
    column_sql = ", ".join(f"'{name}': '{kind}'" for name, kind in MANIFEST_COLUMNS.items())
    if sorted(root.glob("*/dt=*/*.json")):
        con.execute(
            "CREATE VIEW audit_manifests AS SELECT * EXCLUDE (filename), "
            "split_part(split_part(filename, '/dt=', 1), '/', -1) AS source, "
            "split_part(split_part(filename, '/dt=', 2), '/', 1) AS dt FROM ("
            f"SELECT * FROM read_json('{root.as_posix()}/*/dt=*/*.json', format='newline_delimited', "
            f"columns={{{column_sql}}}, filename=true, hive_partitioning=false))"
        )
    else:
        select = ", ".join(f'CAST(NULL AS {kind}) AS "{name}"' for name, kind in MANIFEST_COLUMNS.items())
        con.execute(
            f"CREATE VIEW audit_manifests AS SELECT {select}, CAST(NULL AS VARCHAR) AS source, "
            "CAST(NULL AS VARCHAR) AS dt WHERE false"
        )


def run_query(archive_root: str | Path, sql: str, prefix: str = "") -> tuple[list[str], list[tuple]]:
    """Column names and rows of ``sql``."""
    con = connect(archive_root, prefix)
    try:
        cursor = con.execute(sql)
        names = [d[0] for d in cursor.description or []]
        return names, cursor.fetchall()
    finally:
        con.close()
