"""Exactly-once at the edges: seeded random schedules of bursts, expiring positions, budget stops
and crashes. Each seed is one schedule; a failure names its seed, so it can be replayed alone."""

from __future__ import annotations

import random
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audit_collector.asana import iso_ms
from audit_collector.collector import Settings
from audit_collector.emulator import Emulator
from audit_collector.errors import ApiError
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.state import FileStore

from .support import (
    Crash,
    CrashingArchive,
    CrashingStore,
    SlowClock,
    StepCounter,
    add_history,
    assert_exactly_once,
    run_once,
)

NOW = int(datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp())
MIDNIGHT = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp())


def _bursts(provider: str, template: dict, rng: random.Random, page: int) -> list[dict]:
    """Bursts of more events than a page holds, each at one instant (Slack: a second, Asana: a
    millisecond), some on either side of a midnight."""
    instants = [MIDNIGHT * 1000 - 1, MIDNIGHT * 1000, (MIDNIGHT - 3600) * 1000 + 7]
    instants += [rng.randrange((NOW - 86400) * 1000, (NOW - 900) * 1000) for _ in range(4)]
    events = []
    for b, ms in enumerate(instants):
        for j in range(rng.randint(page + 1, 4 * page)):
            event = dict(template)
            if provider == "slack":
                event.update(id=f"burst-{b}-{j:03d}", date_create=ms // 1000)
            else:
                event.update(gid=f"8{b:03d}{j:05d}", created_at=iso_ms(ms))
            events.append(event)
    return events


class _Expiry:
    """Expires a position (cursor or offset) on a random share of the requests that carry one, but
    never twice within ``cooldown`` such requests: each restart is left room to make progress."""

    def __init__(self, emu: Emulator, provider: str, rng: random.Random, rate: float, cooldown: int) -> None:
        self.provider, self.rng, self.rate, self.cooldown = provider, rng, rate, cooldown
        self.quiet, self.expired = 0, 0
        self.original = emu.faults.draw
        self.enabled = True
        emu.faults.draw = self.draw

    def draw(self, api: str, *, has_position: bool, position: str):
        if self.enabled and api == self.provider and has_position:
            if self.quiet > 0:
                self.quiet -= 1
            elif self.rng.random() < self.rate:
                self.quiet = self.cooldown
                self.expired += 1
                return position  # the API's own: an expired cursor or offset
        return self.original(api, has_position=has_position, position=position)


def run_schedule(provider: str, seed: int, *, tolerate_errors: bool) -> dict[str, int]:
    """One seeded schedule: bursts, positions expiring at random pages, runs stopped by their budget
    or killed at a random step, until a run completes; then the archive must hold each event once."""
    rng = random.Random(seed)
    page = rng.randint(2, 6)
    clock = SlowClock(start=float(NOW), step=rng.choice([0.5, 1.0, 2.0]))
    from audit_collector.emulator import make_org

    org = make_org(seed=7, users=20)
    with tempfile.TemporaryDirectory() as tmp, Emulator(clock=clock.time) as emu:
        background = add_history(emu, org, provider, NOW - 2 * 86400 + 600, NOW - 600, rng.randint(20, 60), seed=seed)
        bursts = _bursts(provider, background[0], rng, page)
        emu.api(provider).add(bursts)
        expected = background + bursts
        # Slack restarts a window from its first page: it needs a longer quiet spell to get through.
        rate, cooldown = (rng.choice([0.2, 0.4]), 6) if provider == "asana" else (rng.choice([0.05, 0.15]), 12)
        expiry = _Expiry(emu, provider, rng, rate=rate, cooldown=cooldown)
        settings = Settings(
            initial_lookback_days=2,
            page_limit=page,
            max_object_bytes=rng.choice([1500, 4000, 20_000]),
            write_reserve_seconds=2,
            http_timeout=2,
        )
        store, archive = FileStore(Path(tmp) / "state.json"), LocalArchive(Path(tmp) / "archive")
        stats = {"runs": 0, "crashes": 0, "stopped": 0, "errors": 0}
        for _ in range(300):
            stats["runs"] += 1
            kind = rng.choice(["whole", "budget", "budget", "crash"])
            steps = StepCounter(crash_at=rng.randint(1, 12) if kind == "crash" else None)
            try:
                result = run_once(
                    provider,
                    emu,
                    store=CrashingStore(store, steps),
                    archive=CrashingArchive(archive, steps, after_write=rng.random() < 0.5),
                    clock=clock,
                    settings=settings,
                    budget_seconds=900 if kind == "whole" else rng.uniform(8, 40),
                    owner="scheduler",  # the next run takes over a crashed run's lease at once
                )
            except Crash:
                stats["crashes"] += 1
                continue
            except ApiError:
                if not tolerate_errors:
                    raise
                stats["errors"] += 1
                continue
            if result.complete:
                break
            stats["stopped"] += 1
        else:
            raise AssertionError(f"seed {seed}: never completed: {stats}")
        stats["expired"] = expiry.expired
        assert_exactly_once(archive, provider, expected)
        return stats


@pytest.mark.parametrize("seed", range(40))
def test_asana_bursts_longer_than_a_page_with_offsets_expiring_anywhere(seed):
    """Bursts of more events in one millisecond than a page holds; offsets expire at random pages
    (more often in one run than max_window_restarts, but each restart is left room to progress),
    runs stop on their budget, split at midnight, or die at a random step."""
    stats = run_schedule("asana", seed, tolerate_errors=False)
    print(f"seed {seed}: {stats}")


class _SplitSeconds:
    """Counts Slack pages that continue a second the previous page of the same query ended in."""

    def __init__(self, emu: Emulator) -> None:
        self.original, self.ends, self.split = emu.slack.log.page, {}, 0
        emu.slack.log.page = self.page

    def page(self, params, now, ttl):
        import json

        body = self.original(params, now, ttl)
        data = json.loads(body)
        seconds = [e["date_create"] for e in data["entries"]]
        if seconds and params.get("cursor") and self.ends.get(params["cursor"]) == seconds[0]:
            self.split += 1
        if seconds and data["response_metadata"]["next_cursor"]:
            self.ends[data["response_metadata"]["next_cursor"]] = seconds[-1]
        return body


@pytest.mark.parametrize("seed", range(40))
def test_slack_same_second_bursts_across_page_boundaries(seed, monkeypatch):
    """Bursts of many events in one second, pages of 2 to 6 that end inside a second, cursors
    expiring at random pages, runs stopped by their budget between pages or killed at a random step.
    The schedule must actually have split seconds across pages."""
    counter: dict[str, _SplitSeconds] = {}
    real_init = Emulator.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        counter["split"] = _SplitSeconds(self)

    monkeypatch.setattr(Emulator, "__init__", init)
    stats = run_schedule("slack", seed, tolerate_errors=True)
    stats["split_pages"] = counter["split"].split
    print(f"seed {seed}: {stats}")
    assert stats["split_pages"] > 0


def test_the_exactly_once_check_fails_on_a_repeated_event(monkeypatch):
    """The check the schedules rely on: an archive that holds one event twice (here every object
    written twice over, under its own name and a second one) must fail it."""
    from audit_collector.collector import loop

    put = loop.Run.put

    def put_twice(self, key, buffer):
        if buffer is not None and buffer.events:
            body = buffer.finish()
            for name in (key, key.replace(".jsonl.gz", "-copy.jsonl.gz")):
                self.archive.put(name, body, replaces=self.archive.version(name))
            return body
        return put(self, key, buffer)

    monkeypatch.setattr(loop.Run, "put", put_twice)
    for provider in ("slack", "asana"):
        with pytest.raises(AssertionError, match=r"duplicated=[1-9]"):
            run_schedule(provider, 1, tolerate_errors=True)
