"""6. The JSON and compression libraries, measured on the emulator's pages (how they were chosen).

Reading: the stdlib, orjson and msgspec parse a whole page into Python values; the collector's page
reader (msgspec) keeps each event's served text and reads two fields of it. Writing: JSON Lines from
values (stdlib, orjson, msgspec) against joining the served text. Compressing: zlib at levels 6 and
1 against ISA-L at level 2, with the bytes each leaves per event. CPU microseconds per event, the
best of several rounds.
"""

from __future__ import annotations

import gc
import json
import time
import zlib

import msgspec
from common import figure
from isal import isal_zlib

from audit_collector.emulator import make_org, served_text
from audit_collector.emulator.asana import asana_events
from audit_collector.emulator.slack import slack_events
from audit_collector.providers.asana.models import _EVENTS_PAGE
from audit_collector.providers.slack.models import _LOGS_PAGE
from audit_collector.storage.archive import ObjectBuffer

try:
    import orjson
except ImportError:  # the bench extra installs it, for this comparison only
    orjson = None


def per_event(fn, events: int, rounds: int = 7) -> float:
    """Best CPU microseconds per event of ``fn`` (the GC paused, as during a run)."""
    fn()
    best = float("inf")
    gc.disable()
    try:
        for _ in range(rounds):
            started = time.process_time()
            fn()
            best = min(best, time.process_time() - started)
    finally:
        gc.enable()
    return best / events * 1e6


def page(provider: str, org) -> tuple[bytes, int]:
    if provider == "slack":
        events = slack_events(org, 1_790_000_000, 1_790_086_400, 9_999, seed=3)
        return b'{"ok":true,"entries":[' + b",".join(served_text("slack", e) for e in events) + b"]}", len(events)
    events = asana_events(org, 1_790_000_000_000, 1_790_086_400_000, 100, seed=3)
    body = b'{"data":[' + b",".join(served_text("asana", e) for e in events) + b'],"next_page":null}'
    return body, len(events)


def measure(provider: str, reader, field: str, org) -> None:
    body, n = page(provider, org)
    values = json.loads(body)[field]
    lines = reader.read(body).events.lines
    decoder, encoder = msgspec.json.Decoder(), msgspec.json.Encoder()
    read = {
        "stdlib json.loads": lambda: json.loads(body),
        "msgspec, whole page to values": lambda: decoder.decode(body),
        "page reader (msgspec, served text + 2 fields)": lambda: reader.read(body),
    }
    write = {
        "stdlib json.dumps per line": lambda: b"".join(
            json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for v in values
        ),
        "msgspec encode_lines": lambda: encoder.encode_lines(values),
        "served text joined (this collector)": lambda: b"\n".join(lines) + b"\n",
    }
    if orjson is not None:
        read["orjson.loads (big integers become floats)"] = lambda: orjson.loads(body)
        write["orjson.dumps per line"] = lambda: b"".join(orjson.dumps(v) + b"\n" for v in values)
    for name, fn in read.items():
        figure(f"{provider} read, {name}", f"{per_event(fn, n):.2f}", "us/event")
    for name, fn in write.items():
        figure(f"{provider} write, {name}", f"{per_event(fn, n):.2f}", "us/event")
    data = b"\n".join(lines) + b"\n"
    for name, module, level in (("zlib 6", zlib, 6), ("zlib 1", zlib, 1), ("ISA-L 2 (chosen)", isal_zlib, 2)):

        def gzip_once(module=module, level=level) -> bytes:
            compressor = module.compressobj(level, module.DEFLATED, 31)
            return compressor.compress(data) + compressor.flush()

        size = len(gzip_once()) / n
        figure(f"{provider} gzip, {name}", f"{per_event(gzip_once, n):.2f}", f"us/event, {size:.0f} bytes/event")
    buffer = ObjectBuffer()
    cost = per_event(lambda: buffer.extend(lines), n)
    figure(f"{provider} archive buffer (join + ISA-L)", f"{cost:.2f}", "us/event")


def main() -> None:
    org = make_org(4, 3000)
    measure("slack", _LOGS_PAGE, "entries", org)
    measure("asana", _EVENTS_PAGE, "data", org)


if __name__ == "__main__":
    main()
