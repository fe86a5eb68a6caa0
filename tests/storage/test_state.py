"""The checkpoint store: one lease per provider, and checkpoint writes that cannot go backwards.

Proves that DynamoDBStore sends exactly the conditional requests the exactly-once guarantee rests
on (botocore Stubber), that DynamoDBStore (under moto) and FileStore both keep the lease rules (a
live lease is exclusive, an expired or released one is free, a run that lost its lease or holds a
stale version never overwrites a newer checkpoint), and, property-based, that FileStore agrees
with a small model of those rules after every step of random multi-owner histories.
"""

import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from hypothesis import example, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from audit_collector.errors import LeaseLost
from audit_collector.storage.state import DynamoDBStore, FileStore, Lease, LeaseHeld

from ..support import TABLE, create_state_table

P = "slack"
T0 = 1_800_000_000.0
KEY = {"pk": {"S": P}, "sk": {"S": "state"}}
ACQUIRE = "SET lease_owner = :owner, lease_expires_at = :expires"
FREE = "attribute_not_exists(lease_owner) OR lease_expires_at < :now OR lease_owner = :owner"
SAVE = "SET checkpoint = :checkpoint, version = :new, updated_at = :updated"


def canonical(value):
    """Type-exact comparison: 1 and 1.0 (or True) differ here, unlike with ``==``."""
    return json.dumps(value, sort_keys=True)


class RecentIso:
    """Equals an ISO 8601 timestamp of the last minute (the ``updated_at`` a save writes)."""

    def __eq__(self, other):
        moment = datetime.fromisoformat(other["S"])
        return abs(datetime.now(moment.tzinfo) - moment) < timedelta(minutes=1)

    def __repr__(self):
        return "<recent ISO timestamp>"


# --- DynamoDBStore: the exact requests -------------------------------------------------------


