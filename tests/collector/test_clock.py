"""A host clock that is wrong: windows are never closed over a present the API has not reached.

The emulator answers with its own clock in ``Date``; the collector's clock is off by a seeded skew
(minutes ahead or behind). A run whose host is further ahead than the settle lag refuses before it
archives or checkpoints anything; a smaller skew is planned around. After the host's time is
corrected, every event is archived exactly once, including those that reached the API while the
clock was wrong.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from audit_collector import providers
from audit_collector.collector import Settings
from audit_collector.emulator import Emulator
from audit_collector.errors import ClockSkew
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.state import FileStore

from ..support import BUILTIN_PROVIDERS, FakeClock, assert_exactly_once, run_once, written

NOW = int(datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp())
SETTLE = 120


@pytest.mark.parametrize("provider", BUILTIN_PROVIDERS)
@pytest.mark.parametrize("seed", range(8))
def test_a_skewed_host_clock_never_skips_what_reaches_the_api_later(provider, seed, org, tmp_path):
    rng = random.Random(f"{provider}{seed}")
    skew = rng.choice([rng.uniform(SETTLE + 5, 900), rng.uniform(-600, SETTLE - 5)])  # host minus API, seconds
    api_time = [float(NOW)]
    host = FakeClock(start=NOW + skew)
    store, archive = FileStore(tmp_path / "s.json"), LocalArchive(tmp_path / "a")
    settings = Settings(settle_seconds=SETTLE, initial_lookback_days=1, page_limit=rng.choice([7, 20, 50]))
    with Emulator(clock=lambda: api_time[0]) as emu:
        api = emu.api(provider)
        # Events up to 20 minutes after the first run: each reaches the API a few seconds after it happens.
        events = api.generate(org, NOW - 6 * 3600, NOW + 1200, 600, seed=seed)
        api.add(events, lag=3)
        if skew > SETTLE:
            with pytest.raises(ClockSkew, match="ahead of the API"):
                run_once(provider, emu, store=store, archive=archive, clock=host, settings=settings)
            assert written(archive) == []  # nothing archived
            assert "jobs" not in (store.read(provider).get("checkpoint") or {})  # nothing checkpointed
        else:
            assert run_once(provider, emu, store=store, archive=archive, clock=host, settings=settings).complete
        # The host's time is corrected; the schedule goes on.
        for step in range(1, 6):
            api_time[0] = NOW + 300 * step
            host = FakeClock(start=api_time[0])
            assert run_once(provider, emu, store=store, archive=archive, clock=host, settings=settings).complete
        settled = api_time[0] - SETTLE
        due = [e for e in events if providers.get(provider).settled_by(e, settled)]
        assert_exactly_once(archive, provider, due)


def test_a_window_closing_at_the_horizon_holds_the_horizon_itself_only_where_the_api_includes_it():
    """Slack's ``latest`` is inclusive (the horizon second is archived), Asana's ``end_at`` is not."""
    slack, asana = providers.get("slack"), providers.get("asana")
    assert slack.horizon_inclusive and not asana.horizon_inclusive
    assert slack.settled_by({"date_create": NOW}, NOW) and not slack.settled_by({"date_create": NOW + 1}, NOW)
    assert asana.settled_by({"created_at": "2026-11-20T11:59:59.999Z"}, NOW)
    assert not asana.settled_by({"created_at": "2026-11-20T12:00:00.000Z"}, NOW)
