"""The emulated Slack Audit Logs API: ``/logs`` (newest first, cursors), ``/schemas``, ``/actions``.

Semantics: ``oldest``/``latest`` both inclusive; a page holds at most ``limit`` entries and may end
inside a second (a burst of one second then spans pages); the cursor names the last entry served.
``split_seconds=False`` keeps the older behaviour: a page never splits a second (so it can hold more
than ``limit``) and the cursor names the next second to serve. Errors are ``{"ok": false, "error":
code}`` with the documented statuses. Entries follow the documented samples, with the drift a
collector must tolerate: ``session_id`` as string, integer or null; ``details.succeeded_users`` as
a JSON-encoded string; unknown fields; entity types newer than the documentation; same-second bursts.
"""

from __future__ import annotations

import bisect
import json
import random
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from audit_collector.emulator.api import Answer, EmulatedApi, Request
from audit_collector.emulator.logs import (
    BadRequest,
    SortedLog,
    Stored,
    decode_token,
    encode_token,
    filter_hash,
    int_param,
)
from audit_collector.emulator.org import USER_AGENTS, Org, event_times

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


STATUS = {
    "missing_authentication": 401,
    "invalid_authentication": 401,
    "feature_not_enabled": 403,
    "rate_limited": 429,
}
DOCUMENTS = ("schemas", "actions")  # served as fixed files, without a token check