@pytest.fixture
def stubbed():
    client = boto3.client("dynamodb", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield DynamoDBStore(TABLE, client=client), stubber


def update(expression, condition, values, **extra):
    """The complete ``update_item`` parameters (Stubber also fails on any parameter not listed)."""
    return dict(
        TableName=TABLE,
        Key=KEY,
        UpdateExpression=expression,
        ConditionExpression=condition,
        ExpressionAttributeValues=values,
        **extra,
    )


def test_dynamodb_acquire_is_one_conditional_update_returning_the_checkpoint(stubbed):
    store, stubber = stubbed
    values = {":owner": {"S": "run-a"}, ":expires": {"N": "1800000900.500"}, ":now": {"N": "1800000000.250"}}
    attributes = {**KEY, "version": {"N": "3"}, "checkpoint": {"S": '{"jobs":{"live":{}}}'}}
    expected = update(ACQUIRE, FREE, values, ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD")
    stubber.add_response("update_item", {"Attributes": attributes}, expected_params=expected)
    lease = store.acquire(P, owner="run-a", expires_at=T0 + 900.5, now=T0 + 0.25)
    assert lease == Lease(P, "run-a", T0 + 900.5, 3, {"jobs": {"live": {}}})
    stubber.assert_no_pending_responses()


def test_dynamodb_saves_are_conditional_on_owner_and_version(stubbed):
    store, stubber = stubbed
    first, second = {"b": [1, 2], "a": {"big": 2**80}}, {"a": 1}
    owner = {":owner": {"S": "run-a"}, ":updated": RecentIso()}
    stubber.add_response(
        "update_item",
        {},
        expected_params=update(
            SAVE,
            "lease_owner = :owner AND attribute_not_exists(version)",
            {**owner, ":checkpoint": {"S": '{"a":{"big":1208925819614629174706176},"b":[1,2]}'}, ":new": {"N": "1"}},
        ),
    )
    stubber.add_response(
        "update_item",
        {},
        expected_params=update(
            SAVE,
            "lease_owner = :owner AND version = :version",
            {**owner, ":checkpoint": {"S": '{"a":1}'}, ":new": {"N": "2"}, ":version": {"N": "1"}},
        ),
    )
    lease = Lease(P, "run-a", T0, 0)
    store.save(lease, first)
    assert (lease.version, lease.checkpoint) == (1, first)
    store.save(lease, second)
    assert (lease.version, lease.checkpoint) == (2, second)
    stubber.assert_no_pending_responses()


def test_dynamodb_release_removes_only_our_own_lease(stubbed):
    store, stubber = stubbed
    expected = update("REMOVE lease_owner, lease_expires_at", "lease_owner = :owner", {":owner": {"S": "run-a"}})
    stubber.add_response("update_item", {}, expected_params=expected)
    stubber.add_client_error("update_item", "ConditionalCheckFailedException", expected_params=expected)
    lease = Lease(P, "run-a", T0, 4)
    store.release(lease)
    store.release(lease)  # someone else holds it now: nothing to release, and no error
    stubber.assert_no_pending_responses()


def test_dynamodb_refused_acquire_raises_lease_held_with_the_holder(stubbed):
    store, stubber = stubbed
    holder = {**KEY, "lease_owner": {"S": "run-b"}, "lease_expires_at": {"N": "1800000500.000"}}
    stubber.add_client_error(
        "update_item", "ConditionalCheckFailedException", modeled_fields={"message": "refused", "Item": holder}
    )
    with pytest.raises(LeaseHeld, match="run-b") as held:
        store.acquire(P, owner="run-a", expires_at=T0 + 900, now=T0)
    assert (held.value.owner, held.value.expires_at) == ("run-b", T0 + 500)
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize("code", ["ConditionalCheckFailedException", "ProvisionedThroughputExceededException"])
def test_dynamodb_refused_save_leaves_the_lease_as_it_was(stubbed, code):
    store, stubber = stubbed
    stubber.add_client_error("update_item", code)
    lease = Lease(P, "run-a", T0, 5, {"old": True})
    with pytest.raises(ClientError if code.startswith("Provisioned") else LeaseLost) as error:
        store.save(lease, {"new": True})
    assert isinstance(error.value, LeaseLost) == (code == "ConditionalCheckFailedException")  # throttling is not
    assert (lease.version, lease.checkpoint) == (5, {"old": True})
    stubber.assert_no_pending_responses()


def test_dynamodb_read_is_strongly_consistent(stubbed):
    store, stubber = stubbed
    stubber.add_response(
        "get_item",
        {"Item": {**KEY, "version": {"N": "2"}, "checkpoint": {"S": "{}"}}},
        expected_params={"TableName": TABLE, "Key": KEY, "ConsistentRead": True},
    )
    assert store.read(P) == {"version": 2, "checkpoint": {}}
    stubber.assert_no_pending_responses()


# --- Both adapters: the lease rules ----------------------------------------------------------


@pytest.fixture(params=["dynamodb", "file"])
def store(request, tmp_path):
    if request.param == "file":
        yield FileStore(tmp_path / "state.json")
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_state_table(client)
        yield DynamoDBStore(TABLE, client=client)


def take(store, owner, *, now, until):
    return store.acquire(P, owner=owner, expires_at=T0 + until, now=T0 + now)


def test_a_live_lease_is_exclusive_until_it_expires(store):
    take(store, "a", now=0, until=100)
    for now in (50, 100):  # still held at the very instant it expires
        with pytest.raises(LeaseHeld) as held:
            take(store, "b", now=now, until=200)
        assert (held.value.owner, held.value.expires_at) == ("a", T0 + 100)
    lease = take(store, "b", now=101, until=200)
    assert (lease.owner, lease.expires_at) == ("b", T0 + 200)
    assert store.read(P)["lease_owner"] == "b"


def test_the_same_owner_can_reacquire_and_extend_its_lease(store):
    store.save(take(store, "a", now=0, until=100), {"n": 1})
    again = take(store, "a", now=50, until=300)
    assert (again.version, again.checkpoint) == (1, {"n": 1})
    assert store.read(P)["lease_expires_at"] == T0 + 300
    with pytest.raises(LeaseHeld):
        take(store, "b", now=200, until=400)


@pytest.mark.parametrize("new_holder_wrote", [False, True])
def test_a_run_that_lost_its_lease_cannot_overwrite_the_checkpoint(store, new_holder_wrote):
    old = take(store, "a", now=0, until=100)
    store.save(old, {"n": 1})
    new = take(store, "b", now=150, until=300)
    if new_holder_wrote:
        store.save(new, {"n": 2})
    with pytest.raises(LeaseLost):
        store.save(old, {"n": "stale"})
    record = store.read(P)
    assert (record["checkpoint"], record["lease_owner"]) == ({"n": 1 + new_holder_wrote}, "b")
    assert record["version"] == 1 + new_holder_wrote
    assert (old.version, old.checkpoint) == (1, {"n": 1})
    store.save(new, {"n": 3})  # the new holder is not disturbed
    assert store.read(P)["checkpoint"] == {"n": 3}


@pytest.mark.parametrize("saves_before", [0, 2])
def test_a_stale_version_cannot_overwrite_a_newer_checkpoint(store, saves_before):
    first = take(store, "a", now=0, until=100)
    for n in range(saves_before):
        store.save(first, {"n": n})
    second = take(store, "a", now=1, until=100)  # same owner, e.g. a retried invocation
    store.save(first, {"n": "newer"})
    with pytest.raises(LeaseLost):
        store.save(second, {"n": "stale"})
    assert store.read(P)["checkpoint"] == {"n": "newer"}
    assert store.read(P)["version"] == saves_before + 1
    assert second.version == saves_before


def test_release_lets_another_owner_start_at_once(store):
    lease = take(store, "a", now=0, until=900)
    store.save(lease, {"n": 1})
    store.release(lease)
    record = store.read(P)
    assert "lease_owner" not in record and "lease_expires_at" not in record
    assert (record["version"], record["checkpoint"]) == (1, {"n": 1})
    assert take(store, "b", now=1, until=900).version == 1
    with pytest.raises(LeaseLost):  # released means released: no more writes
        store.save(lease, {"n": 2})


def test_release_by_a_run_that_no_longer_holds_the_lease_does_nothing(store):
    old = take(store, "a", now=0, until=100)
    take(store, "b", now=150, until=300)
    store.release(old)
    store.release(Lease(P, "never-acquired", T0, 0))
    assert store.read(P)["lease_owner"] == "b"
    with pytest.raises(LeaseHeld):
        take(store, "c", now=200, until=400)


def test_read_shows_version_checkpoint_and_lease(store):
    assert store.read(P) == {}
    lease = take(store, "a", now=0, until=100)
    store.save(lease, {"jobs": {}})
    record = store.read(P)
    updated = datetime.fromisoformat(record.pop("updated_at"))
    assert record == {"version": 1, "checkpoint": {"jobs": {}}, "lease_owner": "a", "lease_expires_at": T0 + 100}
    assert abs(datetime.now(updated.tzinfo) - updated) < timedelta(minutes=1)
    assert store.read("asana") == {}  # providers do not share a record


def test_read_after_the_first_acquire_shows_version_zero_and_an_empty_checkpoint(store):
    take(store, "a", now=0, until=100)
    assert store.read(P) == {"version": 0, "checkpoint": {}, "lease_owner": "a", "lease_expires_at": T0 + 100}


def test_a_checkpoint_round_trips_exactly(store):
    checkpoint = {
        "jobs": {"live": {"ranges": [[1_700_000_000_000, None]], "watermark": 2**63 + 1, "window": None}},
        "big": [2**100, -(2**70), 0],
        "float": 0.1,
        "text": 'é ✓ "quoted" \\ \n',
        "flags": [True, False, None],
        "deep": {"a": {"b": {"c": {"d": [{}]}}}},
    }
    store.save(take(store, "a", now=0, until=100), checkpoint)
    assert canonical(store.read(P)["checkpoint"]) == canonical(checkpoint)
    assert canonical(take(store, "b", now=200, until=300).checkpoint) == canonical(checkpoint)


# --- FileStore against a model of the rules, on random histories ----------------------------

OWNERS = st.sampled_from(["a", "b"])  # two owners collide more often than three
ACQUIRE_STEP = st.tuples(st.just("acquire"), OWNERS, st.sampled_from([0, 1, 5, 30]))
SAVE_STEP = st.tuples(st.just("save"), OWNERS, st.integers(0, 3))
STEPS = st.one_of(
    ACQUIRE_STEP,
    SAVE_STEP,
    ACQUIRE_STEP,  # twice as likely: re-acquisitions make stale Lease objects, saves try them
    SAVE_STEP,
    st.tuples(st.just("release"), OWNERS, st.integers(0, 3)),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1, 5, 31])),
)


