"""A generated, realistic org and its audit events, seeded so every run is reproducible.

Shapes follow the vendors' documented samples, including the drift a collector must tolerate:
Slack ``session_id`` as string, integer or null; ``details.succeeded_users`` as a JSON-encoded
string; unknown top-level and nested fields; entity types newer than the documentation; bursts of
many events in the same second.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from audit_collector.asana import iso_ms

SLACK_ACTIONS: dict[str, list[str]] = {
    "user": [
        "user_login",
        "user_login_failed",
        "user_logout",
        "user_created",
        "user_deactivated",
        "role_change_to_admin",
        "role_change_to_owner",
        "role_change_to_user",
        "guest_created",
        "user_session_reset_by_admin",
    ],
    "file": [
        "file_downloaded",
        "file_uploaded",
        "file_public_link_created",
        "file_shared",
        "file_downloaded_blocked",
    ],
    "channel": [
        "user_channel_join",
        "user_channel_leave",
        "public_channel_created",
        "private_channel_created",
        "public_channel_archive",
        "channel_renamed",
        "external_shared_channel_invite_sent",
        "public_channel_converted_to_private",
    ],
    "app": [
        "app_installed",
        "app_uninstalled",
        "app_scopes_expanded",
        "app_approved",
        "app_restricted",
        "bot_token_upgraded",
        "org_app_workspace_added",
    ],
    "workspace": [
        "pref.two_factor_auth_changed",
        "pref.session_duration_changed",
        "emoji_added",
        "manual_export_started",
        "manual_export_downloaded",
        "corporate_exports_enabled",
    ],
    "enterprise": ["pref.sso_setting_changed", "organization_verified", "pref.ent_required_browser"],
    "usergroup": ["user_added_to_usergroup", "user_removed_from_usergroup"],
    "barrier": ["barrier_created", "barrier_updated", "barrier_deleted"],
    "message": ["message_tombstoned", "message_restored"],
    "workflow": ["workflow_created", "workflow_published", "workflow_responses_csv_download"],
    "huddle": ["huddle_started"],  # newer than the documented entity list
    "canvas": ["canvas_shared"],  # an entity type the collector has never heard of
}
# How often each entity type shows up: logins and file events dominate real audit logs.
SLACK_WEIGHTS = {
    "user": 40,
    "file": 20,
    "channel": 15,
    "app": 5,
    "workspace": 4,
    "enterprise": 1,
    "usergroup": 3,
    "barrier": 1,
    "message": 3,
    "workflow": 2,
    "huddle": 4,
    "canvas": 2,
}

ASANA_EVENTS: list[tuple[str, str, str]] = [  # (event_type, event_category, resource_type)
    ("user_login_succeeded", "logins", "user"),
    ("user_login_failed", "logins", "user"),
    ("user_logged_out", "logins", "user"),
    ("task_deleted", "deletion", "task"),
    ("project_deleted", "deletion", "project"),
    ("attachment_downloaded", "access_control", "attachment"),
    ("workspace_export_started", "exports", "workspace"),
    ("project_export_completed", "exports", "project"),
    ("user_workspace_admin_role_changed", "roles", "user"),
    ("team_privacy_settings_changed", "access_control", "team"),
    ("project_privacy_settings_changed", "access_control", "project"),
    ("service_account_created", "apps", "user"),
    ("app_added_to_domain", "apps", "app"),
    ("user_deprovisioned", "user_access", "user"),
]
ASANA_WEIGHTS = [30, 5, 10, 10, 2, 12, 1, 2, 2, 3, 4, 1, 2, 2]

USER_AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/127.0 Safari/537.36",
    "Slack/4.39.95 (Macintosh; Intel Mac OS X 14_5)",
    "com.tinyspeck.chatlyio/24.08.10 (iPhone; iOS 17.6; Scale/3.00)",
    "Asana/2.3.1 (iPhone; iOS 17.6)",
    "python-requests/2.32.3",
]


@dataclass
class Org:
    """The people and things events are about."""

    enterprise_id: str
    users: list[dict[str, str]]
    workspaces: list[dict[str, str]]
    channels: list[dict[str, Any]]
    apps: list[dict[str, Any]]
    ips: list[str]
    asana_users: list[dict[str, str]] = field(default_factory=list)


def make_org(seed: int = 1, users: int = 2000) -> Org:
    rng = random.Random(seed)
    first = ["ada", "alan", "grace", "linus", "barbara", "ken", "margaret", "dennis", "radia", "frances"]
    last = [
        "lovelace",
        "turing",
        "hopper",
        "torvalds",
        "liskov",
        "thompson",
        "hamilton",
        "ritchie",
        "perlman",
    ]
    people = []
    for i in range(users):
        name = f"{rng.choice(first)}.{rng.choice(last)}{i}"
        people.append(
            {
                "id": f"W{10000000 + i:08d}",
                "name": name.replace(".", " ").title(),
                "email": f"{name}@example.com",
                "team": "E0EXAMPLE",
            }
        )
    workspaces = [
        {"id": f"T{100 + i:07d}", "name": n, "domain": n}
        for i, n in enumerate(["acme-eng", "acme-sales", "acme-ops", "acme-legal", "acme-hq"])
    ]
    channels = [
        {
            "id": f"C{5000000 + i:07d}",
            "name": f"proj-{i}",
            "privacy": rng.choice(["public", "private"]),
            "is_shared": rng.random() < 0.1,
            "is_org_shared": rng.random() < 0.2,
        }
        for i in range(300)
    ]
    apps = [
        {
            "id": f"A{7000000 + i:07d}",
            "name": n,
            "is_distributed": rng.random() < 0.5,
            "is_directory_approved": rng.random() < 0.5,
            "is_workflow_app": False,
            "scopes": rng.sample(["channels:read", "chat:write", "files:read", "users:read", "admin"], 2),
        }
        for i, n in enumerate(["Jira Cloud", "GitHub", "PagerDuty", "Zoom", "Google Drive", "Okta"])
    ]
    ips = [f"203.0.113.{i}" for i in range(1, 60)] + [f"198.51.100.{i}" for i in range(1, 30)]
    asana_users = [
        {"gid": str(1200000000000000 + i), "name": p["name"], "email": p["email"]} for i, p in enumerate(people)
    ]
    return Org("E0EXAMPLE", people, workspaces, channels, apps, ips, asana_users)


def _times(rng: random.Random, start: int, end: int, count: int) -> list[int]:
    """Event seconds in [start, end), with same-second bursts like real logins after an outage."""
    out: list[int] = []
    while len(out) < count:
        t = rng.randrange(start, end)
        burst = rng.choice([1] * 20 + [2, 3, 5, 12])
        out.extend([t] * min(burst, count - len(out)))
    return out


def slack_events(org: Org, start: int, end: int, count: int, seed: int = 1) -> list[dict[str, Any]]:
    """``count`` Slack entries with ``date_create`` in [start, end) (Unix seconds)."""
    rng = random.Random(seed)
    kinds = list(SLACK_WEIGHTS)
    weights = [SLACK_WEIGHTS[k] for k in kinds]
    return [_slack_entry(org, rng, t, rng.choices(kinds, weights)[0]) for t in _times(rng, start, end, count)]


def _slack_entry(org: Org, rng: random.Random, t: int, kind: str) -> dict[str, Any]:
    actor = rng.choice(org.users)
    action = rng.choice(SLACK_ACTIONS[kind])
    target: dict[str, Any]
    if kind == "user":
        target = dict(rng.choice(org.users)) if not action.startswith("user_log") else dict(actor)
    elif kind == "file":
        target = {
            "id": f"F{rng.randrange(10**9):09d}",
            "name": f"report-{rng.randrange(999)}.pdf",
            "filetype": "pdf",
            "title": "Quarterly report",
        }
    elif kind == "channel":
        target = dict(rng.choice(org.channels))
    elif kind == "app":
        target = dict(rng.choice(org.apps))
    elif kind == "workspace":
        target = dict(rng.choice(org.workspaces))
    elif kind == "enterprise":
        target = {"id": org.enterprise_id, "name": "Acme", "domain": "acme"}
    else:
        target = {"id": f"{kind[0].upper()}{rng.randrange(10**8):08d}", "name": f"{kind}-{rng.randrange(99)}"}
    location = rng.choice(org.workspaces)
    session_id: Any = rng.choice([str(rng.randrange(10**12)), rng.randrange(10**12), None])
    entry: dict[str, Any] = {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "date_create": t,
        "action": action,
        "actor": {"type": "user", "user": dict(actor)},
        "entity": {"type": kind, kind: target},
        "context": {
            "location": {
                "type": "workspace",
                "id": location["id"],
                "name": location["name"],
                "domain": location["domain"],
            },
            "ua": rng.choice(USER_AGENTS),
            "ip_address": rng.choice(org.ips),
            "session_id": session_id,
        },
    }
    details: dict[str, Any] = {}
    if kind == "app":
        details = {
            "app_owner_id": actor["id"],
            "scopes": target["scopes"],
            "bot_scopes": ["chat:write"],
            "is_internal_integration": rng.random() < 0.3,
        }
    elif action == "user_login_failed":
        details = {"type": "password", "reason": "incorrect_password"}
    elif action.startswith("role_change"):
        details = {"previous_role": "user", "new_role": action.removeprefix("role_change_to_")}
    elif kind == "usergroup":
        details = {
            "succeeded_users": json.dumps([u["id"] for u in rng.sample(org.users, 2)]),
            "failed_users": "[]",
        }
    elif action.endswith("export_started"):
        details = {"export_type": "standard", "export_start_ts": str(t - 86400 * 30), "export_end_ts": str(t)}
    if details:
        entry["details"] = details
    if rng.random() < 0.02:
        entry["new_attribute"] = "a field this collector has never seen"
    if rng.random() < 0.05:
        entry["context"]["app"] = {
            "id": org.apps[0]["id"],
            "name": org.apps[0]["name"],
            "scopes": [],
            "scopes_bot": ["chat:write"],
            "creator": actor["id"],
            "team": location["id"],
        }
    return entry


def asana_events(org: Org, start_ms: int, end_ms: int, count: int, seed: int = 1) -> list[dict[str, Any]]:
    """``count`` Asana events with ``created_at`` in [start_ms, end_ms), including same-millisecond ones."""
    rng = random.Random(seed)
    out = []
    times = _times(rng, start_ms, end_ms, count)
    for ms in sorted(times):
        event_type, category, resource_type = rng.choices(ASANA_EVENTS, ASANA_WEIGHTS)[0]
        actor = rng.choice(org.asana_users)
        resource_gid = str(1300000000000000 + rng.randrange(10**9))
        event: dict[str, Any] = {
            "gid": str(rng.randrange(10**15, 10**16)),
            "created_at": iso_ms(ms),
            "event_type": event_type,
            "event_category": category,
            "actor": {
                "actor_type": "user",
                "gid": actor["gid"],
                "name": actor["name"],
                "email": actor["email"],
            },
            "resource": {
                "resource_type": resource_type,
                "gid": resource_gid,
                "name": f"{resource_type} {rng.randrange(999)}",
            },
            "details": {},
            "context": {
                "context_type": rng.choice(["web", "desktop", "mobile", "api"]),
                "client_ip_address": rng.choice(org.ips),
                "user_agent": rng.choice(USER_AGENTS),
            },
        }
        if resource_type == "user":
            event["resource"]["email"] = actor["email"]
        if event["context"]["context_type"] == "api":
            event["context"]["api_authentication_method"] = rng.choice(["oauth", "personal_access_token"])
            if event["context"]["api_authentication_method"] == "oauth":
                event["context"]["oauth_app_name"] = "Zapier"
        if "role" in event_type or "privacy" in event_type:
            event["details"] = {"old_value": "member", "new_value": "admin"}
        if rng.random() < 0.02:
            event["details"]["group"] = {"gid": "1500000000000001", "name": "EMEA"}
        out.append(event)
    return out
