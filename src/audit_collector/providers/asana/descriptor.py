"""Everything the rest of the house needs to know about Asana's audit log API, in one value."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit_collector.collector.provider import Activity, ClientSettings, Column, Descriptor, NamedQuery, Option
from audit_collector.providers.asana.client import DEFAULT_BASE_URL, MAX_LIMIT, AsanaAuditLogClient
from audit_collector.providers.asana.compaction import COLUMNS as COMPACTED_COLUMNS
from audit_collector.providers.asana.drift import vocabulary
from audit_collector.providers.asana.preflight import preflight
from audit_collector.providers.asana.source import AsanaSource, AsanaWindow

WORKSPACE = Option(
    name="workspace_gid",
    env="ASANA_WORKSPACE_GID",
    flag="--workspace-gid",
    help="the Asana workspace (domain) gid whose audit log is collected",
    pattern="^[0-9]*$",
)


def _build_source(client: ClientSettings, options: Mapping[str, str]) -> AsanaSource:
    workspace_gid = options.get(WORKSPACE.name)
    if not workspace_gid:
        raise ValueError(f"the Asana source needs a workspace gid ({WORKSPACE.env} or {WORKSPACE.flag})")

    def fork() -> AsanaSource:  # one client per concurrent backfill slice, all on the one pacer
        return AsanaSource(DESCRIPTOR, AsanaAuditLogClient(**client.client_kwargs()), workspace_gid, fork)

    return fork()


def _event_seconds(event: Mapping[str, Any]) -> float:
    return datetime.fromisoformat(str(event["created_at"]).replace("Z", "+00:00")).timestamp()


DESCRIPTOR = Descriptor(
    name="asana",
    title="Asana",
    key="Asana",
    units_per_second=1000,
    first_event=datetime(2021, 10, 8, tzinfo=UTC),  # the audit log API has nothing earlier
    retention_days=90,  # Asana deletes older events
    largest_page=MAX_LIMIT,
    # 1,500 calls a minute per token on paid domains: 20 under it, so a run may start with a burst
    # of 20 and no minute ever holds more than 1,500.
    rate_limit_per_minute=1500,
    calls_per_minute=1480,
    pacing_burst=20,
    backfill_concurrency=8,  # time slices a backfill fetches at once
    default_base_url=DEFAULT_BASE_URL,
    id_field="gid",
    time_field="created_at",
    event_seconds=_event_seconds,
    horizon_inclusive=False,  # windows are [start_at, end_at)
    table="asana_audit_log_events",
    columns=(
        Column("gid", "VARCHAR", "string"),
        Column("created_at", "VARCHAR", "string", "ISO 8601, UTC, milliseconds"),
        Column("event_type", "VARCHAR", "string"),
        Column("event_category", "VARCHAR", "string"),
        Column(
            "actor",
            "STRUCT(actor_type VARCHAR, gid VARCHAR, name VARCHAR, email VARCHAR)",
            "struct<actor_type:string,gid:string,name:string,email:string>",
        ),
        Column(
            "resource",
            "STRUCT(resource_type VARCHAR, resource_subtype VARCHAR, gid VARCHAR, name VARCHAR, email VARCHAR)",
            "struct<resource_type:string,resource_subtype:string,gid:string,name:string,email:string>",
        ),
        Column("details", "JSON", "string", "JSON; depends on the event type"),
        Column(
            "context",
            "STRUCT(context_type VARCHAR, api_authentication_method VARCHAR, client_ip_address VARCHAR, "
            "user_agent VARCHAR, oauth_app_name VARCHAR, rule_name VARCHAR, on_behalf_of_user_id VARCHAR)",
            "struct<context_type:string,api_authentication_method:string,client_ip_address:string,"
            "user_agent:string,oauth_app_name:string,rule_name:string,on_behalf_of_user_id:string>",
        ),
    ),
    preflight=preflight,
    vocabulary=vocabulary,
    window_type=AsanaWindow,
    build_source=_build_source,
    options=(WORKSPACE,),
    emulator="audit_collector.emulator.asana",
    compacted_columns=COMPACTED_COLUMNS,
    compacted_sort=("event_type", "event_time", "gid"),
    ocsf_mapping=Path(__file__).with_name("ocsf.json"),
    token_help="the Asana service account token",
    events_noun="audit log events",
    activity=Activity(
        at="from_iso8601_timestamp(created_at)",
        event="event_type",
        ip="context.client_ip_address",
        email="actor.email",
    ),
    athena_queries=(
        NamedQuery(
            "PermissionsExports",
            "Asana permission changes and exports (last 30 days)",
            """\
SELECT from_iso8601_timestamp(created_at) AS at, event_type, actor.email AS by_user,
       resource.resource_type, resource.name, details
FROM asana_audit_log_events
WHERE dt >= date_format(current_date - interval '30' day, '%Y-%m-%d')
  AND (event_category IN ('access_control', 'roles', 'exports') OR event_type LIKE '%export%'
       OR event_type LIKE '%role%' OR event_type LIKE '%permission%' OR event_type LIKE '%privacy%')
ORDER BY at DESC
""",
        ),
    ),
    questions=(
        (
            "Who downloaded or exported the most from Asana?",
            """SELECT actor.email AS user_email, count(*) AS downloads_and_exports
           FROM asana_audit_log_events
           WHERE event_type IN ('attachment_downloaded', 'workspace_export_started', 'project_export_completed')
           GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5""",
        ),
    ),
)
