"""Helpers shared by the collector tests: AWS set-up from template.yaml, crashes, archive checks."""

from __future__ import annotations

import dataclasses
import importlib
import json
import threading
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import yaml

from audit_collector import providers
from audit_collector.collector import BackfillRequest, Budget, Settings
from audit_collector.emulator import Emulator, served_text
from audit_collector.http_retry import Clock
from audit_collector.storage.archive import ArchiveWriter, decode_object
from audit_collector.storage.state import CheckpointStore
from audit_collector.wiring import collect_provider

ROOT = Path(__file__).resolve().parents[1]
# The built-in providers, from the registry's own list: the shared tests run once for each, so a
# new built-in provider gets them by its registry line alone (plug-ins registered later do not).
BUILTIN_PROVIDERS: tuple[str, ...] = tuple(importlib.import_module(m).DESCRIPTOR.name for m in providers.BUILTIN)
BUCKET = "audit-archive-test"
TABLE = "audit-state-test"


class FakeClock(Clock):
    """Time that moves only when someone sleeps (or a test advances it)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.mono = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


class SlowClock(FakeClock):
    """Every look at the monotonic clock costs ``step`` seconds of budget: runs end part-way."""

    def __init__(self, start: float = 1_800_000_000.0, step: float = 2.0) -> None:
        super().__init__(start)
        self.step = step

    def monotonic(self) -> float:
        self.mono += self.step
        return self.mono


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML: intrinsic tags (!Ref, !Sub, …) become {"Fn": value} mappings."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


_CfnLoader.add_multi_constructor("!", _tag)


def parse_template(text: str) -> dict[str, Any]:
    """CloudFormation YAML text as data, each short tag a {"Fn": value} mapping."""
    return yaml.load(text, Loader=_CfnLoader)


def load_template() -> dict[str, Any]:
    return parse_template((ROOT / "template.yaml").read_text())


def create_state_table(client, name: str = TABLE) -> None:
    """The table exactly as template.yaml defines it, so code and template cannot drift."""
    props = load_template()["Resources"]["StateTable"]["Properties"]
    client.create_table(
        TableName=name,
        BillingMode=props["BillingMode"],
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
    )


def create_aws_resources(region: str = "us-east-1") -> None:
    create_state_table(boto3.client("dynamodb", region_name=region))
    boto3.client("s3", region_name=region).create_bucket(Bucket=BUCKET)


class Crash(BaseException):
    """A process dying: not an Exception, so nothing in the code under test can catch it."""


class StoreWrapper(CheckpointStore):
    """Passes every call to ``inner``; a subclass hooks the steps it watches."""

    def __init__(self, inner: CheckpointStore) -> None:
        self.inner = inner

    def _acquire(self, *args):
        return self.inner._acquire(*args)

    def _save(self, lease, checkpoint, new_version):
        self.inner._save(lease, checkpoint, new_version)

    def _renew(self, lease, expires_at, now):
        self.inner._renew(lease, expires_at, now)

    def _release(self, lease):
        self.inner._release(lease)

    def _read(self, provider):
        return self.inner._read(provider)

    def describe(self):
        return self.inner.describe()


class ArchiveWrapper(ArchiveWriter):
    """Passes every call to ``inner``; a subclass hooks the steps it watches."""

    def __init__(self, inner: ArchiveWriter) -> None:
        self.inner = inner

    def _version(self, key):
        return self.inner._version(key)

    def _put(self, key, body, replaces):
        self.inner._put(key, body, replaces)

    def _create(self, key, body):
        return self.inner._create(key, body)

    def keys(self, prefix=""):
        return self.inner.keys(prefix)

    def get(self, key):
        return self.inner.get(key)

    def describe(self, key=""):
        return self.inner.describe(key)


class CrashingStore(StoreWrapper):
    """Wraps a store; the ``crash_at``-th step (a save, counted with the archive's puts) dies."""

    def __init__(self, inner: CheckpointStore, steps: StepCounter) -> None:
        super().__init__(inner)
        self.steps = steps

    def _save(self, lease, checkpoint, new_version):
        self.steps.tick("save")
        self.inner._save(lease, checkpoint, new_version)

    def _release(self, lease):
        pass  # a dead process releases nothing: the lease must expire by itself


class CrashingArchive(ArchiveWrapper):
    def __init__(self, inner: ArchiveWriter, steps: StepCounter, *, after_write: bool = True) -> None:
        super().__init__(inner)
        self.steps, self.after_write = steps, after_write

    def _put(self, key, body, replaces):
        if not self.after_write:
            self.steps.tick("put")
        self.inner._put(key, body, replaces)
        if self.after_write:
            self.steps.tick("put")  # dies right after the object landed, before the checkpoint


class Gate:
    """Holds the paused run's thread at its ``at``-th step until released."""

    def __init__(self, at: int) -> None:
        self.at, self.count = at, 0
        self.reached, self.go = threading.Event(), threading.Event()

    def step(self) -> None:
        self.count += 1
        if self.count == self.at:
            self.reached.set()
            self.go.wait(30)


class GatedStore(StoreWrapper):
    def __init__(self, inner: CheckpointStore, gate: Gate) -> None:
        super().__init__(inner)
        self.gate = gate

    def _save(self, lease, checkpoint, new_version):
        self.gate.step()
        self.inner._save(lease, checkpoint, new_version)

    def _renew(self, lease, expires_at, now):
        self.gate.step()
        self.inner._renew(lease, expires_at, now)


class GatedArchive(ArchiveWrapper):
    def __init__(self, inner: ArchiveWriter, gate: Gate) -> None:
        super().__init__(inner)
        self.gate = gate

    def _version(self, key):
        self.gate.step()
        return self.inner._version(key)

    def _put(self, key, body, replaces):
        self.gate.step()
        self.inner._put(key, body, replaces)


@dataclass
class StepCounter:
    crash_at: int | None = None
    count: int = 0

    def tick(self, what: str) -> None:
        self.count += 1
        if self.crash_at is not None and self.count == self.crash_at:
            raise Crash(f"crash at step {self.count} ({what})")


class FakeContext:
    """What Powertools and the handler read from a Lambda context."""

    function_name = "audit-collector"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:audit-collector"
    memory_limit_in_mb = 512
    aws_request_id = "req-00000000"
    log_group_name = "/aws/lambda/audit-collector"
    log_stream_name = "stream"

    def __init__(self, remaining_ms: int = 900_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def run_once(
    provider: str,
    emu: Emulator,
    *,
    store: CheckpointStore,
    archive: ArchiveWriter,
    clock,
    settings: Settings | None = None,
    budget_seconds: float = 900,
    owner: str | None = None,
    prefix: str = "",
    token: str | None = None,
    backfill: BackfillRequest | None = None,
    pace: bool = False,
    signer=None,
):
    """One collection run against the emulator, as the handler wires it (minus Secrets Manager).

    Pacing is off unless asked for: these tests move a fake clock themselves."""
    settings = settings or Settings(
        settle_seconds=120,
        initial_lookback_days=2,
        page_limit=small_page(provider),
        max_object_bytes=40_000,
    )
    if not pace:
        settings = dataclasses.replace(settings, paced=False)
    budget = Budget.for_run(clock, budget_seconds, settings)
    api = emu.api(provider)
    return collect_provider(
        providers.get(provider),
        token=token or api.token,
        base_url=api.base_url,
        options=api.options,
        store=store,
        archive=archive,
        prefix=prefix,
        settings=settings,
        clock=clock,
        budget=budget,
        owner=owner,
        backfill=backfill,
        signer=signer,
    )


def live_watermark(store: CheckpointStore, provider: str) -> int | None:
    return store.read(provider).get("checkpoint", {}).get("jobs", {}).get("live", {}).get("watermark")


def archived(archive: ArchiveWriter, provider: str, prefix: str = "") -> list[tuple[str, dict]]:
    """(dt, event) for every line of every object, in key order."""
    out = []
    for key in sorted(archive.keys(f"{prefix}{provider}/")):
        dt = key.split("/dt=")[1].split("/")[0]
        out.extend((dt, event) for event in decode_object(archive.get(key)))
    return out


def small_page(provider: str) -> int:
    """The page size ``run_once`` asks for by default: a fifth of the API's largest page, at most
    50 (Slack: 50, Asana: 20), so that the tests' few hundred events take several pages."""
    return min(50, providers.get(provider).largest_page // 5)


def event_id(provider: str, event: dict) -> str:
    return providers.get(provider).event_id(event)


def event_dt(provider: str, event: dict) -> str:
    """The event's UTC date, as the descriptor reads it: the ``dt`` partition it belongs in."""
    return providers.get(provider).event_date(event)


def archived_text(archive: ArchiveWriter, provider: str, prefix: str = "") -> dict[str, list[bytes]]:
    """Every archived line, by event id: the JSON text itself, to compare with what was served."""
    out: dict[str, list[bytes]] = {}
    for key in archive.keys(f"{prefix}{provider}/"):
        for line in zlib.decompress(archive.get(key), 31).split(b"\n")[:-1]:
            out.setdefault(event_id(provider, json.loads(line)), []).append(line)
    return out


def assert_exactly_once(archive: ArchiveWriter, provider: str, expected: list[dict], prefix: str = "") -> None:
    """Every expected event once, nothing else, each in its own dt, byte-for-byte as the emulator
    served it."""
    got = archived(archive, provider, prefix)
    text = archived_text(archive, provider, prefix)
    counts = Counter(event_id(provider, e) for _, e in got)
    duplicated = {i: n for i, n in counts.items() if n > 1}
    want = {event_id(provider, e): e for e in expected}
    lost = set(want) - set(counts)
    extra = set(counts) - set(want)
    misplaced = [event_id(provider, e) for dt, e in got if dt != event_dt(provider, e)]
    altered = [i for i, lines in text.items() if i in want and set(lines) != {served_text(provider, want[i])}]
    assert not (duplicated or lost or extra or misplaced or altered), (
        f"duplicated={len(duplicated)} lost={len(lost)} extra={len(extra)} misplaced={len(misplaced)} "
        f"altered={len(altered)} (of {len(want)}): e.g. lost {sorted(lost)[:3]} dup {list(duplicated)[:3]}"
    )


def add_history(emu: Emulator, org, provider: str, start: int, end: int, count: int, seed: int = 1) -> list[dict]:
    """Generated events with times in [start, end) seconds, served by the emulator; returns them."""
    return add_late(emu, org, provider, start, end, count, lag=0.0, seed=seed)


def written(archive: ArchiveWriter) -> list[str]:
    """Every key a run wrote, less the state-store marker every run claims first."""
    return [k for k in archive.keys("") if not k.startswith("_audit_collector/")]


def event_time(provider: str, event: dict) -> float:
    """The event's instant in epoch seconds, as the descriptor reads it."""
    return providers.get(provider).event_seconds(event)


def add_late(emu: Emulator, org, provider: str, start: int, end: int, count: int, lag: float, seed: int) -> list[dict]:
    """Events in [start, end) seconds that reach the API ``lag`` seconds after their own time."""
    api = emu.api(provider)
    events = api.generate(org, start, end, count, seed=seed)
    api.add(events, lag=lag)
    return events
