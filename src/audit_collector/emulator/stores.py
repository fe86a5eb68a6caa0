"""The two APIs' paging semantics over in-memory event logs, with no HTTP in sight.

Slack: newest first; ``oldest``/``latest`` both inclusive; a page holds at most ``limit`` entries
and may end inside a second (a burst of one second then spans pages); the cursor names the last
entry served. ``SlackLog(split_seconds=False)`` keeps the older behaviour: a page never splits a
second (so it can hold more than ``limit``) and the cursor names the next second to serve.
Asana: oldest first; ``start_at`` inclusive, ``end_at`` exclusive; the offset names the
last event served, and once a query matched anything it keeps returning a ``next_page`` (a stream).

Events are kept pre-encoded: serving a 9,999-event page is a join of bytes, not a dump of dicts.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class BadRequest(Exception):
    """Maps to the API's own error body; ``code`` is Slack's error code or Asana's message."""

    def __init__(self, code: str, status: int = 400) -> None:
        super().__init__(code)
        self.code = code
        self.status = status


def encode_token(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any] | None:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _filter_hash(filters: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:16]


def served_text(api: str, event: dict[str, Any]) -> bytes:
    """An event's JSON text as the API writes it. Slack escapes every "/" as "\\/" (PHP's
    json_encode), so an archive that wrote events again, rather than keeping the served text,
    would show here."""
    text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return (text.replace("/", "\\/") if api == "slack" else text).encode()


class _SortedLog:
    """Items kept sorted by key; added in batches so a million events load in seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[_Stored] = []
        self._keys: list[tuple] = []

    def _merge(self, new: list[_Stored]) -> None:
        self._items = sorted(self._items + new, key=lambda item: item.key)
        self._keys = [item.key for item in self._items]

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class _Stored:
    key: tuple  # sort key
    raw: bytes  # the event as served
    visible_at: float  # when it reaches the API (late arrivals)
    attrs: tuple  # filterable values


class SlackLog(_SortedLog):
    """Slack's /logs over a sorted list of (date_create, id). ``split_seconds``: pages end after
    ``limit`` entries even inside a second (the default: a real API may); False: never inside one."""

    def __init__(self, split_seconds: bool = True) -> None:
        super().__init__()
        self.split_seconds = split_seconds

    def add(self, entries: Iterable[dict[str, Any]], visible_at: float | None = None, lag: float = 0.0) -> None:
        """Add entries; each reaches the API at ``visible_at`` (default: ``date_create + lag``)."""
        new: list[_Stored] = []
        with self._lock:
            for entry in entries:
                entity = entry.get("entity") or {}
                target = entity.get(entity.get("type")) if isinstance(entity, dict) else None
                actor = ((entry.get("actor") or {}).get("user") or {}).get("id")
                item = _Stored(
                    key=(int(entry["date_create"]), str(entry.get("id"))),
                    raw=served_text("slack", entry),
                    visible_at=visible_at if visible_at is not None else entry["date_create"] + lag,
                    attrs=(
                        entry.get("action"),
                        actor,
                        target.get("id") if isinstance(target, dict) else None,
                    ),
                )
                new.append(item)
            self._merge(new)

    def page(self, params: dict[str, str], now: float, cursor_ttl: float | None) -> bytes:
        oldest = _int_param(params, "oldest", 0)
        latest = _int_param(params, "latest", int(now))
        limit = _int_param(params, "limit", 100)
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
                or cursor.get("q") != _filter_hash(filters)
                or (cursor_ttl is not None and now - cursor.get("t", 0) > cursor_ttl)
            ):
                raise BadRequest("invalid_cursor")
            if "k" in cursor:
                below = (int(cursor["k"][0]), str(cursor["k"][1]))
            else:
                upper = min(latest, int(cursor["b"]))

        def matches(item: _Stored) -> bool:
            action, actor_id, entity_id = item.attrs
            return (
                item.visible_at <= now
                and (actions is None or action in actions)
                and (actor is None or actor_id == actor)
                and (entity is None or entity_id == entity)
            )

        with self._lock:
            index = bisect.bisect_right(self._keys, (upper, "\uffff")) - 1
            if below is not None:
                index = min(index, bisect.bisect_left(self._keys, below) - 1)
            served: list[bytes] = []
            last_second = last_key = None
            while index >= 0 and self._keys[index][0] >= oldest:
                item = self._items[index]
                second = item.key[0]
                if len(served) >= limit and (self.split_seconds or second != last_second):
                    break
                if matches(item):
                    served.append(item.raw)
                    last_second, last_key = second, item.key
                index -= 1
            more = False
            while index >= 0 and self._keys[index][0] >= oldest and not more:
                more = matches(self._items[index])
                index -= 1
        next_cursor = ""
        if more and last_second is not None:
            where = {"k": list(last_key)} if self.split_seconds else {"b": last_second - 1}
            next_cursor = encode_token({**where, "q": _filter_hash(filters), "t": now})
        return (
            b'{"ok":true,"entries":['
            + b",".join(served)
            + b'],"response_metadata":{"next_cursor":"'
            + next_cursor.encode()
            + b'"}}'
        )


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    if name not in params:
        return default
    try:
        return int(params[name])
    except ValueError:
        raise BadRequest("invalid_arguments") from None


def parse_iso_ms(value: str, name: str) -> int:
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise BadRequest(f"{name}: Invalid date-time: {value}") from None


class AsanaLog(_SortedLog):
    """Asana's audit_log_events over a sorted list of (created_at ms, gid)."""

    ACTOR_TYPES = ("user", "asana", "asana_support", "anonymous", "external_administrator")

    def add(self, events: Iterable[dict[str, Any]], visible_at: float | None = None, lag: float = 0.0) -> None:
        new: list[_Stored] = []
        with self._lock:
            for event in events:
                ms = parse_iso_ms(event["created_at"], "created_at")
                actor = event.get("actor") or {}
                item = _Stored(
                    key=(ms, str(event["gid"])),
                    raw=served_text("asana", event),
                    visible_at=visible_at if visible_at is not None else ms / 1000 + lag,
                    attrs=(
                        event.get("event_type"),
                        actor.get("actor_type"),
                        actor.get("gid"),
                        (event.get("resource") or {}).get("gid"),
                    ),
                )
                new.append(item)
            self._merge(new)

    def page(self, params: dict[str, str], now: float, offset_ttl: float | None) -> bytes:
        limit = _int_param(params, "limit", 1000)
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
                or offset.get("q") != _filter_hash(filters)
                or (offset_ttl is not None and now - offset.get("t", 0) > offset_ttl)
            ):
                raise BadRequest("offset: Your pagination token has expired or is invalid")
            after = tuple(offset["a"])

        def matches(item: _Stored) -> bool:
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

        with self._lock:
            index = bisect.bisect_right(self._keys, after) if after[1] else bisect.bisect_left(self._keys, after)
            served: list[_Stored] = []
            while index < len(self._items) and len(served) < limit:
                item = self._items[index]
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
            token = encode_token({"a": position, "q": _filter_hash(filters), "t": now})
            next_page = json.dumps({"offset": token, "path": f"?offset={token}", "uri": f"?offset={token}"}).encode()
        return b'{"data":[' + b",".join(i.raw for i in served) + b'],"next_page":' + next_page + b"}"
