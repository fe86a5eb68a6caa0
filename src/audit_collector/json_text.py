"""JSON in and out: exact parsing, one-line encoding, and a page's events kept as the text served.

The archive stores each event's own JSON text, byte for byte as the API served it. A page is read
with msgspec, which validates all of it, finds where each event starts and ends, and reads only the
few fields the collector places an event by: no Python object is built for the rest of an event.
That is most of a run's CPU and memory saved (benchmarks/RESULTS.md). Whatever msgspec refuses goes
to the standard library, which decides.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

Line = bytes | msgspec.Raw  # one event's JSON text, without a line break
K = TypeVar("K", bound=msgspec.Struct)

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """The JSON value of a UTF-8 body, exactly (integers of any size stay integers).

    msgspec reads it 1.5 to 2 times as fast as the stdlib (bench_libraries); orjson would be as
    fast but turns an integer beyond 64 bits into a float, and an archive must not alter data. What
    msgspec refuses goes to the stdlib, which decides: it reads a lone surrogate escape and a number
    beyond a double, refuses NaN and Infinity (not JSON), and its error names what is wrong. Raises
    ``ValueError`` if not JSON.
    """
    try:
        return _decoder.decode(body)
    except (msgspec.DecodeError, ValueError):
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)


def encode_line(value: Any) -> bytes:
    """A value as compact JSON on one line (no line break inside, none at the end)."""
    try:
        return _encoder.encode(value)
    except UnicodeEncodeError:
        # A lone surrogate (JSON allows the escape "\\ud800"; UTF-8 cannot hold it): escape it again.
        return json.dumps(value, separators=(",", ":")).encode()


def one_line(text: Line) -> Line:
    """JSON text that holds a line break (a pretty-printed API) as the same value on one line."""
    raw = bytes(text)
    return encode_line(parse_json(raw)) if b"\n" in raw or b"\r" in raw else text


@dataclass(frozen=True)
class Events(Generic[K]):
    """A page's events: each one's JSON text, as served, and the fields ``K`` read from each."""

    lines: Sequence[Line]
    keys: Sequence[K]

    def __len__(self) -> int:
        return len(self.lines)


@dataclass(frozen=True)
class Page(Generic[K]):
    """A page's top-level ``fields`` as values and its event list as ``events`` (None when the list
    is missing or holds something other than objects). ``body`` is the whole page as values when
    the stdlib had to read it, else None."""

    fields: dict[str, Any]
    events: Events[K] | None
    body: dict[str, Any] | None = None


class PageReader(Generic[K]):
    """Reads one kind of page: the event list under ``events_field``, ``fields`` beside it."""

    def __init__(self, events_field: str, key: type[K], fields: Sequence[str]) -> None:
        self.events_field = events_field
        self.key = key
        self.fields = tuple(fields)
        envelope = msgspec.defstruct(
            f"{key.__name__}Page",
            [(name, Any, None) for name in self.fields] + [(events_field, list[msgspec.Raw] | None, None)],
        )
        keys = msgspec.defstruct(f"{key.__name__}Keys", [(events_field, list[key] | None, None)])
        self._envelope = msgspec.json.Decoder(envelope)
        self._keys = msgspec.json.Decoder(keys)

    def read(self, body: bytes) -> Page[K]:
        """The page. Raises ``ValueError`` if the body is not a JSON object."""
        try:
            if not body.isascii():
                body.decode("utf-8")  # msgspec skips the strings it does not read without checking them
            envelope = self._envelope.decode(body)
            lines = getattr(envelope, self.events_field)
            keys = getattr(self._keys.decode(body), self.events_field)
        except (msgspec.DecodeError, ValueError):  # not JSON, a non-object event, a lone surrogate…
            return self._read_values(body)
        fields = {name: getattr(envelope, name) for name in self.fields}
        if lines is None:
            return Page(fields, None)
        if b"\n" in body or b"\r" in body:  # JSON Lines needs each event on one line
            lines = [one_line(line) for line in lines]
        return Page(fields, Events(lines, keys))

    def _read_values(self, body: bytes) -> Page[K]:
        value = parse_json(body)
        if not isinstance(value, dict):
            raise ValueError(f"a JSON {type(value).__name__}, not an object")
        fields = {name: value.get(name) for name in self.fields}
        items = value.get(self.events_field)
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            return Page(fields, None, value)
        keys = [msgspec.convert(item, self.key) for item in items]
        return Page(fields, Events([encode_line(item) for item in items], keys), value)
