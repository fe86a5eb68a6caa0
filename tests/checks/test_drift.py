"""The drift watch: once a day per provider, a snapshot under _meta/, and a dated drift object, a
log line and the SchemaDrift metric when Slack's /schemas or /actions, or Asana's event types, change."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from audit_collector import providers
from audit_collector.emulator import Emulator
from audit_collector.emulator.asana import asana_events
from audit_collector.errors import ArchiveError
from audit_collector.storage.archive import ObjectBuffer
from audit_collector.storage.keys import object_key
from audit_collector.storage.local import LocalArchive
from audit_collector.wiring import watch_drift

from ..support import FakeClock

DAY1 = datetime(2026, 11, 20, 6, tzinfo=UTC).timestamp()
SLACK = providers.get("slack")
ASANA = providers.get("asana")


def slack_watch(emu, archive, clock):
    return watch_drift(
        SLACK, archive=archive, prefix="audit/", token="xoxp-x", clock=clock, base_url=emu.slack.base_url
    )


def metric(capsys) -> list[int]:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"SchemaDrift"' in line]
    return [line["SchemaDrift"] for line in lines]


def test_slack_drift_is_found_once_a_day_and_reported_under_meta(tmp_path, monkeypatch, capsys, caplog):
    archive, clock = LocalArchive(tmp_path), FakeClock(DAY1)
    with Emulator(clock=clock.time) as emu:
        first = slack_watch(emu, archive, clock)
        assert first.status == "baseline" and metric(capsys) == [0]
        snapshot = json.loads((tmp_path / "audit/_meta/slack/vocabulary/2026-11-20.json").read_text())
        assert "user_login" in snapshot["kinds"]["actions"] and "user.email" in snapshot["kinds"]["schemas"]
        calls = len(emu.request_log)
        assert slack_watch(emu, archive, clock).status == "done today" and len(emu.request_log) == calls

        clock.advance(86400)
        assert slack_watch(emu, archive, clock).status == "unchanged" and metric(capsys) == [0]

        real = emu.slack.document

        def drifted(name: str) -> bytes:
            body = json.loads(real(name))
            if name == "actions":
                body["actions"]["user"] = [a for a in body["actions"]["user"] if a != "user_logout"]
                body["actions"]["user"].append("user_passkey_added")
            else:
                body["schemas"][0]["workspace"]["region"] = "string"
            return json.dumps(body).encode()

        monkeypatch.setattr(emu.slack, "document", drifted)
        clock.advance(86400)
        with caplog.at_level(logging.WARNING, logger="audit_collector.checks.drift"):
            third = slack_watch(emu, archive, clock)
    assert third.status == "drift" and third.previous == "audit/_meta/slack/vocabulary/2026-11-21.json"
    assert third.added == {"actions": ["user_passkey_added"], "schemas": ["workspace.region"]}
    assert third.removed == {"actions": ["user_logout"]}
    assert metric(capsys) == [3]
    report = json.loads((tmp_path / "audit/_meta/slack/drift/2026-11-22.json").read_text())
    assert report["added"] == third.added and report["removed"] == third.removed
    assert "user_passkey_added" in caplog.text and "user_logout" in caplog.text
    assert not (tmp_path / "audit/_meta/slack/drift/2026-11-21.json").exists()  # nothing changed that day


def archive_asana(archive, org_events, day_seconds):
    buffer = ObjectBuffer()
    buffer.extend([json.dumps(e).encode() for e in org_events])
    dt = datetime.fromtimestamp(day_seconds, UTC).strftime("%Y-%m-%d")
    archive.put(object_key("", "asana", dt, f"w{int(day_seconds)}-p00000"), buffer.finish())


def test_asana_event_types_seen_in_yesterday_s_data_accumulate(tmp_path, org):
    archive, clock = LocalArchive(tmp_path), FakeClock(DAY1)
    day0 = DAY1 - 86400
    events = asana_events(org, int(day0 * 1000), int(day0 * 1000) + 3_600_000, 30, seed=3)
    archive_asana(archive, events, day0)

    def run():
        return watch_drift(ASANA, archive=archive, prefix="", token="t", clock=clock)

    assert run().status == "baseline"
    seen = {e["event_type"] for e in events}
    snapshot = json.loads((tmp_path / "_meta/asana/vocabulary/2026-11-20.json").read_text())
    assert snapshot["kinds"]["event_types"] == sorted(seen) and snapshot["complete"] is False
    clock.advance(86400)  # yesterday had no events: nothing is "removed"
    assert run().status == "unchanged"
    new = dict(events[0], gid="9" * 16, event_type="workspace_ai_setting_changed")
    archive_asana(archive, [new], DAY1 + 86400)
    clock.advance(86400)
    report = run()
    assert report.status == "drift" and report.added == {"event_types": ["workspace_ai_setting_changed"]}
    assert report.removed == {}


@pytest.mark.parametrize(
    "key",
    ["_meta/slack/notes.json", "_meta/slack/vocabulary/latest.json", "_meta/slack/vocabulary/2026-11-20.json.gz"],
)
def test_the_archive_writes_only_the_watch_s_dated_keys_under_meta(tmp_path, key):
    archive = LocalArchive(tmp_path)
    archive.put("_meta/slack/vocabulary/2026-11-20.json", b"{}")
    archive.put("audit/_meta/asana/drift/2026-11-20.json", b"{}")
    with pytest.raises(ArchiveError, match="malformed key"):
        archive.put(key, b"{}")
