"""Window manifests: what a closed window archived, and a hash chain over them per provider.

When a window closes, the collector writes (after its data objects, before the checkpoint that
closes it) one manifest:

    {prefix}_manifests/{provider}/dt=YYYY-MM-DD/{window}.json     (dt: the window's first UTC date)

It names the provider, the job, the window and its range (half-open, in the provider's unit, exactly
what was asked of the API), every object of the window (key, bytes, event count, SHA-256, the digest
of its event ids), the count and digest of all the window's event ids, the first and last event
time, the SHA-256 of the previous manifest of the same provider (``prev``) and its place in that
chain (``seq``), when it was written and by which version.

The chain's head (SHA-256, seq and key of the last manifest) is kept in the checkpoint document,
saved in the same conditional write that closes the window. A crash between the manifest and that
write leaves the head where it was, so the rerun writes the same manifest name with the same
``prev`` and ``seq``: a replacement, never a fork.

The event-id digest is the sum, modulo 2**256, of the SHA-256 of each id: independent of order and
additive, so a window's digest is the sum of its objects' (which the checkpoint carries across
runs) and ``verify`` recomputes it from the objects alone. It proves the set of ids; the objects'
own SHA-256 prove their bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import operator
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from audit_collector import __version__
from audit_collector.dates import iso
from audit_collector.json_text import Line

FORMAT = 1
_MOD = 1 << 256


def id_hash(event_id: Any) -> int:
    """One id's share of a digest: the SHA-256 of the id's text (a string as it is, UTF-8; any
    other id as its JSON text behind a NUL-framed tag, so the id ``123`` and the id ``"123"``
    count as two ids, as they are)."""
    text = event_id if isinstance(event_id, str) else "\x00json\x00" + json.dumps(event_id, sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def ids_digest(ids: Iterable[Any]) -> int:
    ids = list(ids)
    if all(type(i) is str for i in ids):  # the usual case, once per event: id_hash inlined
        sha256, number = hashlib.sha256, int.from_bytes
        return sum([number(sha256(i.encode()).digest(), "big") for i in ids]) % _MOD
    return sum(map(id_hash, ids)) % _MOD


def add_digests(*digests: str) -> str:
    return format(sum(int(d, 16) for d in digests) % _MOD, "064x")


def digest_hex(value: int) -> str:
    return format(value, "064x")


class Identify:
    """Reads the ids of a batch of events, and their times: from the events' JSON text (only those
    two fields: msgspec skips the rest), or from the keys a source's page reader already parsed
    (``of_keys``: no second parse). Times: one per event with ``every_time`` (None where
    unreadable); otherwise only the earliest and latest, found without converting each one where
    the raw values sort as their instants do (numbers; strings of one length, as ISO 8601 of one
    format)."""

    def __init__(
        self,
        id_field: str,
        time_field: str,
        event_seconds: Callable[[dict[str, Any]], float],
        *,
        every_time: bool = False,
    ) -> None:
        key = msgspec.defstruct("EventKey", [(id_field, Any, None), (time_field, Any, None)])
        self._decoder = msgspec.json.Decoder(list[key])  # type: ignore[valid-type]
        self._id, self._time = operator.attrgetter(id_field), operator.attrgetter(time_field)
        self._time_field, self._event_seconds, self._every_time = time_field, event_seconds, every_time

    def __call__(self, lines: Sequence[Line]) -> tuple[list[Any], list[float | None]]:
        return self.of_keys(self._decoder.decode(b"[" + b",".join(lines) + b"]"))

    def of_keys(self, keys: Sequence[Any]) -> tuple[list[Any], list[float | None]]:
        """From objects with the id and time fields as attributes (a page reader's keys)."""
        ids = list(map(self._id, keys))
        raw = list(map(self._time, keys))
        if not self._every_time and raw and _sortable(raw):
            raw = [min(raw), max(raw)]
        return ids, [self._seconds(r) for r in raw]

    def _seconds(self, raw: Any) -> float | None:
        # A source archives only events it could place; one without a readable time adds none.
        with contextlib.suppress(TypeError, ValueError, KeyError):
            return self._event_seconds({self._time_field: raw})
        return None


def identifier(
    id_field: str,
    time_field: str,
    event_seconds: Callable[[dict[str, Any]], float],
    *,
    every_time: bool = False,
) -> Identify:
    return Identify(id_field, time_field, event_seconds, every_time=every_time)


def _sortable(values: list[Any]) -> bool:
    kinds = set(map(type, values))
    if kinds <= {int, float}:
        return True
    return kinds == {str} and len(set(map(len, values))) == 1


def part_record(key: str, body: bytes, events: int, ids: Iterable[Any], first: float | None, last: float | None):
    """One object of a window, as the manifest lists it."""
    return {
        "key": key,
        "bytes": len(body),
        "events": events,
        "sha256": hashlib.sha256(body).hexdigest(),
        "ids_digest": digest_hex(ids_digest(ids)),
        "first": first,
        "last": last,
    }


def build(
    *,
    provider: str,
    job: str,
    window: str,
    start: int,
    end: int,
    unit: int,
    parts: list[dict[str, Any]],
    chain: dict[str, Any],
    written_at: float,
    revision: int = 0,
    window_fields: dict[str, Any] | None = None,
    sweep: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A manifest document (see the module's docstring). ``sweep``: a late-event pass's, which
    pass it was (its manifest lists only the late events it found)."""
    firsts = [p["first"] for p in parts if p.get("first") is not None]
    lasts = [p["last"] for p in parts if p.get("last") is not None]
    extra = {"sweep": sweep} if sweep is not None else {}
    return {
        **extra,
        "format": FORMAT,
        "provider": provider,
        "job": job,
        "window_id": window,
        "window": window_fields,  # the provider's window as first planned: what a sweep asks again
        "revision": revision,
        "range_start": start,
        "range_end": end,
        "units_per_second": unit,
        "range_start_iso": _iso(start / unit),
        "range_end_iso": _iso(end / unit),
        "objects": [{k: p[k] for k in ("key", "bytes", "events", "sha256", "ids_digest")} for p in parts],
        "events": sum(p["events"] for p in parts),
        "ids_digest": add_digests(*(p["ids_digest"] for p in parts)) if parts else digest_hex(0),
        "first_event": _iso(min(firsts)) if firsts else None,
        "last_event": _iso(max(lasts)) if lasts else None,
        "seq": chain.get("count", 0) + 1,
        "prev": chain.get("head"),
        "written_at": _iso(written_at),
        "collector_version": __version__,
    }


def revise(
    previous: dict[str, Any],
    parts: list[dict[str, Any]],
    *,
    chain: dict[str, Any],
    written_at: float,
    sweep: dict[str, Any],
) -> dict[str, Any]:
    """The next revision of a window's manifest: its objects and ``parts`` (a sweep's), a new link."""
    firsts = [p["first"] for p in parts if p.get("first") is not None]
    lasts = [p["last"] for p in parts if p.get("last") is not None]
    if previous["first_event"]:
        firsts.append(_seconds(previous["first_event"]))
    if previous["last_event"]:
        lasts.append(_seconds(previous["last_event"]))
    first, last = min(firsts, default=None), max(lasts, default=None)
    new = [{k: p[k] for k in ("key", "bytes", "events", "sha256", "ids_digest")} for p in parts]
    return {
        **previous,
        "revision": previous["revision"] + 1,
        "objects": previous["objects"] + new,
        "events": previous["events"] + sum(p["events"] for p in parts),
        "ids_digest": add_digests(previous["ids_digest"], *(p["ids_digest"] for p in parts)),
        "first_event": _iso(first) if first is not None else None,
        "last_event": _iso(last) if last is not None else None,
        "seq": chain.get("count", 0) + 1,
        "prev": chain.get("head"),
        "written_at": _iso(written_at),
        "collector_version": __version__,
        "sweep": sweep,
    }


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def sha256_of(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def encode(manifest: dict[str, Any]) -> bytes:
    """Canonical bytes: sorted keys, no spaces, one line (what its SHA-256 is taken over)."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def _iso(seconds: float) -> str:
    return iso(seconds, "milliseconds")
