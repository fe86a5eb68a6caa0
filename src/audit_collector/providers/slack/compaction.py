"""Slack's columns in the compacted table: what investigations filter and group on, typed.

Everything else stays in ``event`` (the archived JSON text, byte for byte), and the parts that drift
(``entity``, ``details``) are kept as JSON text too.
"""

from __future__ import annotations

from audit_collector.collector.provider import Extracted, scalar

# Slack names the entity's object after its type ({"type": "channel", "channel": {"id": ...}}).
ENTITY_TYPES = (
    "user",
    "channel",
    "file",
    "app",
    "workspace",
    "enterprise",
    "usergroup",
    "message",
    "workflow",
    "canvas",
    "huddle",
    "barrier",
    "role",
)


COLUMNS = (
    Extracted(
        "event_time",
        "timestamp",
        "TIMESTAMP",
        "CAST(from_unixtime(CAST(" + scalar("date_create") + " AS bigint)) AS timestamp)",
    ),
    Extracted("id", "string", "VARCHAR", scalar("id")),
    Extracted("action", "string", "VARCHAR", scalar("action")),
    Extracted("actor_type", "string", "VARCHAR", scalar("actor.type")),
    Extracted("actor_id", "string", "VARCHAR", scalar("actor.user.id")),
    Extracted("actor_email", "string", "VARCHAR", scalar("actor.user.email")),
    Extracted("ip", "string", "VARCHAR", scalar("context.ip_address")),
    Extracted("user_agent", "string", "VARCHAR", scalar("context.ua")),
    Extracted("session_id", "string", "VARCHAR", scalar("context.session_id")),
    Extracted("workspace_id", "string", "VARCHAR", scalar("context.location.id")),
    Extracted("entity_type", "string", "VARCHAR", scalar("entity.type")),
    Extracted(
        "entity_id", "string", "VARCHAR", "coalesce(" + ", ".join(scalar(f"entity.{t}.id") for t in ENTITY_TYPES) + ")"
    ),
    Extracted(
        "entity_name",
        "string",
        "VARCHAR",
        "coalesce(" + ", ".join(scalar(f"entity.{t}.name") for t in ENTITY_TYPES) + ")",
    ),
    Extracted("entity_email", "string", "VARCHAR", scalar("entity.user.email")),
    Extracted("entity", "string", "VARCHAR", "json_format(json_extract(line, '$.entity'))"),
    Extracted("details", "string", "VARCHAR", "json_format(json_extract(line, '$.details'))"),
)
