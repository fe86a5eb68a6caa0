"""Manifests, the hash chain and ``verify``: a clean archive verifies; each planted fault is found,
with its key and range; the chain survives crashes at every step, reruns and concurrent slices."""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import UTC, datetime

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from audit_collector import cli, providers
from audit_collector.collector import BackfillRequest, Settings
from audit_collector.emulator import Emulator
from audit_collector.errors import ArchiveError
from audit_collector.evidence import manifest
from audit_collector.storage.archive import EMPTY_GZIP, _gzip, decode_object
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.s3 import S3Archive
from audit_collector.storage.state import DynamoDBStore, FileStore
from audit_collector.verify.check import verify_archive

from ..support import (
    BUCKET,
    BUILTIN_PROVIDERS,
    TABLE,
    ArchiveWrapper,
    Crash,
    CrashingArchive,
    CrashingStore,
    FakeClock,
    StepCounter,
    add_history,
    assert_exactly_once,
    create_aws_resources,
    run_once,
)

PROVIDERS = BUILTIN_PROVIDERS
NOW = int(datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp())
SETTINGS = Settings(settle_seconds=120, initial_lookback_days=2, page_limit=20, max_object_bytes=6000)


@pytest.fixture
def clock():
    return FakeClock(start=float(NOW))


@pytest.fixture
def emu(clock):
    with Emulator(clock=clock.time) as emulator:
        yield emulator


def collected(provider, emu, org, clock, store, archive, runs=3, count=400):
    """History over two days, then a few scheduled runs five minutes apart."""
    events = add_history(emu, org, provider, NOW - 2 * 86400 + 600, NOW + 3600, count)
    events += add_history(emu, org, provider, NOW - 600, NOW + 3600, 120, seed=5)  # live runs find some
    for _ in range(runs):
        assert run_once(provider, emu, store=store, archive=archive, clock=clock, settings=SETTINGS).complete
        clock.advance(300)
    return events


def check(archive, store=None, provider=None, **kwargs):
    names = [provider] if provider else PROVIDERS
    checkpoints = {n: store.read(n).get("checkpoint", {}) for n in names} if store else None
    return verify_archive(archive, "", [providers.get(n) for n in names], checkpoints=checkpoints, **kwargs)


def manifests_of(archive, provider, prefix=""):
    out = []
    for key in archive.keys(f"{prefix}_manifests/{provider}/"):
        out.append((key, json.loads(archive.get(key))))
    return sorted(out, key=lambda m: m[1]["seq"])


def kinds(report):
    return sorted({f.kind for p in report.providers for f in p.findings})


def findings(report, kind):
    return [f for p in report.providers for f in p.findings if f.kind == kind]


@pytest.fixture
def keys(tmp_path):
    """A signing key and the checker an auditor builds from its public half."""
    from audit_collector.evidence.signing import Ed25519Signer, PublicKeyChecker, generate_key

    generate_key(tmp_path / "key.pem")
    return Ed25519Signer.from_file(tmp_path / "key.pem"), PublicKeyChecker.from_file(tmp_path / "key.pem.pub")


@pytest.fixture
def archive_both(emu, org, clock, tmp_path):
    store, archive = FileStore(tmp_path / "archive" / "state.json"), LocalArchive(tmp_path / "archive")
    for provider in PROVIDERS:
        collected(provider, emu, org, clock, store, archive)
    return store, archive, tmp_path / "archive"


# ------------------------------------------------------------------ manifests and the chain

_IDS = st.lists(
    st.one_of(st.text(max_size=40), st.integers(), st.integers(min_value=2**64, max_value=2**80)), max_size=60
)


