"""Malformed API responses through the collector. Each one either fails the run with an error that
names what is wrong, or is archived as the API's drift; none writes a partial object, moves a
checkpoint past it, or shows the token. (Malformed payloads and CLI arguments: test_handler.py,
test_backfill.py, cli/test_cli.py.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from audit_collector.collector import Settings
from audit_collector.emulator import Emulator
from audit_collector.errors import ApiError
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.state import FileStore

from .support import FakeClock, archived, live_watermark, run_once, written

NOW = int(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp())
T = NOW - 7200
SETTINGS = Settings(initial_lookback_days=1, max_window_restarts=0)


def slack_entry(i: int = 0, **changes) -> dict:
    entry = {
        "id": f"e{i}",
        "date_create": T + i,
        "action": "user_login",
        "actor": {"type": "user", "user": {"id": "W1"}},
        "entity": {"type": "user", "user": {"id": "W1"}},
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not ...}


def asana_event(i: int = 0, **changes) -> dict:
    event = {
        "gid": f"{100 + i}",
        "created_at": datetime.fromtimestamp(T + i, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "event_type": "task_deleted",
        "actor": {"actor_type": "user", "gid": "1"},
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not ...}


def slack_body(entries) -> bytes:
    return json.dumps({"ok": True, "entries": entries, "response_metadata": {"next_cursor": ""}}).encode()


def asana_body(data) -> bytes:
    return json.dumps({"data": data, "next_page": None}).encode()


BROKEN = [
    # (provider, body served as the first page, what the error must say)
    ("slack", b"<html><body>502 Bad Gateway</body></html>", "not a JSON object"),
    ("slack", slack_body([slack_entry()])[:-9], "not a JSON object"),  # truncated JSON, honest length
    ("slack", b"\xff\xfe\x00{", "not a JSON object"),  # not UTF-8
    ("slack", b'{"ok": true, "entries": NaN}', "not a JSON object"),
    ("slack", b'{"ok": true}', "entries"),
    ("slack", b'{"ok": true, "entries": {"id": "x"}}', "entries"),
    ("slack", b'{"ok": true, "entries": ["x"]}', "entries"),
    ("slack", b"[]", "not a JSON object"),
    ("slack", slack_body([slack_entry(date_create=...)]), "no integer date_create"),
    ("slack", slack_body([slack_entry(date_create="1700000000")]), "no integer date_create"),
    ("slack", slack_body([slack_entry(date_create=True)]), "no integer date_create"),
    ("slack", slack_body([slack_entry(date_create=1)]), "outside the window"),
    ("asana", b"<html>maintenance</html>", "not a JSON object"),
    ("asana", asana_body([asana_event()])[:-5], "not a JSON object"),
    ("asana", b'{"next_page": null}', "'data' list"),
    ("asana", b'{"data": "nope"}', "'data' list"),
    ("asana", asana_body([asana_event(gid=...)]), "without a string gid"),
    ("asana", asana_body([asana_event(gid=12345)]), "without a string gid"),
    ("asana", asana_body([asana_event(created_at="yesterday")]), "unreadable created_at"),
    ("asana", asana_body([asana_event(created_at="2026-11-20T10:00:00")]), "without a time zone"),
    ("asana", asana_body([asana_event(created_at="2030-01-01T00:00:00.000Z")]), "outside the window"),
]


@pytest.mark.parametrize("provider,body,message", BROKEN)
def test_a_broken_response_fails_clearly_and_changes_nothing(provider, body, message, tmp_path):
    clock = FakeClock(start=float(NOW))
    store, archive = FileStore(tmp_path / "s.json"), LocalArchive(tmp_path / "a")
    with Emulator(clock=clock.time) as emu:
        log = emu.api(provider).log
        log.page = lambda params, now, ttl: body
        with pytest.raises(ApiError, match=message) as info:
            run_once(provider, emu, store=store, archive=archive, clock=clock, settings=SETTINGS)
    assert emu.slack.token not in str(info.value) and emu.asana.token not in str(info.value)
    assert written(archive) == []  # no partial object
    assert live_watermark(store, provider) is None  # the checkpoint did not move
    assert list(tmp_path.rglob("*.tmp")) == []


DRIFT = [
    ("slack", slack_entry(id=...)),  # an entry without an id is still an audit event
    ("slack", slack_entry(context={"session_id": None, "ip_address": 7})),
    ("slack", slack_entry(details={"succeeded_users": '["W1"]'}, brand_new={"field": [1, {"x": None}]})),
    ("slack", slack_entry(entity={"type": "canvas", "canvas": {"id": "F1"}})),
    ("asana", asana_event(details={"group": {"gid": "1"}}, resource=None, new_top_level=True)),
    ("asana", asana_event(actor="system")),
]


@pytest.mark.parametrize("provider,event", DRIFT)
def test_drift_is_archived_verbatim(provider, event, tmp_path):
    clock = FakeClock(start=float(NOW))
    store, archive = FileStore(tmp_path / "s.json"), LocalArchive(tmp_path / "a")
    with Emulator(clock=clock.time) as emu:
        if provider == "slack":  # answered for the window that holds it, empty for the others
            emu.slack.log.page = lambda params, now, ttl: slack_body(
                [event] if int(params["oldest"]) <= T <= int(params["latest"]) else []
            )
        else:  # a stream: once served, the next request finds nothing new
            served = iter([asana_body([event])])
            emu.asana.log.page = lambda params, now, ttl: next(served, asana_body([]))
        assert run_once(provider, emu, store=store, archive=archive, clock=clock, settings=SETTINGS).complete
    assert [e for _, e in archived(archive, provider)] == [event]


def test_a_huge_page_beyond_the_limit_is_archived_whole(tmp_path):
    """An API that never splits a second: a burst makes a page far larger than the limit asked for."""
    clock = FakeClock(start=float(NOW))
    store, archive = FileStore(tmp_path / "s.json"), LocalArchive(tmp_path / "a")
    burst = [slack_entry(i, date_create=T) for i in range(25_000)]
    with Emulator(clock=clock.time, slack={"split_seconds": False}) as emu:
        emu.slack.add(burst)
        result = run_once(
            "slack",
            emu,
            store=store,
            archive=archive,
            clock=clock,
            settings=Settings(initial_lookback_days=1, page_limit=9999),
        )
    assert result.complete and result.events_written == 25_000
    assert len(list(archive.keys("slack/"))) == 1 and len(archived(archive, "slack")) == 25_000
