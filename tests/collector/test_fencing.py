"""A run paused at any step of its writes, past its lease, then resumed: it can replace nothing.

The in-process twin of the SIGSTOP test in tests/cli/test_cli.py, run at every step: the first run's thread
is held at its k-th archive or checkpoint call (a read of a key's version, a lease renewal, a put,
a save), its lease runs out, a second run takes over and finishes with objects cut differently,
and the first is let go. Whatever k, the archive ends exactly as the second run left it, every
event once. Also when the keys the first run writes already hold a crashed run's orphans, so that
each of its writes goes the long way (refused as new, version read, lease renewed, replaced).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from audit_collector.collector import Settings
from audit_collector.emulator import Emulator
from audit_collector.errors import LeaseLost
from audit_collector.storage.archive import EMPTY_GZIP
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.state import FileStore

from ..support import BUILTIN_PROVIDERS, FakeClock, Gate, GatedArchive, GatedStore, assert_exactly_once, run_once

NOW = int(datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp())


def settings(provider: str, object_bytes: int) -> Settings:
    """Pages of 8: the 120 events take 15 pages from any API (every API's largest page is larger)."""
    return Settings(initial_lookback_days=1, page_limit=8, max_object_bytes=object_bytes)


def steps_of_one_run(provider, org, folder, orphans: list[str]) -> tuple[int, list[str]]:
    """The archive and checkpoint calls of the run under test, and the keys it writes."""
    gate, clock = Gate(at=0), FakeClock(NOW)
    leave_orphans(folder, orphans)
    with Emulator(clock=clock.time) as emu:
        emu.api(provider).add(emu.api(provider).generate(org, NOW - 20 * 3600, NOW - 3600, 120, seed=5))
        store = GatedStore(FileStore(folder / "state.json"), gate)
        archive = GatedArchive(LocalArchive(folder), gate)
        run_once(provider, emu, store=store, archive=archive, clock=clock, settings=settings(provider, 4000))
    written = LocalArchive(folder).keys()
    return gate.count, sorted(k for k in written if k.startswith((f"{provider}/", "_manifests/")))


def leave_orphans(folder, keys: list[str]) -> None:
    """What a run that crashed after its writes, before any checkpoint, leaves: objects (empty
    here) at the keys the next run writes, which it must replace by their version (If-Match)."""
    for key in keys:
        LocalArchive(folder).put(key, EMPTY_GZIP)


@pytest.mark.parametrize("orphaned", [False, True], ids=["new-keys", "orphaned-keys"])
@pytest.mark.parametrize("provider", BUILTIN_PROVIDERS)
def test_a_run_paused_at_any_step_past_its_lease_cannot_replace_the_next_owners_objects(
    provider, orphaned, org, tmp_path
):
    _, keys = steps_of_one_run(provider, org, tmp_path / "learn", [])
    orphans = keys if orphaned else []
    total, _ = steps_of_one_run(provider, org, tmp_path / "count", orphans)
    assert total > 12
    now = [FakeClock(NOW)]
    with Emulator(clock=lambda: now[0].time()) as emu:
        api = emu.api(provider)
        events = api.generate(org, NOW - 20 * 3600, NOW - 3600, 120, seed=5)
        api.add(events)
        for at in range(1, total + 1):
            folder, clock, gate = tmp_path / f"at{at}", FakeClock(NOW), Gate(at)
            leave_orphans(folder, orphans)
            now[0] = clock
            outcome: list[object] = []

            def first_run(gate=gate, folder=folder, clock=clock, outcome=outcome) -> None:
                store = GatedStore(FileStore(folder / "state.json"), gate)
                archive = GatedArchive(LocalArchive(folder), gate)
                try:
                    outcome.append(
                        run_once(
                            provider,
                            emu,
                            store=store,
                            archive=archive,
                            clock=clock,
                            settings=settings(provider, 4000),
                            owner="paused",
                        )
                    )
                except Exception as exc:
                    outcome.append(exc)

            thread = threading.Thread(target=first_run)
            thread.start()
            assert gate.reached.wait(30), at
            clock.advance(900 + 31)  # the pause outlasts the first run's lease
            second = run_once(
                provider,
                emu,
                store=FileStore(folder / "state.json"),
                archive=LocalArchive(folder),
                clock=clock,
                settings=settings(provider, 9000),
                owner="next",
            )
            assert second.complete, at
            after_second = {k: LocalArchive(folder).get(k) for k in LocalArchive(folder).keys(f"{provider}/")}
            gate.go.set()
            thread.join(30)
            assert not thread.is_alive()
            assert isinstance(outcome[0], LeaseLost), (at, outcome)  # the resumed run stopped, refused
            final = {k: LocalArchive(folder).get(k) for k in LocalArchive(folder).keys(f"{provider}/")}
            assert final == after_second, at  # it replaced nothing
            assert_exactly_once(LocalArchive(folder), provider, events)