@given(_IDS, st.randoms())
def test_an_id_digest_is_the_sum_of_each_ids_sha256_whatever_the_order(ids, rng):
    """The digest a manifest records is what anyone recomputes by hand from the ids (verify, an
    auditor's script): the sum, modulo 2**256, of the SHA-256 of each id's text (for a non-string,
    its JSON behind a NUL-framed tag, so that 123 and "123" are two ids)."""
    by_hand = sum(
        int(hashlib.sha256((i if isinstance(i, str) else "\x00json\x00" + json.dumps(i)).encode()).hexdigest(), 16)
        for i in ids
    ) % (1 << 256)
    shuffled = list(ids)
    rng.shuffle(shuffled)
    assert manifest.ids_digest(ids) == manifest.ids_digest(shuffled) == by_hand
    strings = [str(i) for i in ids]  # the fast path (every id a string) and the general one agree
    assert manifest.ids_digest(strings) == sum(map(manifest.id_hash, strings)) % (1 << 256)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_closed_window_has_a_manifest_and_they_form_one_chain(provider, archive_both):
    store, archive, _ = archive_both
    found = manifests_of(archive, provider)
    assert [m["seq"] for _, m in found] == list(range(1, len(found) + 1))
    assert found[0][1]["prev"] is None
    for (before_key, _), (_, after) in itertools.pairwise(found):
        assert after["prev"] == hashlib.sha256(archive.get(before_key)).hexdigest()
    head = store.read(provider)["checkpoint"]["chain"]
    assert head == {
        "head": hashlib.sha256(archive.get(found[-1][0])).hexdigest(),
        "count": len(found),
        "key": found[-1][0],
    }
    listed = {o["key"]: o for _, m in found for o in m["objects"]}
    assert set(listed) == set(archive.keys(f"{provider}/"))  # every data object in a manifest
    for key, entry in listed.items():
        body = archive.get(key)
        assert entry["sha256"] == hashlib.sha256(body).hexdigest() and entry["bytes"] == len(body)
        assert entry["events"] == len(list(decode_object(body)))
    ranges = [(m["range_start"], m["range_end"]) for _, m in found]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))  # contiguous windows
    last = found[-1][1]
    assert last["range_end"] == store.read(provider)["checkpoint"]["jobs"]["live"]["watermark"]
    assert {
        "provider",
        "job",
        "window_id",
        "first_event",
        "last_event",
        "written_at",
        "collector_version",
        "ids_digest",
        "events",
    } <= set(last)


