"""Asana's columns in the compacted table: what investigations filter and group on, typed.

Everything else stays in ``event`` (the archived JSON text, byte for byte); ``details`` drifts by
event type and is kept as JSON text.
"""

from __future__ import annotations

from ...descriptor import Extracted


def _scalar(path: str) -> str:
    return f"json_extract_scalar(line, '$.{path}')"


COLUMNS = (
    Extracted(
        "event_time",
        "timestamp",
        "TIMESTAMP",
        "CAST(from_iso8601_timestamp(" + _scalar("created_at") + ") AS timestamp)",
    ),
    Extracted("gid", "string", "VARCHAR", _scalar("gid")),
    Extracted("event_type", "string", "VARCHAR", _scalar("event_type")),
    Extracted("event_category", "string", "VARCHAR", _scalar("event_category")),
    Extracted("actor_type", "string", "VARCHAR", _scalar("actor.actor_type")),
    Extracted("actor_gid", "string", "VARCHAR", _scalar("actor.gid")),
    Extracted("actor_email", "string", "VARCHAR", _scalar("actor.email")),
    Extracted("ip", "string", "VARCHAR", _scalar("context.client_ip_address")),
    Extracted("user_agent", "string", "VARCHAR", _scalar("context.user_agent")),
    Extracted("context_type", "string", "VARCHAR", _scalar("context.context_type")),
    Extracted("resource_type", "string", "VARCHAR", _scalar("resource.resource_type")),
    Extracted("resource_subtype", "string", "VARCHAR", _scalar("resource.resource_subtype")),
    Extracted("resource_gid", "string", "VARCHAR", _scalar("resource.gid")),
    Extracted("resource_name", "string", "VARCHAR", _scalar("resource.name")),
    # Change events (roles, settings, permissions) say what changed from and to: an investigation's
    # most asked question of ``details``, kept out of the JSON so it reads a column, not every event.
    Extracted("old_value", "string", "VARCHAR", _scalar("details.old_value")),
    Extracted("new_value", "string", "VARCHAR", _scalar("details.new_value")),
    Extracted("details", "string", "VARCHAR", "json_format(json_extract(line, '$.details'))"),
)
