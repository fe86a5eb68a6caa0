"""A checkpoint that stays small forever: finished backfills leave ``jobs`` for merged ``archived``
ranges (still taken), and only the most recent summaries are kept."""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from audit_collector import providers
from audit_collector.collector import BackfillRequest, Settings, summarize_backfills
from audit_collector.collector import loop as collector_loop
from audit_collector.collector.backfill import FINISHED_KEPT, compact, plan_backfill
from audit_collector.collector.jobs import LIVE, Job, jobs_of, merge, subtract, taken_by_others
from audit_collector.emulator import Emulator
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.state import FileStore

from ..support import BUILTIN_PROVIDERS, FakeClock, add_history, assert_exactly_once, event_time, run_once

NOW = int(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp())
DAY = 86400
MS_DAY = DAY * 1000
BOUND = 50_000  # bytes of the serialized document, far under DynamoDB's 400 KB item


@pytest.fixture
def local(tmp_path):
    return FileStore(tmp_path / "state.json"), LocalArchive(tmp_path / "archive")


def size(document: dict) -> int:
    return len(json.dumps(document, separators=(",", ":"), sort_keys=True))


def finish(job: Job) -> None:
    job.window, job.watermark = None, max((end for _, end in job.ranges), default=None)


def claims(document: dict) -> list[tuple[str, list[int]]]:
    """(owner, range) for every range any job owns, and every archived range."""
    out = [(job_id, r) for job_id, job in jobs_of(document).items() for r in job.ranges]
    return out + [("archived", r) for r in document.get("archived", [])]


def assert_no_instant_claimed_twice(document: dict) -> None:
    ranges = sorted(claims(document), key=lambda c: c[1][0])
    for (a, (_, a_end)), (b, (b_start, _)) in itertools.pairwise(ranges):
        assert a_end is not None and a_end <= b_start, f"{a} and {b} both claim {b_start}"


def random_range(rng: random.Random, lo: int, hi: int, previous: list[tuple[int, int]]) -> tuple[int, int]:
    """Random, overlapping an earlier one, or adjacent to one (on either side)."""
    kind = rng.random()
    if previous and kind < 0.3:
        start, end = rng.choice(previous)
        return (
            (end, min(hi, end + rng.randint(1, 3 * MS_DAY)))
            if rng.random() < 0.5
            else (
                max(lo, start - rng.randint(1, 3 * MS_DAY)),
                start,
            )
        )
    if previous and kind < 0.6:
        start, end = rng.choice(previous)
        a = rng.randint(start - MS_DAY, end)
        return max(lo, a), min(hi, a + rng.randint(1, 5 * MS_DAY))
    a = rng.randint(lo, hi - 1)
    return a, min(hi, a + rng.choice([1, 1000, 3_600_000, MS_DAY, 7 * MS_DAY, 40 * MS_DAY]))


