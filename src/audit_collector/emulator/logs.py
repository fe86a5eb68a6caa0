"""The paging machinery emulated APIs share: a sorted in-memory log, opaque position tokens that
remember their query and age, and the error an API maps to its own body.

Events are kept pre-encoded: serving a 9,999-event page is a join of bytes, not a dump of dicts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any


class BadRequest(Exception):
    """A request the API refuses; its ``EmulatedApi.error`` turns ``code`` (an error code or message)
    into the API's own body."""

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


def filter_hash(filters: dict[str, Any]) -> str:
    """A short digest of a query's filters: a position token is only good for the query that made it."""
    return hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:16]


class SortedLog:
    """Items kept sorted by key; added in batches so a million events load in seconds. An API's log
    subclasses it with its ``add`` (how an event becomes a ``Stored``) and its ``page``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[Stored] = []
        self.keys: list[tuple] = []

    def merge(self, new: list[Stored]) -> None:
        """Add a batch (the caller holds ``lock``)."""
        self.items = sorted(self.items + new, key=lambda item: item.key)
        self.keys = [item.key for item in self.items]

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Stored:
    """One event in a log."""

    key: tuple  # sort key
    raw: bytes  # the event as served
    visible_at: float  # when it reaches the API (late arrivals)
    attrs: tuple  # filterable values


def int_param(params: dict[str, str], name: str, default: int) -> int:
    """An integer query parameter; a malformed one is the API's ``invalid_arguments``."""
    if name not in params:
        return default
    try:
        return int(params[name])
    except ValueError:
        raise BadRequest("invalid_arguments") from None
