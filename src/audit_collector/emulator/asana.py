"""The emulated Asana audit log API: ``GET /api/1.0/workspaces/{gid}/audit_log_events``.

Semantics: oldest first; ``start_at`` inclusive, ``end_at`` exclusive; the offset names the last
event served, and once a query matched anything it keeps returning a ``next_page`` (a stream).
Errors are ``{"errors": [{"message": ...}]}``. Events follow the documented samples, including
several in the same millisecond.
"""

from __future__ import annotations

import bisect
import json
import random
import re
from collections.abc import Iterable
from datetime import datetime
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
from audit_collector.providers.asana.client import iso_ms

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


PATH = re.compile(r"^workspaces/([^/]+)/audit_log_events$")
HELP = "See https://developers.asana.com/docs/errors"


class AsanaApi(EmulatedApi):
    """Asana's audit API under ``/api/1.0/``. ``workspaces``: the gids it knows; ``offset_ttl``:
    seconds an offset stays valid."""

    name = "asana"
    prefix = "/api/1.0/"
    default_tokens = ("asana-emulator-token",)
    position_param = "offset"
    position_fault = "expired_offset"
    demo_per_day = 4_000
    demo_lag = 5.0

    def __init__(
        self,
        *,
        workspaces: Iterable[str] = ("1200000000000001",),
        offset_ttl: float | None = None,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.log = AsanaLog()
        self.workspaces = set(workspaces)
        self.offset_ttl = offset_ttl

    @property
    def workspace_gid(self) -> str:
        return sorted(self.workspaces)[0]

    @property
    def options(self) -> dict[str, str]:
        return {"workspace_gid": self.workspace_gid}

    def routes(self, path: str) -> bool:
        return PATH.match(path) is not None

    def refuse(self, request: Request) -> Answer | None:
        if request.token not in self.tokens:
            return self.error(401, "Not Authorized")
        match = PATH.match(request.path)
        if match is None or match.group(1) not in self.workspaces:
            return self.error(404, "workspace: Not a recognized ID")
        return None

    def page(self, request: Request) -> Answer:
        try:
            return Answer(200, self.log.page(request.params, request.now, self.offset_ttl), data=True)
        except BadRequest as exc:
            return self.error(exc.status, exc.code)

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
        body = {"errors": [{"message": message, "help": HELP}]}
        return Answer(status, json.dumps(body).encode(), headers or {})

    def server_error(self) -> Answer:
        return Answer(503, b'{"errors":[{"message":"Server Error","phrase":"6 sad squid snuggle softly"}]}')

    def rate_limited(self, retry_after: str, *, injected: bool = False) -> Answer:
        message = "You've made too many requests and hit a rate limit. Please retry after the given time."
        return self.error(429, "You've made too many requests." if injected else message, {"Retry-After": retry_after})

    def position_rejected(self) -> Answer:
        return self.error(400, "offset: Your pagination token has expired or is invalid")

    def add(self, events: Iterable[dict[str, Any]], visible_at: float | None = None, lag: float = 0.0) -> None:
        self.log.add(events, visible_at, lag)

    def generate(self, org: Org, start: float, end: float, count: int, seed: int = 1) -> list[dict[str, Any]]:
        return asana_events(org, int(start * 1000), int(end * 1000), count, seed=seed)


API = AsanaApi


def parse_iso_ms(value: str, name: str) -> int:
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise BadRequest(f"{name}: Invalid date-time: {value}") from None


class AsanaLog(SortedLog):
    """Asana's audit_log_events over a sorted list of (created_at ms, gid)."""

    ACTOR_TYPES = ("user", "asana", "asana_support", "anonymous", "external_administrator")

    def add(self, events: Iterable[dict[str, Any]], visible_at: float | None = None, lag: float = 0.0) -> None:
        new: list[Stored] = []
        with self.lock:
            for event in events:
                ms = parse_iso_ms(event["created_at"], "created_at")
                actor = event.get("actor") or {}
                item = Stored(
                    key=(ms, str(event["gid"])),
                    raw=AsanaApi.encode(event),
                    visible_at=visible_at if visible_at is not None else ms / 1000 + lag,
                    attrs=(
                        event.get("event_type"),
                        actor.get("actor_type"),
                        actor.get("gid"),
                        (event.get("resource") or {}).get("gid"),
                    ),
                )
                new.append(item)
            self.merge(new)

    def page(self, params: dict[str, str], now: float, offset_ttl: float | None) -> bytes:
        limit = int_param(params, "limit", 1000)
        if not 1 <= limit <= 100 and "limit" in params:
            raise BadRequest("limit: Value must be between 1 and 100")
        start = parse_iso_ms(params["start_at"], "start_at") if params.get("start_at") else 0
        end = parse_iso_ms(params["end_at"], "end_at") if params.get("end_at") else None
        if params.get("actor_type") and params["actor_type"] not in self.ACTOR_TYPES:
            raise BadRequest("actor_type: Not a valid enum value")
        filters = {
            k: params.get(k)
            for k in ("start_at", "end_at", "event_type", "actor_type", "actor_gid", "resource_gid", "limit")
        }
        after: tuple = (start, "")
        if params.get("offset"):
            offset = decode_token(params["offset"])
            if (
                offset is None
                or offset.get("q") != filter_hash(filters)
                or (offset_ttl is not None and now - offset.get("t", 0) > offset_ttl)
            ):
                raise BadRequest("offset: Your pagination token has expired or is invalid")
            after = tuple(offset["a"])

        def matches(item: Stored) -> bool:
            event_type, actor_type, actor_gid, resource_gid = item.attrs
            return (
                item.visible_at <= now
                and (end is None or item.key[0] < end)
                and item.key[0] >= start
                and all(
                    want is None or got == want
                    for got, want in (
                        (event_type, params.get("event_type")),
                        (actor_type, params.get("actor_type")),
                        (actor_gid, params.get("actor_gid")),
                        (resource_gid, params.get("resource_gid")),
                    )
                )
            )

        with self.lock:
            index = bisect.bisect_right(self.keys, after) if after[1] else bisect.bisect_left(self.keys, after)
            served: list[Stored] = []
            while index < len(self.items) and len(served) < limit:
                item = self.items[index]
                if end is not None and item.key[0] >= end:
                    break
                if matches(item):
                    served.append(item)
                index += 1
        if served:
            position: list | None = list(served[-1].key)
        elif params.get("offset"):
            position = list(after)  # caught up: the same stream position comes back
        else:
            position = None
        next_page = b"null"
        if position is not None:
            token = encode_token({"a": position, "q": filter_hash(filters), "t": now})
            next_page = json.dumps({"offset": token, "path": f"?offset={token}", "uri": f"?offset={token}"}).encode()
        return b'{"data":[' + b",".join(i.raw for i in served) + b'],"next_page":' + next_page + b"}"


def asana_users(org: Org) -> list[dict[str, str]]:
    """The org's people as Asana names them (numeric gids)."""
    return [{"gid": str(1200000000000000 + i), "name": p["name"], "email": p["email"]} for i, p in enumerate(org.users)]


def asana_events(org: Org, start_ms: int, end_ms: int, count: int, seed: int = 1) -> list[dict[str, Any]]:
    """``count`` Asana events with ``created_at`` in [start_ms, end_ms), including same-millisecond ones."""
    rng = random.Random(seed)
    out = []
    users = asana_users(org)
    times = event_times(rng, start_ms, end_ms, count)
    for ms in sorted(times):
        event_type, category, resource_type = rng.choices(ASANA_EVENTS, ASANA_WEIGHTS)[0]
        actor = rng.choice(users)
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