@pytest.mark.parametrize("seed", range(3))
def test_two_thousand_backfills_keep_the_document_small_and_every_instant_claimed_once(seed):
    rng = random.Random(seed)
    hi = NOW * 1000 - 7 * MS_DAY  # live collection owns everything from here on
    lo = hi - 3000 * MS_DAY  # Slack keeps history from 2018 on
    document: dict = {"jobs": {LIVE: Job(LIVE, [[hi, None]], watermark=hi + 5000).to_dict()}}
    requests: list[tuple[int, int]] = []
    largest = 0
    for n in range(2000):
        start, end = random_range(rng, lo, hi, requests)
        if start >= end:
            continue
        requests.append((start, end))
        jobs = plan_backfill(
            document, "asana", BackfillRequest(start, end), slices=rng.randint(1, 8), now=float(NOW + n)
        )
        if jobs is not None:
            # What a run does: claim (one save), then collect; each save is compacted.
            document = compact({**document, "jobs": {**document["jobs"], **{j.id: j.to_dict() for j in jobs}}})
        pending = [j for j in jobs_of(document).values() if j.id != LIVE]
        for job in rng.sample(pending, k=len(pending) // 2 + (1 if pending and rng.random() < 0.5 else 0)):
            finish(job)
            document = compact({**document, "jobs": {**document["jobs"], job.id: job.to_dict()}})
        assert_no_instant_claimed_twice(document)
        largest = max(largest, size(document))
    # Nothing lost: every requested instant is archived or still owned by a job.
    owned = merge([r for _, r in claims(document) if r[1] is not None] + [[hi, hi + 1]])
    assert subtract([list(r) for r in requests], owned) == []
    # A later backfill over any of it finds nothing left to take.
    taken = taken_by_others(document, "a-new-one")
    assert all(subtract([list(r)], taken) == [] for r in rng.sample(requests, 50))
    summaries = summarize_backfills(document, providers.get("asana"))
    assert len([s for s in summaries if s["done"]]) == FINISHED_KEPT
    print(
        f"seed {seed}: {len(requests)} backfills, document {size(document)} bytes at the end, "
        f"{largest} at most; {len(document['archived'])} archived ranges, {len(document['jobs'])} jobs"
    )
    assert largest < BOUND


def old_save_jobs(self, *jobs, **fields):
    """The checkpoint as it was written before compaction: finished jobs stay in ``jobs``."""
    with self._lock:
        document = dict(self.document)
        document["jobs"] = {**document.get("jobs", {}), **{job.id: job.to_dict() for job in jobs}}
        document.update(fields)  # the manifest chain's head
        self.store.save(self.lease, document)


@pytest.mark.parametrize("provider", BUILTIN_PROVIDERS)
def test_backfills_end_to_end_and_an_old_checkpoint_is_migrated(provider, org, local, monkeypatch):
    """A handful of backfills (overlapping, adjacent, repeated) through run_once: written first the
    old way (finished jobs in ``jobs``), then migrated by the next save; exactly once throughout."""
    store, archive = local
    clock = FakeClock(start=float(NOW))
    descriptor = providers.get(provider)
    unit = descriptor.units_per_second
    settings = Settings(initial_lookback_days=1, page_limit=30, max_object_bytes=20_000, backfill_slices=2)
    spans = [(9, 7), (8, 6), (6, 5), (12, 10), (10, 9), (9, 7)]  # days ago: overlapping, adjacent, a repeat

    def backfill(days):
        start, end = (NOW - days[0] * DAY) * unit, (NOW - days[1] * DAY) * unit
        return BackfillRequest(int(start), int(end))

    with Emulator(clock=clock.time) as emu:
        events = add_history(emu, org, provider, NOW - 13 * DAY, NOW - 600, 900)
        with monkeypatch.context() as old:
            old.setattr(collector_loop.Run, "save_jobs", old_save_jobs)
            for days in spans[:3]:
                result = run_once(
                    provider, emu, store=store, archive=archive, clock=clock, settings=settings, backfill=backfill(days)
                )
                assert result.complete and result.backfill["done"]
        before = store.read(provider)["checkpoint"]
        assert "archived" not in before and len([j for j in before["jobs"] if j != LIVE]) >= 3  # the old form
        for days in spans[3:]:
            result = run_once(
                provider, emu, store=store, archive=archive, clock=clock, settings=settings, backfill=backfill(days)
            )
            assert result.complete and result.backfill["done"]
        assert result.backfill["existing"]  # the repeat of the first range
        after = store.read(provider)["checkpoint"]
    assert list(after["jobs"]) == [LIVE]
    assert after["archived"] == [[(NOW - 12 * DAY) * unit, (NOW - 5 * DAY) * unit]]
    assert len(after["finished"]) == 5
    assert_no_instant_claimed_twice(after)
    wanted = [
        e
        for e in events
        if NOW - 12 * DAY <= event_time(provider, e) < NOW - 5 * DAY or event_time(provider, e) >= NOW - DAY
    ]
    assert_exactly_once(archive, provider, wanted)
    print(f"{provider}: document {size(before)} bytes in the old form, {size(after)} after the migration")


# Operations on one provider's document: ("backfill", start, length, slices) or ("finish", pick).
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("backfill"), st.integers(0, 200), st.integers(1, 60), st.integers(1, 4)),
        st.tuples(st.just("finish"), st.integers(0, 10**6)),
    ),
    max_size=60,
)


@examples(max_examples=300, deadline=None)
@given(ops=OPS)
def test_claims_stay_disjoint_and_nothing_requested_is_lost_whatever_the_order(ops):
    """Any sequence of backfills (on a small grid, so they overlap and touch) and finished jobs:
    no instant owned twice, every requested instant archived or owned, a repeat is "existing"."""
    document: dict = {"jobs": {LIVE: Job(LIVE, [[150, None]]).to_dict()}}
    requested = []
    for op in ops:
        if op[0] == "backfill":
            _, start, length, slices = op
            requested.append([start, start + length])
            jobs = plan_backfill(document, "slack", BackfillRequest(start, start + length), slices=slices, now=0.0)
            if jobs is not None:
                document = compact({**document, "jobs": {**document["jobs"], **{j.id: j.to_dict() for j in jobs}}})
        else:
            pending = sorted(j for j in document["jobs"] if j != LIVE)
            if pending:
                job = jobs_of(document)[pending[op[1] % len(pending)]]
                finish(job)
                document = compact({**document, "jobs": {**document["jobs"], job.id: job.to_dict()}})
        assert_no_instant_claimed_twice(document)
        assert len(document.get("finished", [])) <= FINISHED_KEPT
    owned = merge([r if r[1] is not None else [r[0], 10**6] for _, r in claims(document)])
    assert subtract(requested, owned) == []
    for done in document.get("finished", []):  # a finished backfill asked again is reported, not redone
        request = BackfillRequest(done["start"], done["end"])
        assert plan_backfill(document, "slack", request, slices=1, now=0.0) is None
