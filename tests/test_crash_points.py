"""Crash-point enumeration (issue 23), in the spirit of ALICE and FoundationDB's simulation.

For one scripted run of each kind (a scheduled collection of each provider, a backfill slice, a
sweep pass), against moto_server on loopback and the emulator: count the run's writes at the boto3
call (S3 PutObject, CompleteMultipartUpload, DeleteObject; DynamoDB PutItem, UpdateItem, DeleteItem,
TransactWriteItems). Then, for every k, run it again in a child process that

- dies (``os._exit``) right after write k landed: the process never learns it did ("after"),
- dies just before write k is sent ("before"),
- or sees write k fail and goes on ("failed"),

then let the next scheduled runs drain, and check: every event exactly once, and ``verify`` with
0 findings, with and without the state store, with and without ``--from``, and from the bucket
and the public key alone.

``make test`` runs a sample of the crash points (the first and last write of each mode, and a
stride between); ``CRASH_POINTS=all`` runs them all (``make crash-points``). The counts are printed.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError

from audit_collector import providers
from audit_collector.collector import BackfillRequest, Settings
from audit_collector.emulator import Emulator
from audit_collector.evidence.signing import Ed25519Signer, PublicKeyChecker, generate_key
from audit_collector.storage.keys import heads_folder, is_head_key
from audit_collector.storage.s3 import S3Archive
from audit_collector.storage.state import DynamoDBStore
from audit_collector.verify.check import verify_archive

from .support import FakeClock, add_history, add_late, assert_exactly_once, create_state_table, event_time, run_once

NOW = int(datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp())
DAY = 86400
SETTINGS = Settings(
    settle_seconds=120,
    initial_lookback_days=0.5,
    page_limit=20,
    max_object_bytes=4000,
    sweep_after_seconds=(1800, 86400),
)
WRITES = {
    "s3": {"PutObject", "CompleteMultipartUpload", "DeleteObject", "DeleteObjects"},
    "dynamodb": {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"},
}
FULL = os.environ.get("CRASH_POINTS") == "all"
CRASHED = 17


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint():
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    old = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
    try:
        yield os.environ["AWS_ENDPOINT_URL"]
    finally:
        if old is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = old
        server.stop()


class Writes:
    """Counts the run's writes at the boto3 call; at ``at``, crashes (``mode``) or fails the write."""

    def __init__(self, at: int | None = None, mode: str = "after") -> None:
        self.at, self.mode, self.count = at, mode, 0

    def attach(self, client) -> None:
        service = client.meta.service_model.service_name
        for operation in WRITES[service]:
            client.meta.events.register(f"before-call.{service}.{operation}", self.before)
            client.meta.events.register(f"after-call.{service}.{operation}", self.after)

    def before(self, **_):
        self.count += 1
        if self.count == self.at and self.mode == "before":
            os._exit(CRASHED)
        if self.count == self.at and self.mode == "failed":
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "write")

    def after(self, **_):
        if self.count == self.at and self.mode == "after":
            os._exit(CRASHED)  # the write landed; the process never learns it did


class World:
    """A bucket and a table (named by ``name``) in moto_server, the emulator, a signing key."""

    def __init__(self, name, emu, tmp_path):
        self.bucket, self.table, self.emu = f"crash-{name}", f"crash-{name}", emu
        key = tmp_path / "signing.pem"
        if not key.exists():
            generate_key(key)
        self.signer = Ed25519Signer.from_file(key)
        self.checker = PublicKeyChecker.from_file(f"{key}.pub")

    def create(self):
        boto3.client("s3").create_bucket(Bucket=self.bucket)
        create_state_table(boto3.client("dynamodb"), self.table)

    def copy_from(self, other: World) -> None:
        """The other world's archive and state, under this world's names."""
        self.create()
        s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=other.bucket):
            for item in page.get("Contents", []):
                if item["Key"].startswith("_audit_collector/"):
                    continue  # the state-store marker names the other table
                body = s3.get_object(Bucket=other.bucket, Key=item["Key"])["Body"].read()
                s3.put_object(Bucket=self.bucket, Key=item["Key"], Body=body)
        for item in dynamodb.scan(TableName=other.table)["Items"]:
            dynamodb.put_item(TableName=self.table, Item=item)

    def adapters(self, writes: Writes | None = None):
        s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
        if writes is not None:
            writes.attach(s3)
            writes.attach(dynamodb)
        return DynamoDBStore(self.table, client=dynamodb), S3Archive(self.bucket, client=s3)

    def run(self, provider, clock, writes=None, **kwargs):
        store, archive = self.adapters(writes)
        kwargs.setdefault("settings", SETTINGS)
        return run_once(provider, self.emu, store=store, archive=archive, clock=clock, signer=self.signer, **kwargs)

    def in_child(self, provider, clock, writes, **kwargs) -> int:
        """The run in a child process (the fork shares the emulator and moto_server over loopback)."""
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                self.run(provider, clock, writes, owner="dying", **kwargs)
            except BaseException:
                code = 1
            sys.stdout.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    def findings(self, provider, **kwargs):
        _, archive = self.adapters()
        report = verify_archive(archive, "", [providers.get(provider)], **kwargs)
        return [(f.kind, f.key, f.detail) for p in report.providers for f in p.failing]

    def assert_clean_before_the_rerun(self, provider):
        """Right after the crash, from the bucket and the public key alone (as an auditor checks):
        no finding, once the archive has a signed head at all. A backfill window or a pass is named
        in a head before its first part; the live job's next window begins at the head's watermark.
        (tests/verify/test_verify.py checks the same without the key, at every step.)"""
        _, archive = self.adapters()
        if not any(is_head_key(k) for k in archive.keys(heads_folder("", provider))):
            return  # the first run died before its first head: nothing proves anything yet ("chain")
        assert self.findings(provider, checker=self.checker) == [], "public key, before the rerun"

    def assert_clean(self, provider, clock, events):
        store, archive = self.adapters()
        horizon = clock.now - SETTINGS.settle_seconds
        assert_exactly_once(archive, provider, [e for e in events if event_time(provider, e) < horizon])
        checkpoint = {provider: store.read(provider).get("checkpoint", {})}
        for since in (None, clock.now - DAY):
            assert self.findings(provider, checkpoints=checkpoint, start=since) == [], ("state", since)
            assert self.findings(provider, start=since) == [], ("archive alone", since)
            assert self.findings(provider, checker=self.checker, start=since) == [], ("public key", since)


