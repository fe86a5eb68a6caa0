"""Completeness in ordinary operation (issue 18): weeks of scheduled runs with backfills, long
first windows, outages, one very large window, expiring cursors, crashes and a daily ``verify``.
Each failure class has its own test over many generated cases; each ends the same way: every
event archived exactly once, and ``verify`` clean with the state store, with ``--from``, and from
the archive and the public key alone."""

from __future__ import annotations

import dataclasses
import random
import shutil
from datetime import UTC, datetime

import pytest

from audit_collector import providers
from audit_collector.collector import BackfillRequest, Settings
from audit_collector.collector.queue import QUEUE_LIMIT, TURN_PAGES, enqueue
from audit_collector.emulator import Emulator, FaultPlan, api_classes
from audit_collector.evidence.signing import Ed25519Signer, PublicKeyChecker, generate_key
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.state import FileStore
from audit_collector.verify.check import verify_archive

from .support import (
    BUILTIN_PROVIDERS,
    Crash,
    CrashingArchive,
    CrashingStore,
    FakeClock,
    SlowClock,
    StepCounter,
    add_history,
    add_late,
    assert_exactly_once,
    run_once,
)

PROVIDERS = BUILTIN_PROVIDERS
NOW = int(datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp())
DAY = 86400
SWEEP = Settings(
    settle_seconds=120,
    initial_lookback_days=1,
    page_limit=20,
    max_object_bytes=6000,
    sweep_after_seconds=(1800, 86400),
)


class World:
    """One provider's emulator, archive, state and signing key, on a fake clock."""

    def __init__(self, provider, org, tmp_path, clock=None, faults=None, name="a"):
        self.provider, self.org, self.tmp = provider, org, tmp_path
        self.clock = clock or FakeClock(start=float(NOW))
        self.emu = Emulator(clock=self.clock.time, faults=faults)
        self.store = FileStore(tmp_path / f"{name}.json")
        self.archive = LocalArchive(tmp_path / name)
        key = tmp_path / f"{name}.pem"
        if not key.exists():
            generate_key(key)
        self.signer = Ed25519Signer.from_file(key)
        self.public_key = PublicKeyChecker.from_file(f"{key}.pub")
        self.events: list[dict] = []

    def __enter__(self):
        self.emu.__enter__()
        return self

    def __exit__(self, *exc):
        self.emu.__exit__(*exc)

    def backfill(self, start, end):
        """A backfill request for [start, end) seconds, in the provider's unit."""
        descriptor = providers.get(self.provider)
        return BackfillRequest(descriptor.to_units(start), descriptor.to_units(end))

    def history(self, start, end, count, seed=1):
        self.events += add_history(self.emu, self.org, self.provider, start, end, count, seed=seed)

    def late(self, start, end, count, lag, seed):
        self.events += add_late(self.emu, self.org, self.provider, start, end, count, lag, seed)

    def run(self, settings=SWEEP, **kwargs):
        kwargs.setdefault("store", self.store)
        kwargs.setdefault("archive", self.archive)
        return run_once(self.provider, self.emu, clock=self.clock, settings=settings, signer=self.signer, **kwargs)

    def schedule(self, runs, step=300, settings=SWEEP, **kwargs):
        results = []
        for _ in range(runs):
            results.append(self.run(settings, **kwargs))
            self.clock.advance(step)
        return results

    def drain(self, settings=SWEEP, step=3 * 3600):
        """Runs every few hours until every pass of the windows closed so far is done and no job
        has work left (the windows the drain's own runs close queue passes of their own)."""
        results, since = [], self.clock.now
        for _ in range(40):
            result = self.run(settings)
            results.append(result)
            queue = self.store.read(self.provider)["checkpoint"].get("sweep_queue") or []
            if result.complete and all(e["first"] >= since for e in queue) and not result.backfills:
                return results
            self.clock.advance(step)
        raise AssertionError(f"did not drain: {results[-1].as_dict()}")

    def settled(self):
        horizon = self.clock.now - SWEEP.settle_seconds  # where the last run (at now) collected up to
        return [e for e in self.events if providers.get(self.provider).settled_by(e, horizon)]

    def findings(self, **kwargs):
        descriptor = providers.get(self.provider)
        report = verify_archive(self.archive, "", [descriptor], **kwargs)
        return [(f.kind, f.key, f.detail) for p in report.providers for f in p.failing]

    def assert_complete_and_clean(self):
        """Every settled event once; verify clean with the state, with --from, and from the archive
        and the public key alone (with and without --from)."""
        assert_exactly_once(self.archive, self.provider, self.settled())
        checkpoint = {self.provider: self.store.read(self.provider).get("checkpoint", {})}
        for since in (None, NOW - 3 * DAY, NOW - DAY, self.clock.now - DAY):
            assert self.findings(checkpoints=checkpoint, start=since) == [], ("state", since)
            assert self.findings(checker=self.public_key, start=since) == [], ("public key", since)


