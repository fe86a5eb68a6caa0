"""SQL over a local archive with DuckDB, through tables shaped like the Athena ones.

``slack_audit_logs`` and ``asana_audit_log_events`` have the columns the Glue tables in
template.yaml declare (stable fields as columns and structs; drifting ones, such as Slack's
``entity`` and ``details``, as strings holding JSON) and the ``dt`` partition, so the README's
Athena queries run here as written. ``json_extract_scalar`` is provided as in Athena.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Column name -> DuckDB type. The Glue tables in template.yaml declare the same names.
SLACK_COLUMNS: dict[str, str] = {
    "id": "VARCHAR",
    "date_create": "BIGINT",
    "action": "VARCHAR",
    "actor": 'STRUCT(type VARCHAR, "user" STRUCT(id VARCHAR, name VARCHAR, email VARCHAR, team VARCHAR))',
    "entity": "JSON",
    "context": (
        "STRUCT(location STRUCT(type VARCHAR, id VARCHAR, name VARCHAR, domain VARCHAR), ua VARCHAR, "
        "ip_address VARCHAR, session_id VARCHAR, app JSON)"
    ),
    "details": "JSON",
}
ASANA_COLUMNS: dict[str, str] = {
    "gid": "VARCHAR",
    "created_at": "VARCHAR",
    "event_type": "VARCHAR",
    "event_category": "VARCHAR",
    "actor": "STRUCT(actor_type VARCHAR, gid VARCHAR, name VARCHAR, email VARCHAR)",
    "resource": "STRUCT(resource_type VARCHAR, resource_subtype VARCHAR, gid VARCHAR, name VARCHAR, email VARCHAR)",
    "details": "JSON",
    "context": (
        "STRUCT(context_type VARCHAR, api_authentication_method VARCHAR, client_ip_address VARCHAR, "
        "user_agent VARCHAR, oauth_app_name VARCHAR, rule_name VARCHAR, on_behalf_of_user_id VARCHAR)"
    ),
}
TABLES = {"slack_audit_logs": ("slack", SLACK_COLUMNS), "asana_audit_log_events": ("asana", ASANA_COLUMNS)}


def connect(archive_root: str | Path, prefix: str = "") -> Any:
    """A DuckDB connection with both tables defined over ``archive_root``."""
    import duckdb  # the laptop extra; the Lambda never imports this module

    con = duckdb.connect()
    con.execute("CREATE MACRO json_extract_scalar(j, p) AS json_extract_string(j, p)")
    con.execute("CREATE MACRO from_unixtime(s) AS epoch_ms(CAST(s * 1000 AS BIGINT))")  # UTC, as in Athena
    for table, (provider, columns) in TABLES.items():
        root = Path(archive_root) / f"{prefix}{provider}"
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
    return con


def run_query(archive_root: str | Path, sql: str, prefix: str = "") -> tuple[list[str], list[tuple]]:
    """Column names and rows of ``sql``."""
    con = connect(archive_root, prefix)
    try:
        cursor = con.execute(sql)
        names = [d[0] for d in cursor.description or []]
        return names, cursor.fetchall()
    finally:
        con.close()
