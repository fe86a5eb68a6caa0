"""Everything the rest of the house needs to know about Slack's Audit Logs API, in one value."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit_collector.collector.provider import Activity, ClientSettings, Column, Descriptor, NamedQuery
from audit_collector.providers.slack.client import DEFAULT_BASE_URL, MAX_LIMIT, AuditLogsClient
from audit_collector.providers.slack.compaction import COLUMNS as COMPACTED_COLUMNS
from audit_collector.providers.slack.drift import vocabulary
from audit_collector.providers.slack.preflight import preflight
from audit_collector.providers.slack.source import SlackSource, SlackWindow


def _build_source(client: ClientSettings, options: Mapping[str, str]) -> SlackSource:
    return SlackSource(DESCRIPTOR, AuditLogsClient(**client.client_kwargs()))


def _event_seconds(event: Mapping[str, Any]) -> float:
    return float(event["date_create"])


# Saved in the stack's Athena workgroup (template.yaml's Query<Key><id>), over the raw table.
ATHENA_QUERIES = (
    NamedQuery(
        "Logins",
        "Slack logins by IP and user agent (last 7 days)",
        """\
SELECT context.ip_address AS ip, context.ua AS user_agent, action,
       count(*) AS events, count(DISTINCT actor.user.id) AS users
FROM slack_audit_logs
WHERE dt >= date_format(current_date - interval '7' day, '%Y-%m-%d')
  AND action IN ('user_login', 'user_login_failed')
GROUP BY 1, 2, 3 ORDER BY events DESC LIMIT 100
""",
    ),
    NamedQuery(
        "AdminChanges",
        "Slack admin, owner and permission changes (last 30 days)",
        """\
SELECT from_unixtime(date_create) AS at, action, actor.user.email AS by_user,
       json_extract_scalar(entity, '$.type') AS entity_type, entity, details
FROM slack_audit_logs
WHERE dt >= date_format(current_date - interval '30' day, '%Y-%m-%d')
  AND (action LIKE 'role_change_to_%' OR action LIKE 'pref.%' OR action = 'owner_transferred'
       OR action LIKE 'barrier_%' OR action = 'user_session_reset_by_admin')
ORDER BY date_create DESC
""",
    ),
    NamedQuery(
        "AppInstalls",
        "Slack app installs, scope expansions and token grants (last 30 days)",
        """\
SELECT from_unixtime(date_create) AS at, action, actor.user.email AS by_user,
       json_extract_scalar(entity, '$.app.name') AS app,
       json_extract(details, '$.scopes') AS scopes
FROM slack_audit_logs
WHERE dt >= date_format(current_date - interval '30' day, '%Y-%m-%d')
  AND (action IN ('app_installed', 'app_scopes_expanded', 'app_approved', 'app_resources_granted',
                  'bot_token_upgraded', 'org_app_workspace_added') OR action LIKE '%token%')
ORDER BY date_create DESC
""",
    ),
    NamedQuery(
        "DownloadsExports",
        "Slack file downloads and exports by user (last 7 days)",
        """\
SELECT actor.user.email AS user_email, action, count(*) AS events
FROM slack_audit_logs
WHERE dt >= date_format(current_date - interval '7' day, '%Y-%m-%d')
  AND (action IN ('file_downloaded', 'file_public_link_created', 'file_downloaded_blocked')
       OR action LIKE '%export%')
GROUP BY 1, 2 ORDER BY events DESC LIMIT 100
""",
    ),
)

DESCRIPTOR = Descriptor(
    name="slack",
    title="Slack Enterprise Grid",
    key="Slack",
    units_per_second=1,
    first_event=datetime(2018, 3, 1, tzinfo=UTC),  # the Audit Logs API has nothing earlier
    retention_days=None,
    largest_page=MAX_LIMIT,
    # About 50 calls a minute for the whole org, shared by every app: pace just under it, no burst.
    rate_limit_per_minute=50,
    calls_per_minute=48,
    pacing_burst=1,
    backfill_concurrency=1,  # the org-wide limit leaves nothing to overlap
    default_base_url=DEFAULT_BASE_URL,
    id_field="id",
    time_field="date_create",
    event_seconds=_event_seconds,
    horizon_inclusive=True,  # windows are [oldest, latest], both inclusive
    table="slack_audit_logs",
    columns=(
        Column("id", "VARCHAR", "string"),
        Column("date_create", "BIGINT", "bigint"),
        Column("action", "VARCHAR", "string"),
        Column(
            "actor",
            'STRUCT(type VARCHAR, "user" STRUCT(id VARCHAR, name VARCHAR, email VARCHAR, team VARCHAR))',
            "struct<type:string,user:struct<id:string,name:string,email:string,team:string>>",
        ),
        Column("entity", "JSON", "string", "JSON: {type, <type>: {...}}; new entity types appear over time"),
        Column(
            "context",
            "STRUCT(location STRUCT(type VARCHAR, id VARCHAR, name VARCHAR, domain VARCHAR), ua VARCHAR, "
            "ip_address VARCHAR, session_id VARCHAR, app JSON)",
            "struct<location:struct<type:string,id:string,name:string,domain:string>,ua:string,ip_address:string,"
            "session_id:string,app:string>",
        ),
        Column("details", "JSON", "string", "JSON; depends on the action"),
    ),
    preflight=preflight,
    vocabulary=vocabulary,
    window_type=SlackWindow,
    build_source=_build_source,
    emulator="audit_collector.emulator.slack",
    compacted_columns=COMPACTED_COLUMNS,
    compacted_sort=("action", "event_time", "id"),
    ocsf_mapping=Path(__file__).with_name("ocsf.json"),
    token_help='the Slack org-owner token (xoxp-, auditlogs:read), as text or {"token":"..."}',
    events_noun="audit logs",
    athena_queries=ATHENA_QUERIES,
    activity=Activity(
        at="from_unixtime(date_create)", event="action", ip="context.ip_address", email="actor.user.email"
    ),
    questions=(
        (
            "Who failed to log in to Slack most, and from where?",
            """SELECT actor.user.email AS user_email, context.ip_address AS ip, count(*) AS failures
           FROM slack_audit_logs WHERE action = 'user_login_failed'
           GROUP BY 1, 2 ORDER BY failures DESC, user_email LIMIT 5""",
        ),
        (
            "Who was made a Slack admin or owner, and by whom?",
            """SELECT from_unixtime(date_create) AS at, actor.user.email AS granted_by,
                  json_extract_scalar(entity, '$.user.email') AS granted_to, action
           FROM slack_audit_logs WHERE action IN ('role_change_to_admin', 'role_change_to_owner')
           ORDER BY date_create DESC LIMIT 5""",
        ),
    ),
)