# --------------------------------------------------------------------------- 1. backfills


# Enough history for the backfill to outlast a day of runs: 4000 events, or as tuned for an API.
BACKFILL_EVENTS = {"slack": 3000}


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("provider", PROVIDERS)
def test_passes_run_while_a_backfill_takes_days_of_runs(provider, seed, org, tmp_path):
    """A backfill that needs more than a day of runs: the windows live collection closes meanwhile
    still get their passes (the sweep no longer waits for every job to be complete)."""
    rng = random.Random(seed)
    clock = SlowClock(start=float(NOW), step=rng.choice([4.0, 6.0]))
    with World(provider, org, tmp_path, clock=clock) as world:
        world.history(NOW - 40 * DAY, NOW - 2 * DAY, BACKFILL_EVENTS.get(provider, 4000), seed=seed)
        world.history(NOW - 3600, NOW + 2 * DAY, 200, seed=seed + 10)
        world.late(NOW, NOW + DAY, 30, lag=rng.choice([900, 4000, 7 * 3600]), seed=seed + 20)
        # One slice at a time: on a clock where every look costs seconds, parallel slices overrun the lease.
        settings = dataclasses.replace(SWEEP, initial_lookback_days=1 / 24, backfill_slices=1)
        first = world.run(settings, budget_seconds=200, backfill=world.backfill(NOW - 40 * DAY, NOW - 3600))
        results = [first, *world.schedule(9, step=4 * 3600, settings=settings, budget_seconds=200)]
        assert any(r.backfills for r in results[6:]), "the backfill must still be running a day later"
        assert sum((r.sweep or {}).get("passes", 0) for r in results if r.backfills) > 0
        world.drain(settings)
        world.assert_complete_and_clean()


# --------------------------------------------------------------------------- 2. long windows


@pytest.mark.parametrize("outage_days", [0, 3, 5])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_long_windows_are_re_read_whatever_day_they_are_filed_under(provider, outage_days, org, tmp_path):
    """The first run's 7-day lookback, and the catch-up after an outage of days: windows that start
    days before they end get their passes, and verify --from finds their manifests."""
    with World(provider, org, tmp_path) as world:
        settings = dataclasses.replace(SWEEP, initial_lookback_days=7)
        world.history(NOW - 7 * DAY, NOW + (outage_days + 2) * DAY, 400)
        world.late(NOW - 7 * DAY + 3600, NOW - 120, 25, lag=600, seed=3)  # late for the first, 7-day window
        world.run(settings)
        world.clock.advance(outage_days * DAY + 300)  # the schedule stops, then resumes
        later = int(world.clock.now)
        world.late(later - outage_days * DAY, later - 600, 15 if outage_days else 0, lag=1200, seed=4)
        world.schedule(3, settings=settings)
        world.drain(settings)
        world.assert_complete_and_clean()