class SlackApi(EmulatedApi):
    """Slack's audit API under ``/audit/v1/``. ``tokens_without_feature``: tokens of an org without
    Enterprise Grid (``feature_not_enabled``); ``cursor_ttl``: seconds a cursor stays valid."""

    name = "slack"
    prefix = "/audit/v1/"
    default_tokens = ("xoxp-emulator",)
    position_param = "cursor"
    position_fault = "invalid_cursor"
    demo_per_day = 12_000
    demo_lag = 0.0

    def __init__(
        self,
        *,
        tokens_without_feature: Iterable[str] = (),
        split_seconds: bool = True,
        cursor_ttl: float | None = None,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.log = SlackLog(split_seconds=split_seconds)
        self.tokens_without_feature = set(tokens_without_feature)
        self.cursor_ttl = cursor_ttl

    def document(self, name: str) -> bytes:
        """``/schemas`` or ``/actions``, as the real API answered them."""
        return (Path(__file__).with_name("static") / f"slack-{name}.json").read_bytes()

    def early(self, request: Request) -> Answer | None:
        endpoint = request.path.strip("/")
        if endpoint in DOCUMENTS:
            return Answer(200, self.document(endpoint))
        if endpoint != "logs":
            return self.error(404, "bad_endpoint")
        return None

    def refuse(self, request: Request) -> Answer | None:
        if not request.token:
            return self.error(STATUS["missing_authentication"], "missing_authentication")
        if request.token in self.tokens_without_feature:
            return self.error(STATUS["feature_not_enabled"], "feature_not_enabled")
        if request.token not in self.tokens:
            return self.error(STATUS["invalid_authentication"], "invalid_authentication")
        return None

    def page(self, request: Request) -> Answer:
        try:
            return Answer(200, self.log.page(request.params, request.now, self.cursor_ttl), data=True)
        except BadRequest as exc:
            return self.error(exc.status, exc.code)

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
        return Answer(status, json.dumps({"ok": False, "error": message}).encode(), headers or {})

    def server_error(self) -> Answer:
        return Answer(503, b'{"ok":false,"error":"internal_error"}')

    def position_rejected(self) -> Answer:
        return self.error(400, "invalid_cursor")

    @staticmethod
    def encode(event: dict[str, Any]) -> bytes:
        """Slack escapes every "/" as "\\/" (PHP's json_encode), so an archive that wrote events
        again, rather than keeping the served text, would show."""
        return EmulatedApi.encode(event).replace(b"/", b"\\/")

    def add(self, events: Iterable[dict[str, Any]], visible_at: float | None = None, lag: float = 0.0) -> None:
        self.log.add(events, visible_at, lag)

    def generate(self, org: Org, start: float, end: float, count: int, seed: int = 1) -> list[dict[str, Any]]:
        return slack_events(org, int(start), int(end), count, seed=seed)


API = SlackApi


class SlackLog(SortedLog):
    """Slack's /logs over a sorted list of (date_create, id). ``split_seconds``: pages end after
    ``limit`` entries even inside a second (the default: a real API may); False: never inside one."""

    def __init__(self, split_seconds: bool = True) -> None:
        super().__init__()
        self.split_seconds = split_seconds

    def add(self, entries: Iterable[dict[str, Any]], visible_at: float | None = None, lag: float = 0.0) -> None:
        """Add entries; each reaches the API at ``visible_at`` (default: ``date_create + lag``)."""
        new: list[Stored] = []
        with self.lock:
            for entry in entries:
                entity = entry.get("entity") or {}
                target = entity.get(entity.get("type")) if isinstance(entity, dict) else None
                actor = ((entry.get("actor") or {}).get("user") or {}).get("id")
                item = Stored(
                    key=(int(entry["date_create"]), str(entry.get("id"))),
                    raw=SlackApi.encode(entry),
                    visible_at=visible_at if visible_at is not None else entry["date_create"] + lag,
                    attrs=(
                        entry.get("action"),
                        actor,
                        target.get("id") if isinstance(target, dict) else None,
                    ),
                )
                new.append(item)
            self.merge(new)

    def page(self, params: dict[str, str], now: float, cursor_ttl: float | None) -> bytes:
        oldest = int_param(params, "oldest", 0)
        latest = int_param(params, "latest", int(now))
        limit = int_param(params, "limit", 100)
        if limit < 1 or limit > 9999:
            raise BadRequest("invalid_arguments")
        if oldest > latest:
            raise BadRequest("invalid_range")
        actions = set(params["action"].split(",")) if params.get("action") else None
        if actions is not None and len(actions) > 30:
            raise BadRequest("invalid_action")
        actor, entity = params.get("actor"), params.get("entity")
        filters = {k: params.get(k) for k in ("oldest", "latest", "action", "actor", "entity", "limit")}
        upper = latest
        below: tuple | None = None  # split pages: serve only keys before the last one served
        if params.get("cursor"):
            cursor = decode_token(params["cursor"])
            if (
                cursor is None
                or cursor.get("q") != filter_hash(filters)
                or (cursor_ttl is not None and now - cursor.get("t", 0) > cursor_ttl)
            ):
                raise BadRequest("invalid_cursor")
            if "k" in cursor:
                below = (int(cursor["k"][0]), str(cursor["k"][1]))
            else:
                upper = min(latest, int(cursor["b"]))

        def matches(item: Stored) -> bool:
            action, actor_id, entity_id = item.attrs
            return (
                item.visible_at <= now
                and (actions is None or action in actions)
                and (actor is None or actor_id == actor)
                and (entity is None or entity_id == entity)
            )

        with self.lock:
            index = bisect.bisect_right(self.keys, (upper, "\uffff")) - 1
            if below is not None:
                index = min(index, bisect.bisect_left(self.keys, below) - 1)
            served: list[bytes] = []
            last_second = last_key = None
            while index >= 0 and self.keys[index][0] >= oldest:
                item = self.items[index]
                second = item.key[0]
                if len(served) >= limit and (self.split_seconds or second != last_second):
                    break
                if matches(item):
                    served.append(item.raw)
                    last_second, last_key = second, item.key
                index -= 1
            more = False
            while index >= 0 and self.keys[index][0] >= oldest and not more:
                more = matches(self.items[index])
                index -= 1
        next_cursor = ""
        if more and last_second is not None:
            where = {"k": list(last_key)} if self.split_seconds else {"b": last_second - 1}
            next_cursor = encode_token({**where, "q": filter_hash(filters), "t": now})
        return (
            b'{"ok":true,"entries":['
            + b",".join(served)
            + b'],"response_metadata":{"next_cursor":"'
            + next_cursor.encode()
            + b'"}}'
        )


def slack_events(org: Org, start: int, end: int, count: int, seed: int = 1) -> list[dict[str, Any]]:
    """``count`` Slack entries with ``date_create`` in [start, end) (Unix seconds)."""
    rng = random.Random(seed)
    kinds = list(SLACK_WEIGHTS)
    weights = [SLACK_WEIGHTS[k] for k in kinds]
    return [_slack_entry(org, rng, t, rng.choices(kinds, weights)[0]) for t in event_times(rng, start, end, count)]


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