KINDS = ["collect-slack", "collect-asana", "backfill-asana", "sweep-slack", "sweep-asana"]
MODES = ["after", "before", "failed"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_crash_at_any_write_leaves_an_archive_that_verifies_clean(kind, moto_endpoint, org, tmp_path, capsys):
    provider = kind.split("-")[1]
    clock = FakeClock(start=float(NOW))
    with Emulator(clock=lambda: clock.now) as emu:
        first = NOW - DAY if kind.startswith("backfill") else NOW - DAY // 2  # where the jobs begin
        events = add_history(emu, org, provider, first, NOW + DAY, 160, seed=3)
        if kind.startswith("sweep"):
            events += add_late(emu, org, provider, NOW - 900, NOW - 200, 8, lag=900, seed=4)  # after the run at NOW
        base = World(f"{kind}-base", emu, tmp_path)
        base.create()
        extra = {}
        if kind.startswith("backfill"):  # one slice: its writes come in one order, so k names one write
            extra["settings"] = dataclasses.replace(SETTINGS, backfill_slices=1)
            descriptor = providers.get(provider)
            # Up to an hour past where live collection begins, whenever its first run comes (a crash
            # delays it): no instant between the two jobs.
            end = descriptor.to_units(NOW - DAY / 2 + 3600)
            extra["backfill"] = BackfillRequest(descriptor.to_units(NOW - DAY), end)
        else:
            base.run(provider, clock)  # the history up to now (the late events are not there yet)
            clock.advance(1800 if kind.startswith("sweep") else 300)  # the half-hour pass is due
        start = clock.now
        # The scripted run, counted.
        reference = World(f"{kind}-ref", emu, tmp_path)
        reference.copy_from(base)
        counter = Writes()
        result = reference.run(provider, clock, counter, **extra)
        if kind.startswith("sweep"):
            assert result.sweep["late_events"] >= 1 and result.sweep["passes"] >= 1, result.sweep
        total = counter.count
        assert total >= 4
        covered = {}
        for mode in MODES:
            if FULL:
                points = range(1, total + 1)
            else:  # a sample that still reaches every kind of write: the first, the last, a stride between
                stride = 5 if mode == "after" else 12
                points = sorted({1, total, *range(1 + MODES.index(mode), total + 1, stride)})
            for k in points:
                clock.now = start
                world = World(f"{kind}-{mode}-{k}", emu, tmp_path)
                world.copy_from(base)
                code = world.in_child(provider, clock, Writes(k, mode), **extra)
                # A failed write fails the run, but for the lease's release, whose failure it shrugs off.
                assert code == CRASHED if mode != "failed" else code in (0, 1), (mode, k, code)
                try:
                    world.assert_clean_before_the_rerun(provider)
                except AssertionError as exc:
                    raise AssertionError(f"{kind}, {mode} write {k} of {total}: {exc}") from None
                clock.advance(1000)  # past the dead run's lease
                for _ in range(3):  # the next scheduled runs drain
                    clock.advance(300)
                    assert world.run(provider, clock, **extra).status == "ok"
                try:
                    world.assert_clean(provider, clock, events)
                except AssertionError as exc:
                    raise AssertionError(f"{kind}, {mode} write {k} of {total}: {exc}") from None
                covered[mode] = covered.get(mode, 0) + 1
        with capsys.disabled():
            print(f"\ncrash points, {kind}: {total} writes; covered {covered}, each 0 lost, 0 duplicated, 0 findings")