@settings(max_examples=50, deadline=None)
@given(st.lists(STEPS, min_size=8, max_size=40))
@example([("acquire", "a", 30), ("acquire", "a", 30), ("save", "a", 1), ("save", "a", 0), ("save", "a", 1)])
@example([("acquire", "a", 1), ("save", "a", 0), ("advance", 5), ("acquire", "b", 0), ("save", "a", 0)])
@example([("acquire", "a", 5), ("advance", 31), ("acquire", "b", 1), ("advance", 0.5), ("release", "a", 0)])
def test_file_store_follows_the_lease_rules_on_random_histories(steps):
    now = 1000.0
    model = {"version": 0, "checkpoint": {}, "lease_owner": None, "lease_expires_at": None}
    empty = dict(model)  # what read() shows for a record that does not exist yet
    leases = {"a": [], "b": []}  # each owner's Lease objects, with the version the model expects of each
    with tempfile.TemporaryDirectory() as tmp:
        store = FileStore(Path(tmp) / "state.json")
        for i, (op, *args) in enumerate(steps):
            holder, expires = model["lease_owner"], model["lease_expires_at"]
            if op == "advance":
                now += args[0]
            elif op == "acquire":
                owner, duration = args
                if holder in (None, owner) or expires < now:
                    lease = store.acquire(P, owner=owner, expires_at=now + duration, now=now)
                    model.update(lease_owner=owner, lease_expires_at=now + duration)
                    assert (lease.version, lease.checkpoint) == (model["version"], model["checkpoint"])
                    leases[owner].append([lease, model["version"]])
                else:
                    with pytest.raises(LeaseHeld) as held:
                        store.acquire(P, owner=owner, expires_at=now + duration, now=now)
                    assert (held.value.owner, held.value.expires_at) == (holder, expires)
            elif leases[args[0]]:
                owner, pick = args
                entry = leases[owner][pick % len(leases[owner])]
                lease, version = entry
                if op == "release":
                    store.release(lease)
                    if holder == owner:
                        model.update(lease_owner=None, lease_expires_at=None)
                elif holder == owner and model["version"] == version:
                    store.save(lease, {"step": i, "by": owner})
                    model.update(version=version + 1, checkpoint={"step": i, "by": owner})
                    entry[1] = version + 1
                else:
                    with pytest.raises(LeaseLost):
                        store.save(lease, {"step": i, "by": owner})
                assert lease.version == entry[1]
            record = store.read(P)
            assert {key: record.get(key, empty[key]) for key in model} == model
