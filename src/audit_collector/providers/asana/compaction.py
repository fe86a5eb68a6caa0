"""Asana's columns in the compacted table: what investigations filter and group on, typed.

Everything else stays in ``event`` (the archived JSON text, byte for byte); ``details`` drifts by
event type and is kept as JSON text.
"""

from __future__ import annotations

from audit_collector.collector.provider import Extracted, scalar

COLUMNS = (
    Extracted(
        "event_time",
        "timestamp",
        "TIMESTAMP",
        "CAST(from_iso8601_timestamp(" + scalar("created_at") + ") AS timestamp)",
    ),
    Extracted("gid", "string", "VARCHAR", scalar("gid")),
    Extracted("event_type", "string", "VARCHAR", scalar("event_type")),
    Extracted("event_category", "string", "VARCHAR", scalar("event_category")),
    Extracted("actor_type", "string", "VARCHAR", scalar("actor.actor_type")),
    Extracted("actor_gid", "string", "VARCHAR", scalar("actor.gid")),
    Extracted("actor_email", "string", "VARCHAR", scalar("actor.email")),
    Extracted("ip", "string", "VARCHAR", scalar("context.client_ip_address")),
    Extracted("user_agent", "string", "VARCHAR", scalar("context.user_agent")),
    Extracted("context_type", "string", "VARCHAR", scalar("context.context_type")),
    Extracted("resource_type", "string", "VARCHAR", scalar("resource.resource_type")),
    Extracted("resource_subtype", "string", "VARCHAR", scalar("resource.resource_subtype")),
    Extracted("resource_gid", "string", "VARCHAR", scalar("resource.gid")),
    Extracted("resource_name", "string", "VARCHAR", scalar("resource.name")),
    # Change events (roles, settings, permissions) say what changed from and to: an investigation's
    # most asked question of ``details``, kept out of the JSON so it reads a column, not every event.
    Extracted("old_value", "string", "VARCHAR", scalar("details.old_value")),
    Extracted("new_value", "string", "VARCHAR", scalar("details.new_value")),
    Extracted("details", "string", "VARCHAR", "json_format(json_extract(line, '$.details'))"),
)
