"""The late-event sweep: what it costs in API calls, what it catches, and how short the settle lag can be.

A simulated day and a half of live collection, every 5 minutes, against the emulator (a fake
clock: no waiting), with events that reach the API late following a long-tailed lateness: most
within seconds, some within minutes, a few up to 6 hours. For several settle lags, with the sweep
(re-reads after 30 minutes and a day) and without it, it counts the collection's calls and the
sweep's, the late events the sweep archived (by how late they were), and the events lost.
Exactly-once is checked for every configuration (no event twice).
"""

from __future__ import annotations

import random
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from common import figure

from audit_collector import providers
from audit_collector.archive import LocalArchive, decode_object
from audit_collector.collector import Budget, Settings
from audit_collector.emulator import Emulator, asana_events, make_org, slack_events
from audit_collector.http_retry import Clock
from audit_collector.state import FileStore
from audit_collector.wiring import collect_provider

NOW = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp())
HOURS = 36  # collected; events happen over the first 12 hours so the day-later pass covers them
EVENTS = 3000
SCHEDULE = 300


class FakeClock(Clock):
    def __init__(self, start: float) -> None:
        self.now, self.mono = start, 1000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


def lateness(rng: random.Random) -> float:
    """Seconds from an event's time to when the API serves it: a long tail."""
    roll = rng.random()
    if roll < 0.90:
        return rng.uniform(0, 20)
    if roll < 0.97:
        return rng.uniform(20, 300)
    if roll < 0.995:
        return rng.uniform(300, 1800)
    return rng.uniform(1800, 6 * 3600)


def simulate(provider: str, settle: int, sweep: bool, org) -> dict:
    rng = random.Random(7)
    clock = FakeClock(NOW)
    with Emulator(clock=clock.time) as emu, tempfile.TemporaryDirectory() as folder:
        api = emu.api(provider)
        if provider == "slack":
            events = slack_events(org, NOW - 3600, NOW + 12 * 3600, EVENTS, seed=3)
            for event in events:
                emu.slack.add([event], lag=lateness(rng))
        else:
            events = asana_events(org, (NOW - 3600) * 1000, (NOW + 12 * 3600) * 1000, EVENTS, seed=3)
            for event in events:
                emu.asana.add([event], lag=lateness(rng))
        settings = Settings(
            settle_seconds=settle,
            initial_lookback_days=1 / 24,
            paced=False,
            sweep_after_seconds=(1800, 86400) if sweep else (),
        )
        store, archive = FileStore(Path(folder) / "state.json"), LocalArchive(Path(folder) / "archive")
        calls = sweep_calls = 0
        late: Counter = Counter()
        for _ in range(HOURS * 3600 // SCHEDULE):
            result = collect_provider(
                providers.get(provider),
                token=api.token,
                base_url=api.base_url,
                options=api.options,
                store=store,
                archive=archive,
                prefix="",
                settings=settings,
                clock=clock,
                budget=Budget.for_run(clock, 900, settings),
            )
            calls += result.pages
            if result.sweep:
                sweep_calls += result.sweep["calls"]
                late.update(result.sweep["lateness"])
            clock.now += SCHEDULE
            clock.mono += SCHEDULE
        ids = Counter()
        for key in archive.keys(f"{provider}/"):
            ids.update(providers.get(provider).event_id(e) for e in decode_object(archive.get(key)))
        want = {providers.get(provider).event_id(e) for e in events}
        assert max(ids.values()) == 1, "an event archived twice"
        return {
            "collection_calls": calls,  # result.pages: the collection's pages only
            "sweep_calls": sweep_calls,
            "late": dict(late),
            "lost": len(want - set(ids)),
        }


def main() -> None:
    org = make_org(seed=7, users=300)
    for provider in ("slack", "asana"):
        for settle in (30, 120, 600):
            for sweep in (False, True):
                out = simulate(provider, settle, sweep, org)
                label = f"{provider} settle {settle}s, {'sweep' if sweep else 'no sweep'}"
                figure(f"{label}: events lost (of {EVENTS})", out["lost"])
                if sweep:
                    ratio = out["sweep_calls"] / max(out["collection_calls"], 1)
                    figure(f"{label}: sweep calls / collection calls", f"{ratio:.2f}", "x", "<= 2x", ratio <= 2)
                    figure(f"{label}: late events archived by the sweep, by lateness", str(out["late"]))


if __name__ == "__main__":
    main()