def test_a_clean_archive_verifies_and_the_cli_exits_0(archive_both, capsys):
    store, archive, folder = archive_both
    report = check(archive, store)
    assert report.clean, [f.as_dict() for p in report.providers for f in p.findings]
    assert all(p.objects > 0 and p.events > 0 for p in report.providers)
    assert cli.main(["verify", "--archive", str(folder), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "slack: clean" in out and "asana: clean" in out and "verify: clean" in out
    assert cli.main(["verify", "--archive", str(folder), "--format", "json", "--provider", "asana"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["clean"] and [p["provider"] for p in document["providers"]] == ["asana"]


def test_bad_usage_exits_2(archive_both, tmp_path):
    _, _, folder = archive_both
    assert cli.main(["verify", "--archive", str(folder), "--from", "yesterday"]) == 2
    assert cli.main(["verify", "--archive", str(folder), "--from", "2026-11-20", "--to", "2026-11-19"]) == 2
    assert cli.main(["verify", "--archive", str(tmp_path / "nowhere")]) == 2
    assert cli.main(["verify", "--provider", "nope"]) == 2


# ------------------------------------------------------------------ planted findings


def middle_manifest(archive, provider):
    found = manifests_of(archive, provider)
    with_objects = [(k, m) for k, m in found[1:-1] if m["objects"]]
    return with_objects[len(with_objects) // 2]


def test_a_deleted_object_is_missing_with_its_key_and_range(archive_both, capsys):
    store, archive, folder = archive_both
    _key, manifest = middle_manifest(archive, "slack")
    victim = manifest["objects"][0]["key"]
    (folder / victim).unlink()
    report = check(archive, store)
    assert kinds(report) == ["missing"]
    (found,) = findings(report, "missing")
    assert found.key == victim and found.provider == "slack"
    assert found.start == manifest["range_start_iso"][:19] + "Z"
    assert cli.main(["verify", "--archive", str(folder), "--no-progress"]) == 1
    assert victim in capsys.readouterr().out


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_flipped_byte_is_altered(provider, archive_both):
    store, archive, folder = archive_both
    _, manifest = middle_manifest(archive, provider)
    victim = folder / manifest["objects"][-1]["key"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    report = check(archive, store, provider)
    assert "altered" in kinds(report) and set(kinds(report)) <= {"altered"}
    assert {f.key for f in findings(report, "altered")} == {manifest["objects"][-1]["key"]}


def test_an_object_rewritten_with_an_event_less_is_altered_by_count(archive_both):
    store, archive, folder = archive_both
    _, manifest = middle_manifest(archive, "asana")
    entry = manifest["objects"][0]
    lines = [json.dumps(e, separators=(",", ":")).encode() for e in decode_object(archive.get(entry["key"]))]
    (folder / entry["key"]).write_bytes(_gzip(b"\n".join(lines[1:]) + b"\n"))
    (f,) = findings(check(archive, store, "asana"), "altered")
    assert f.key == entry["key"] and "holds" in f.detail and str(entry["events"]) in f.detail


def test_an_extra_object_and_a_duplicate_event_are_found(archive_both):
    store, archive, folder = archive_both
    _, manifest = middle_manifest(archive, "slack")
    source = manifest["objects"][0]["key"]
    copy = source.replace("-p00000", "-p00099")
    (folder / copy).write_bytes(EMPTY_GZIP)
    report = check(archive, store, "slack")
    assert kinds(report) == ["extra"] and findings(report, "extra")[0].key == copy
    # An object that repeats events archived elsewhere, listed by a (forged) manifest: duplicates.
    other_key, other = middle_manifest(archive, "asana")
    (folder / copy).unlink()
    dup_key = other["objects"][0]["key"].replace("-p00000", "-p00077")
    (folder / dup_key).write_bytes(archive.get(other["objects"][0]["key"]))
    report = check(archive, store, "asana")
    assert "extra" in kinds(report)
    forged = dict(other, objects=[*other["objects"], dict(other["objects"][0], key=dup_key)])
    (folder / other_key).write_text(json.dumps(forged))
    report = check(archive, store, "asana")
    assert {"duplicate", "chain"} <= set(kinds(report))
    assert all(f.key == dup_key for f in findings(report, "duplicate"))


def test_a_deleted_manifest_breaks_the_chain_and_leaves_a_gap(archive_both):
    store, archive, folder = archive_both
    key, manifest = middle_manifest(archive, "slack")
    (folder / key).unlink()
    report = check(archive, store, "slack")
    assert set(kinds(report)) == {"chain", "gap", "extra"}
    (gap,) = findings(report, "gap")
    assert (gap.start, gap.end) == (manifest["range_start_iso"][:19] + "Z", manifest["range_end_iso"][:19] + "Z")
    assert {f.key for f in findings(report, "extra")} == {o["key"] for o in manifest["objects"]}
    assert "missing" in findings(report, "chain")[0].detail


def test_an_edited_manifest_breaks_the_chain(archive_both):
    store, archive, folder = archive_both
    key, manifest = middle_manifest(archive, "asana")
    edited = dict(manifest, events=manifest["events"] + 1)  # a plausible edit: the count, nothing else
    (folder / key).write_text(json.dumps(edited, sort_keys=True, separators=(",", ":")) + "\n")
    report = check(archive, store, "asana")
    assert kinds(report) == ["altered", "chain"]  # its totals are not its objects', and the next link breaks
    (f,) = findings(report, "chain")
    assert key in f.detail and f.start == manifest["range_start_iso"][:19] + "Z"


def test_the_last_manifest_deleted_or_edited_is_caught_by_the_checkpoint_head(archive_both):
    store, archive, folder = archive_both
    key, manifest = manifests_of(archive, "slack")[-1]
    (folder / key).write_text(json.dumps(dict(manifest, written_at="2020-01-01T00:00:00.000Z")))
    assert kinds(check(archive, store, "slack")) == ["chain"]
    (folder / key).unlink()
    report = check(archive, store, "slack")
    assert "chain" in kinds(report) and "deleted" in findings(report, "chain")[0].detail
    assert "gap" in kinds(report)  # the watermark is past what the manifests cover


def test_a_removed_window_is_a_gap_with_its_range(archive_both, capsys):
    store, archive, folder = archive_both
    key, manifest = middle_manifest(archive, "asana")
    for entry in manifest["objects"]:
        (folder / entry["key"]).unlink()
    (folder / key).unlink()
    report = check(archive, store, "asana")
    assert set(kinds(report)) == {"chain", "gap"}
    (gap,) = findings(report, "gap")
    assert gap.start == manifest["range_start_iso"][:19] + "Z"
    assert cli.main(["verify", "--archive", str(folder), "--provider", "asana", "--format", "json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["providers"][0]["counts"]["gap"] == 1


def test_from_and_to_limit_the_check(archive_both):
    store, archive, folder = archive_both
    _key, manifest = middle_manifest(archive, "slack")
    (folder / manifest["objects"][0]["key"]).unlink()
    start = manifest["range_start"]
    assert kinds(check(archive, store, "slack", start=start, end=start + 60)) == ["missing"]
    assert check(archive, store, "slack", start=manifest["range_end"]).clean
    assert check(archive, store, "slack", end=start).clean


# ------------------------------------------------------------------ crashes, reruns, slices, S3


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_chain_survives_a_crash_at_every_step(provider, org, tmp_path):
    settings = Settings(initial_lookback_days=2, page_limit=15, max_object_bytes=8000)
    clock = FakeClock(start=float(NOW))
    with Emulator(clock=clock.time) as emu:
        # The first event lies after the rerun's lookback origin: a rerun 1000 s later that finds no
        # checkpoint (a crash before the first save) rightly starts its lookback 1000 s later too.
        events = add_history(emu, org, provider, NOW - 2 * 86400 + 1800, NOW - 600, 120)
        reference = StepCounter()
        run_once(
            provider,
            emu,
            store=CrashingStore(FileStore(tmp_path / "ref.json"), reference),
            archive=CrashingArchive(LocalArchive(tmp_path / "ref"), reference),
            clock=clock,
            settings=settings,
        )
        for crash_at in range(1, reference.count + 1):
            steps = StepCounter(crash_at=crash_at)
            inner_store, inner_archive = (
                FileStore(tmp_path / f"s{crash_at}.json"),
                LocalArchive(tmp_path / f"a{crash_at}"),
            )
            store, archive = CrashingStore(inner_store, steps), CrashingArchive(inner_archive, steps)
            with pytest.raises(Crash):
                run_once(provider, emu, store=store, archive=archive, clock=clock, settings=settings, owner="dead")
            clock.advance(1000)
            steps.crash_at = None
            assert run_once(provider, emu, store=store, archive=archive, clock=clock, settings=settings).complete
            assert_exactly_once(inner_archive, provider, [e for e in events])
            report = check(inner_archive, inner_store, provider)
            assert report.clean, (crash_at, [f.as_dict() for p in report.providers for f in p.findings])
            clock.advance(-1000)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_from_the_bucket_alone_only_the_live_job_s_next_window_may_wait_for_a_head(
    provider, emu, org, clock, tmp_path, keys
):
    """Without the state store, an object no manifest lists may be the live window a killed run
    was writing: only one named as starting exactly where the newest head's watermark says. Any
    other name past the watermark (a later start, the far future) is extra, and so is that one
    once a later head has moved on."""
    signer, checker = keys
    store, archive = FileStore(tmp_path / "s.json"), LocalArchive(tmp_path / "a")
    add_history(emu, org, provider, NOW - 86400, NOW + 7200, 200)
    assert run_once(provider, emu, store=store, archive=archive, clock=clock, signer=signer).complete
    descriptor = providers.get(provider)
    newest = max(archive.keys("_chain/"), key=lambda k: k.rpartition("/")[2])
    watermark = json.loads(archive.get(newest))["watermark"]
    body = archive.get(next(k for k in archive.keys(f"{provider}/dt=") if k.endswith(".jsonl.gz")))

    def plant(start, end):
        day = datetime.fromtimestamp(start / descriptor.units_per_second, UTC).strftime("%Y-%m-%d")
        key = f"{provider}/dt={day}/{start}-{end}-p00000.jsonl.gz"
        archive.put(key, body)
        return key

    def extra():
        report = verify_archive(archive, "", [descriptor], checker=checker)
        return sorted(f.key for p in report.providers for f in p.failing if f.kind == "extra")

    unit = descriptor.units_per_second
    next_window = plant(watermark, watermark + 60 * unit)
    later = plant(watermark + 1, watermark + 60 * unit)
    far = plant(watermark + 400 * 86400 * unit, watermark + 401 * 86400 * unit)
    assert extra() == sorted([later, far])
    clock.advance(600)
    assert run_once(provider, emu, store=store, archive=archive, clock=clock, signer=signer).complete
    assert next_window in extra()  # the next head's watermark moved past it, and no manifest lists it


class TakenHeadKey(ArchiveWrapper):
    """The first head key a run picks is taken (another run's head of that place, the same
    millisecond); and, as under the collector's role, nothing under ``_chain/`` can be read."""

    taken = False

    def _put(self, key, body, replaces):
        if key.startswith("_chain/") and not self.taken:
            self.taken = True
            self.inner._put(key, body, None)  # the other run's head
        self.inner._put(key, body, replaces)

    def get(self, key):
        if key.startswith("_chain/"):
            raise ArchiveError(f"AccessDenied: the collector's role reads no {key}")
        return self.inner.get(key)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_head_whose_key_is_taken_is_signed_a_millisecond_later_without_reading_the_other(
    provider, emu, org, clock, tmp_path, keys
):
    signer, checker = keys
    store, inner = FileStore(tmp_path / "s.json"), LocalArchive(tmp_path / "a")
    add_history(emu, org, provider, NOW - 86400, NOW - 600, 100)
    archive = TakenHeadKey(inner)
    assert run_once(provider, emu, store=store, archive=archive, clock=clock, signer=signer).complete
    assert archive.taken
    stamps = sorted(int(k.rpartition("-")[2].removesuffix(".json")) for k in inner.keys(f"_chain/{provider}/"))
    assert stamps == [round(clock.now * 1000), round(clock.now * 1000) + 1]
    report = verify_archive(inner, "", [providers.get(provider)], checker=checker)
    assert report.clean, [f.as_dict() for p in report.providers for f in p.findings]


class Killed(StepCounter):
    """A hard kill at step ``crash_at``: nothing is written after it (the run's closing head
    included), where a ``StepCounter`` crash lets the run's ``finally`` still sign its head."""

    dead = False

    def tick(self, what: str) -> None:
        if self.dead:
            raise Crash("the process is gone")
        self.dead = self.crash_at is not None and self.count + 1 == self.crash_at
        super().tick(what)


class KilledArchive(CrashingArchive):
    def _put(self, key, body, replaces):
        if self.steps.dead:
            raise Crash("the process is gone")
        super()._put(key, body, replaces)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("job", ["backfill", "live catch-up"])
def test_right_after_a_crash_the_bucket_and_the_key_alone_find_nothing(provider, job, org, tmp_path, keys):
    """Killed at any step of a run that opens several windows after a signed head exists, before
    any rerun: verify from the bucket alone, with or without the public key, finds nothing. A
    backfill window is named in a signed head before its first part; the live job's windows lie
    past the head's watermark."""
    signer, checker = keys
    small = Settings(initial_lookback_days=1, page_limit=15, max_object_bytes=3000, backfill_slices=1)
    clock = FakeClock(start=float(NOW))
    later = NOW + (3 * 86400 if job == "live catch-up" else 300)  # days without a run: several windows
    with Emulator(clock=clock.time) as emu:
        add_history(emu, org, provider, NOW - 6 * 86400, later - 600, 300)
        # Up to an hour past where the live job begins (a day back): no instant between the two jobs.
        span = [providers.get(provider).to_units(t) for t in (NOW - 4 * 86400, NOW - 86400 + 3600)]
        scripted = {"backfill": BackfillRequest(*span)} if job == "backfill" else {}

        def run_after_a_head(name, steps):
            store, archive = FileStore(tmp_path / f"{name}.json"), LocalArchive(tmp_path / name)
            clock.now = float(NOW)
            run_once(provider, emu, store=store, archive=archive, clock=clock, settings=small, signer=signer)
            clock.now = float(later)
            crashing = {"store": CrashingStore(store, steps), "archive": KilledArchive(archive, steps)}
            run_once(provider, emu, clock=clock, settings=small, signer=signer, **crashing, **scripted)
            return archive

        reference = Killed()
        run_after_a_head("ref", reference)
        assert reference.count > 8
        for k in range(1, reference.count + 1):
            with pytest.raises(Crash):
                run_after_a_head(f"a{k}", Killed(crash_at=k))
            archive = LocalArchive(tmp_path / f"a{k}")
            for key in (None, checker):
                report = verify_archive(archive, "", [providers.get(provider)], checker=key)
                found = [(f.kind, f.key, f.detail) for p in report.providers for f in p.failing]
                assert found == [], (k, reference.count, "public key" if key else "archive alone", found)


def test_concurrent_backfill_slices_extend_one_chain(org, tmp_path):
    clock = FakeClock(start=float(NOW))
    with Emulator(clock=clock.time) as emu:
        add_history(emu, org, "asana", NOW - 10 * 86400, NOW - 3600, 600)
        store, archive = FileStore(tmp_path / "s.json"), LocalArchive(tmp_path / "a")
        settings = Settings(initial_lookback_days=1, page_limit=20, max_object_bytes=6000, backfill_slices=4)
        request = BackfillRequest((NOW - 9 * 86400) * 1000, (NOW - 2 * 86400) * 1000)
        result = run_once("asana", emu, store=store, archive=archive, clock=clock, settings=settings, backfill=request)
        assert result.complete and result.backfill["done"]
        found = manifests_of(archive, "asana")
        assert {m["job"] for _, m in found} >= {"live", f"{result.backfill['id']}.0", f"{result.backfill['id']}.3"}
        report = check(archive, store, "asana")
        # Between the backfill's end and the live job's start, nobody collected: a real gap.
        assert kinds(report) == ["gap"]
        (gap,) = findings(report, "gap")
        assert gap.start == "2026-11-18T12:00:00Z" and gap.end == "2026-11-19T12:00:00Z"


def test_s3_archive_verifies_and_quick_uses_stored_checksums(emu, org, clock, capsys):
    with mock_aws():
        create_aws_resources()
        store, archive = DynamoDBStore(TABLE), S3Archive(BUCKET)
        collected("slack", emu, org, clock, store, archive, runs=2)
        s3 = boto3.client("s3")
        key = next(iter(archive.keys("slack/")))
        attributes = s3.get_object_attributes(Bucket=BUCKET, Key=key, ObjectAttributes=["Checksum"])
        assert attributes["Checksum"]["ChecksumSHA256"]  # sent with the put, kept by S3
        assert check(archive, store, "slack").clean and check(archive, store, "slack", quick=True).clean
        args = ["verify", "--archive", f"s3://{BUCKET}", "--state", f"dynamodb://{TABLE}", "--provider", "slack"]
        assert cli.main([*args, "--quick", "--no-progress"]) == 0
        body = bytearray(archive.get(key))
        body[-12] ^= 0xFF
        s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(body), ChecksumAlgorithm="SHA256")
        report = check(archive, store, "slack", quick=True)
        assert kinds(report) == ["altered"] and findings(report, "altered")[0].key == key
        assert cli.main([*args, "--quick", "--no-progress"]) == 1
        assert key in capsys.readouterr().out


# ------------------------------------------------------------------ Object Lock


@pytest.mark.parametrize("mode", ["COMPLIANCE", "GOVERNANCE"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_object_lock_buckets_work_end_to_end(mode, provider, emu, org, clock):
    """Writes (every put carries a checksum, which S3 requires here), a crash between a put and its
    checkpoint then the rerun's rewrite (a new version of the same key: locked versions are never
    overwritten), and verify reading the current versions."""
    with mock_aws():
        create_aws_resources()
        s3 = boto3.client("s3")
        locked = f"locked-{mode.lower()}"
        s3.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
        s3.put_object_lock_configuration(
            Bucket=locked,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": mode, "Days": 30}},
            },
        )
        events = add_history(emu, org, provider, NOW - 2 * 86400 + 600, NOW - 600, 300)
        steps = StepCounter(crash_at=7)
        inner_store, inner_archive = DynamoDBStore(TABLE), S3Archive(locked)
        with pytest.raises(Crash):  # dies right after its 7th step landed
            run_once(
                provider,
                emu,
                store=CrashingStore(inner_store, steps),
                archive=CrashingArchive(inner_archive, steps),
                clock=clock,
                settings=SETTINGS,
                owner="dead",
            )
        clock.advance(1000)
        assert run_once(
            provider, emu, store=inner_store, archive=inner_archive, clock=clock, settings=SETTINGS
        ).complete
        assert_exactly_once(inner_archive, provider, [e for e in events])
        versions = s3.list_object_versions(Bucket=locked).get("Versions", [])
        rewritten = {v["Key"] for v in versions if not v["IsLatest"]}
        assert rewritten  # the rerun replaced what the dead run wrote: a new version, the old one kept
        head = s3.head_object(Bucket=locked, Key=sorted(inner_archive.keys(f"{provider}/"))[0])
        assert head["ObjectLockMode"] == mode
        report = check(inner_archive, inner_store, provider)
        assert report.clean, [f.as_dict() for p in report.providers for f in p.findings]
        assert check(inner_archive, inner_store, provider, quick=True).clean


def test_the_scheduled_verification_publishes_findings_as_a_metric(emu, org, clock, capsys):
    from audit_collector.aws import verify_handler
    from audit_collector.errors import ConfigError

    with mock_aws():
        create_aws_resources()
        store, archive = DynamoDBStore(TABLE), S3Archive(BUCKET, client=boto3.client("s3"))
        collected("asana", emu, org, clock, store, archive, runs=2)
        event = {"bucket": BUCKET, "prefix": "", "state_table": TABLE, "days": 3660}

        def metrics():
            lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
            return {m["provider"]: m["VerifyFindings"] for m in lines if "_aws" in m}, lines

        assert verify_handler.lambda_handler(event, None)["clean"]
        none = dict.fromkeys(providers.names(), 0)  # every registered provider reports, found or not
        assert metrics()[0] == none
        victim = next(iter(archive.keys("asana/")))
        boto3.client("s3").delete_object(Bucket=BUCKET, Key=victim)
        result = verify_handler.lambda_handler(event, None)
        assert not result["clean"]
        counts, lines = metrics()
        assert counts == {**none, "asana": 1}
        assert any(line.get("kind") == "missing" and line.get("key") == victim for line in lines)
        with pytest.raises(ConfigError):
            verify_handler.lambda_handler({"bucket": BUCKET}, None)


def test_manifests_are_a_table_locally_as_in_athena(archive_both):
    from audit_collector.query import run_query

    _store, archive, folder = archive_both
    _names, rows = run_query(
        folder, "SELECT source, count(*), sum(events), max(seq) FROM audit_manifests GROUP BY source ORDER BY source"
    )
    events = {n: sum(m["events"] for _, m in manifests_of(archive, n)) for n in PROVIDERS}
    assert rows == [
        (n, len(manifests_of(archive, n)), events[n], len(manifests_of(archive, n))) for n in sorted(PROVIDERS)
    ]
    for name in PROVIDERS:  # the manifests' counts are what each provider's data table holds
        _, (row,) = run_query(folder, f"SELECT count(*) FROM {providers.get(name).table}")
        assert row[0] == events[name], name
