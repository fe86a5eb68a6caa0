"""The late-event sweep: what it costs in API calls, what it catches, and how short the settle lag can be.

A simulated day and a half of live collection, every 5 minutes, against the emulator (a fake
clock: no waiting), with events that reach the API late following a long-tailed lateness: most
within seconds, some within minutes, a few up to 6 hours. For several settle lags, with the sweep
(re-reads after 30 minutes and a day) and without it, it counts the collection's calls and the
sweep's, the late events the sweep archived (by how late they were), and the events lost.
Exactly-once is checked for every configuration (no event twice).

Freshness: for a 30 s settle lag, with the 5-minute schedule and with a 1-minute one, how long from
an event's own time to the run that archived it (p50, p95, p99), the sweep on.
"""

from __future__ import annotations

import random
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from common import figure

from audit_collector import providers
from audit_collector.collector import Budget, Settings
from audit_collector.emulator import Emulator, make_org
from audit_collector.emulator.asana import asana_events
from audit_collector.emulator.slack import slack_events
from audit_collector.http_retry import Clock
from audit_collector.storage.archive import decode_object
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.state import FileStore
from audit_collector.wiring import collect_provider

NOW = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp())
HOURS = 37  # collected; events happen over the first 12 hours, so the day-later passes (due up to
# ten minutes after a day past the last window, where consecutive windows share a pass) fall inside
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


def run(provider: str, api, store, archive, settings: Settings, clock: FakeClock):
    """One scheduled run against the emulator."""
    return collect_provider(
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
            result = run(provider, api, store, archive, settings, clock)
            calls += result.pages
            if result.sweep:
                sweep_calls += result.sweep["calls"]
                late.update(result.sweep["lateness"])
            clock.now += SCHEDULE
            clock.mono += SCHEDULE
        ids = Counter()
        for key in archive.keys(f"{provider}/dt="):
            ids.update(providers.get(provider).event_id(e) for e in decode_object(archive.get(key)))
        want = {providers.get(provider).event_id(e) for e in events}
        assert max(ids.values()) == 1, "an event archived twice"
        return {
            "collection_calls": calls,  # result.pages: the collection's pages only
            "sweep_calls": sweep_calls,
            "late": dict(late),
            "lost": len(want - set(ids)),
        }


def freshness(
    provider: str, settle: int, schedule: int, org, ages: tuple[float, ...] = (1800, 86400), hours: int = 14
) -> dict:
    """Seconds from each event's own time to the end of the run that archived it."""
    rng = random.Random(7)
    clock = FakeClock(NOW)
    descriptor = providers.get(provider)
    with Emulator(clock=clock.time) as emu, tempfile.TemporaryDirectory() as folder:
        api = emu.api(provider)
        if provider == "slack":
            events = slack_events(org, NOW, NOW + 12 * 3600, EVENTS, seed=3)
        else:
            events = asana_events(org, NOW * 1000, (NOW + 12 * 3600) * 1000, EVENTS, seed=3)
        for event in events:
            getattr(emu, provider).add([event], lag=lateness(rng))
        settings = Settings(settle_seconds=settle, initial_lookback_days=1 / 24, paced=False, sweep_after_seconds=ages)
        store, archive = FileStore(Path(folder) / "state.json"), LocalArchive(Path(folder) / "archive")
        seen: set[str] = set()
        delays: list[float] = []
        for _ in range(hours * 3600 // schedule):
            run(provider, api, store, archive, settings, clock)
            for key in archive.keys(f"{provider}/dt="):
                if key in seen:
                    continue
                seen.add(key)
                for event in decode_object(archive.get(key)):
                    delays.append(clock.now - descriptor.event_seconds(event))
            clock.now += schedule
            clock.mono += schedule
        delays.sort()

        def at(q: float) -> float:
            return delays[min(len(delays) - 1, int(q * len(delays)))]

        return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "archived": len(delays)}


def main() -> None:
    org = make_org(seed=7, users=300)
    configs = [(30, 300, (1800, 86400)), (30, 60, (1800, 86400)), (120, 300, (1800, 86400)), (30, 300, (600, 86400))]
    for provider in ("slack", "asana"):
        for settle, schedule, ages in configs:
            out = freshness(provider, settle, schedule, org, ages)
            passes = "/".join(str(int(a)) for a in ages)
            label = f"{provider} settle {settle}s, every {schedule // 60} min, passes at {passes}s"
            figure(f"{label}: event -> archived p50", f"{out['p50']:.0f}", "s")
            figure(f"{label}: event -> archived p95", f"{out['p95']:.0f}", "s")
            figure(f"{label}: event -> archived p99", f"{out['p99']:.0f}", "s")
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