# --------------------------------------------------------------------------- 3. one large window


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("provider", PROVIDERS)
def test_one_large_window_holds_no_other_pass_up_and_resumes_where_it_stopped(provider, seed, org, tmp_path):
    """A pass that needs many times a turn's pages goes on from its position each turn; the windows
    behind it get their passes meanwhile, and the sweep asks no page twice."""
    rng = random.Random(seed)
    with World(provider, org, tmp_path) as world:
        settings = dataclasses.replace(SWEEP, initial_lookback_days=2)
        world.history(NOW - 2 * DAY, NOW - 60, 60 * TURN_PAGES * 20 // 10, seed=seed)  # a large first window
        world.history(NOW, NOW + 2 * DAY, 150, seed=seed + 1)
        world.late(NOW - 2 * DAY, NOW - 300, 10, lag=900, seed=seed + 2)
        world.late(NOW, NOW + 3 * 3600, 10 + rng.randrange(10), lag=rng.choice([900, 3000]), seed=seed + 3)
        # Each run's sweep time allows only a few turns: the large pass takes several runs.
        small = dataclasses.replace(settings, sweep_seconds=0.0)
        clock = world.clock
        results = world.schedule(12, step=900, settings=small, budget_seconds=900)
        results += world.drain(small)
        sweep_calls = sum((r.sweep or {}).get("calls", 0) for r in results)
        collection_calls = sum(r.pages for r in results)
        assert sweep_calls <= 2 * collection_calls + 2 * len(results), (sweep_calls, collection_calls)
        assert clock.now < NOW + 4 * DAY
        world.assert_complete_and_clean()


# --------------------------------------------------------------------------- 4. expiring cursors


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_expiring_cursors_during_the_sweep_never_fail_a_run(provider, rate, org, tmp_path):
    """Cursors (Slack) and offsets (Asana) that expire at any rate: each pass goes on from its
    position, no run fails, the late events are found."""
    fault = api_classes()[provider].position_fault  # Slack's invalid_cursor, Asana's expired_offset
    plan = FaultPlan(int(rate * 10), {fault: rate})
    with World(provider, org, tmp_path, faults=plan) as world:
        world.history(NOW - DAY, NOW + DAY, 600)
        world.late(NOW - 600, NOW + 3 * 3600, 40, lag=900, seed=5)
        results = world.schedule(16, step=900)
        assert all(r.complete or r.sweep for r in results)  # none raised
        results += world.drain()
        world.assert_complete_and_clean()
        assert sum(r.sweep["late_events"] for r in results if r.sweep) >= 1


# --------------------------------------------------------------------------- 5. crashes in a pass


def clone(tmp_path, name, into):
    shutil.copytree(tmp_path / name, tmp_path / into)
    shutil.copy(tmp_path / f"{name}.json", tmp_path / f"{into}.json")
    shutil.copy(tmp_path / f"{name}.pem", tmp_path / f"{into}.pem")
    shutil.copy(tmp_path / f"{name}.pem.pub", tmp_path / f"{into}.pem.pub")
    (tmp_path / into / "_audit_collector" / "state-store.json").unlink()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_crash_in_a_pass_then_new_late_events_leave_no_copy_behind(provider, org, tmp_path):
    """A pass over a window that crosses midnight dies after any of its writes; before the rerun, a
    late event for the first day appears (the part boundaries move). Nothing is archived twice."""
    midnight = NOW + 12 * 3600  # 2026-11-21T00:00Z
    clock = FakeClock(start=float(midnight - 3 * 3600))
    with World(provider, org, tmp_path, clock=clock) as world:
        settings = dataclasses.replace(SWEEP, initial_lookback_days=6 / 24, max_object_bytes=1500)
        world.history(midnight - 4 * 3600, midnight + 4 * 3600, 200)
        world.late(midnight - 3600, midnight + 3600, 30, lag=1500, seed=6)
        # One run across midnight closes a window over both days (Slack: one per day).
        clock.now = midnight + 3600 + 200
        world.run(settings)
        base_time = clock.now
        counter = StepCounter()
        clone(tmp_path, "a", "ref")
        clock.now = base_time + 1900
        ref = World(provider, org, tmp_path, clock=clock, name="ref")
        ref.emu = world.emu
        ref.run(settings, store=CrashingStore(ref.store, counter), archive=CrashingArchive(ref.archive, counter))
        assert counter.count > 3
        rng = random.Random(7)
        for crash_at in range(1, counter.count + 1):
            name = f"c{crash_at}"
            clone(tmp_path, "a", name)
            clock.now = base_time + 1900
            crashed = World(provider, org, tmp_path, clock=clock, name=name)
            crashed.emu, crashed.events = world.emu, world.events
            steps = StepCounter(crash_at=crash_at)
            with pytest.raises(Crash):
                crashed.run(
                    settings,
                    store=CrashingStore(crashed.store, steps),
                    archive=CrashingArchive(crashed.archive, steps),
                    owner="dead",
                )
            # A late event for the first day reaches the API before the rerun.
            at = midnight - rng.randrange(60, 3000)
            world.late(at, at + 1, 1, lag=1, seed=100 + crash_at)
            crashed.events = world.events
            clock.advance(1000)
            crashed.drain(settings)
            crashed.assert_complete_and_clean()


# --------------------------------------------------------------------------- 6. the scheduled verify


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_daily_verify_from_yesterday_is_clean_over_multi_day_windows(provider, seed, org, tmp_path):
    """The scheduled verification checks from a day back (``--from``) while windows that began days
    earlier, backfill slices and sweep passes are filed under older dates: no finding, every day."""
    rng = random.Random(seed)
    with World(provider, org, tmp_path) as world:
        lookback = rng.choice([3, 7])
        settings = dataclasses.replace(SWEEP, initial_lookback_days=lookback)
        world.history(NOW - 10 * DAY, NOW + 5 * DAY, 600, seed=seed)
        world.late(NOW - 600, NOW + DAY, 20, lag=rng.choice([900, 5000]), seed=seed + 1)
        world.run(settings, backfill=world.backfill(NOW - 10 * DAY, NOW - lookback * DAY))
        for _day in range(4):
            world.schedule(4, step=rng.choice([3600, 6 * 3600]), settings=settings)
            checkpoint = {provider: world.store.read(provider)["checkpoint"]}
            since = world.clock.now - DAY
            assert world.findings(checkpoints=checkpoint, start=since) == []
            assert world.findings(checker=world.public_key, start=since) == []
        world.drain(settings)
        world.assert_complete_and_clean()


# --------------------------------------------------------------------------- 7. every object


@pytest.mark.parametrize("name", ["copy.jsonl", "copy.json", "x.jsonl.gz.bak", "part", "_hidden.jsonl.gz"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_any_object_under_a_dt_folder_is_seen(provider, name, org, tmp_path):
    """Athena reads every object under a dt= folder: verify reports a planted one, whatever its
    name, and compaction's digest of the day changes."""
    from audit_collector.compaction.local import local_digest, raw_objects

    with World(provider, org, tmp_path) as world:
        world.history(NOW - DAY, NOW - 600, 100)
        world.run()
        day_dir = sorted((tmp_path / "a" / provider).glob("dt=*"))[0]
        before = local_digest(raw_objects(tmp_path / "a", "", providers.get(provider))[day_dir.name[3:]])
        source = sorted(day_dir.glob("*.jsonl.gz"))[0]
        (day_dir / name).write_bytes(source.read_bytes())
        after = local_digest(raw_objects(tmp_path / "a", "", providers.get(provider))[day_dir.name[3:]])
        assert before != after
        checkpoint = {provider: world.store.read(provider)["checkpoint"]}
        found = world.findings(checkpoints=checkpoint)
        assert ("extra", f"{provider}/{day_dir.name}/{name}") in [(k, key) for k, key, _ in found]
        assert world.findings(checker=world.public_key, start=NOW - DAY)  # from --from and the key too


# --------------------------------------------------------------------------- 8. the bucket alone


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_bucket_and_the_public_key_alone_catch_a_deleted_newest_window_and_a_re_forged_chain(
    provider, seed, org, tmp_path
):
    """Without the state store: deleting the newest windows (manifests and objects), or removing an
    event and re-forging every later link, is caught by the signed heads. A head signed with
    another key is not trusted."""
    import gzip
    import hashlib
    import json

    from audit_collector.evidence import manifest as manifests

    rng = random.Random(seed)
    with World(provider, org, tmp_path) as world:
        world.history(NOW - DAY, NOW + DAY, 300, seed=seed)
        world.schedule(6, step=900)
        assert world.findings(checker=world.public_key) == []
        clone(tmp_path, "a", "deleted")
        clone(tmp_path, "a", "forged")
        folder = tmp_path / "deleted"
        keys = sorted(LocalArchive(folder).keys(f"_manifests/{provider}/"))
        documents = {k: json.loads((folder / k).read_text()) for k in keys}
        newest = sorted(keys, key=lambda k: documents[k]["seq"])[-rng.randint(1, 2) :]
        for key in newest:
            for entry in documents[key]["objects"]:
                (folder / entry["key"]).unlink()
            (folder / key).unlink()
        deleted = World(provider, org, tmp_path, name="deleted")
        assert any(kind == "chain" for kind, _, _ in deleted.findings(checker=deleted.public_key))

        folder = tmp_path / "forged"
        by_seq = sorted(keys, key=lambda k: documents[k]["seq"])
        target = rng.randrange(len(by_seq) - 1)
        with_events = [k for k in by_seq[target:] if documents[k]["events"]]
        victim = with_events[0]
        document = documents[victim]
        entry = next(o for o in document["objects"] if o["events"])
        lines = gzip.decompress((folder / entry["key"]).read_bytes()).splitlines(keepends=True)[1:]
        body = gzip.compress(b"".join(lines), mtime=0)
        (folder / entry["key"]).write_bytes(body)
        ids = [providers.get(provider).event_id(json.loads(line)) for line in lines]
        entry.update(
            bytes=len(body),
            events=len(lines),
            sha256=hashlib.sha256(body).hexdigest(),
            ids_digest=manifests.digest_hex(manifests.ids_digest(ids)),
        )
        document["events"] = sum(o["events"] for o in document["objects"])
        document["ids_digest"] = manifests.add_digests(*(o["ids_digest"] for o in document["objects"]))
        prev = None
        for key in by_seq:  # re-forge every link from the start: each prev the SHA-256 of the one before
            doc = documents[key]
            if prev is not None:
                doc["prev"] = prev
            body = manifests.encode(doc)
            (folder / key).write_bytes(body)
            prev = hashlib.sha256(body).hexdigest()
        forged = World(provider, org, tmp_path, name="forged")
        found = forged.findings(checker=forged.public_key)
        assert [k for k, _, d in found if k == "chain" and "signed" in d], found

        # The forger also replaces the signed heads with heads of their own key (without Object
        # Lock they can): consistent without the public key, caught with it.
        from audit_collector.evidence import heads as signed_heads

        other = tmp_path / "other.pem"
        generate_key(other)
        forger = Ed25519Signer.from_file(other)
        for path in sorted((folder / "_chain").rglob("*.json")):
            head = json.loads(path.read_text())
            link = {d["seq"]: (k, hashlib.sha256((folder / k).read_bytes()).hexdigest()) for k, d in documents.items()}
            head["links"] = [[seq, link[seq][0], link[seq][1]] for seq, _, _ in head["links"]]
            head["sha256"] = link[head["seq"]][1]
            path.write_bytes(signed_heads.encode(signed_heads.sign(head, forger)))
        assert forged.findings() == []  # a careful forgery is consistent: why the public key matters
        found = forged.findings(checker=forged.public_key)
        assert found and all(k == "chain" for k, _, _ in found), found
        assert world.findings(checker=PublicKeyChecker.from_file(f"{other}.pub"))  # not the key: nothing trusted


# --------------------------------------------------------------------------- the queue stays small


def test_the_queue_stays_bounded_and_every_pass_it_drops_is_counted():
    from hypothesis import given
    from hypothesis import settings as examples
    from hypothesis import strategies as st

    @examples(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(st.integers(1, 3600), st.integers(0, 4000), st.booleans()), min_size=1, max_size=900))
    def check(closes):
        queue, dropped, at, end, count = [], 0, float(NOW), NOW, 0
        for length, delay, other_job in closes:
            start, end = end, end + length
            at = max(at + 1, end + 120) + delay
            queue, lost = enqueue(
                queue,
                job="backfill" if other_job else "live",
                start=start,
                end=end,
                unit=1,
                opened=at - 10,
                closed=at,
                ages=(1800.0, 86400.0),
            )
            dropped += lost
            count += 2
            assert len(queue) <= QUEUE_LIMIT
        kept = sum(len(e["ages"]) for e in queue)
        assert kept + dropped <= count and kept + dropped >= len(queue)
        assert dropped == 0 or len(queue) == QUEUE_LIMIT

    check()


def test_an_id_and_its_text_are_two_ids_in_a_digest():
    import json

    from hypothesis import given
    from hypothesis import strategies as st

    from audit_collector.evidence import manifest as manifests

    @given(st.integers() | st.floats(allow_nan=False) | st.booleans())
    def check(value):
        assert manifests.id_hash(value) != manifests.id_hash(json.dumps(value))
        assert manifests.ids_digest([value, json.dumps(value)]) != manifests.ids_digest([value, value])

    check()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_forged_manifest_beside_a_signed_place_cannot_bring_events(provider, org, tmp_path):
    """A manifest that copies a signed manifest's place and lists an object of made-up events loses
    the place to the signed one, but is not waved through as superseded: Athena would read it."""
    import gzip
    import hashlib
    import json

    from audit_collector.evidence import manifest as manifests

    with World(provider, org, tmp_path) as world:
        world.history(NOW - DAY, NOW + DAY, 200)
        world.schedule(3, step=900)
        folder = tmp_path / "a"
        documents = {
            k: json.loads((folder / k).read_text()) for k in LocalArchive(folder).keys(f"_manifests/{provider}/")
        }
        key = max((k for k, d in documents.items() if d["events"]), key=lambda k: documents[k]["seq"])
        document = documents[key]
        source = next(o for o in document["objects"] if o["events"])
        event = json.loads(gzip.decompress((folder / source["key"]).read_bytes()).splitlines()[0])
        field = providers.get(provider).id_field
        event[field] = "forged-" + str(event[field])
        body = gzip.compress(json.dumps(event).encode() + b"\n", mtime=0)
        planted = source["key"].rsplit("/", 1)[0] + "/forged-p00000.jsonl.gz"
        (folder / planted).write_bytes(body)
        entry = {
            "key": planted,
            "bytes": len(body),
            "events": 1,
            "sha256": hashlib.sha256(body).hexdigest(),
            "ids_digest": manifests.digest_hex(manifests.ids_digest([event[field]])),
        }
        forged = {**document, "window_id": "forged", "objects": [entry], "events": 1, "ids_digest": entry["ids_digest"]}
        (folder / key.replace(key.rsplit("/", 1)[1], "forged.json")).write_bytes(manifests.encode(forged))
        checkpoint = {provider: world.store.read(provider)["checkpoint"]}
        for kwargs in ({"checker": world.public_key}, {"checkpoints": checkpoint}):
            kinds = [kind for kind, _, _ in world.findings(**kwargs)]
            assert "chain" in kinds, kwargs


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_object_named_for_another_time_is_extra_in_a_verify_from_yesterday(provider, org, tmp_path):
    with World(provider, org, tmp_path) as world:
        world.history(NOW - DAY, NOW + DAY, 200)
        world.schedule(3, step=900)
        day_dir = sorted((tmp_path / "a" / provider).glob("dt=*"))[-1]
        source = sorted(day_dir.glob("*.jsonl.gz"))[0]
        (day_dir / "0-1-p00000.jsonl.gz").write_bytes(source.read_bytes())
        found = world.findings(checker=world.public_key, start=world.clock.now - DAY)
        assert ("extra", f"{provider}/{day_dir.name}/0-1-p00000.jsonl.gz") in [(k, key) for k, key, _ in found]
