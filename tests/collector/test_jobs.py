"""The range arithmetic jobs use to own disjoint stretches of time, checked point by point.

Proves, against a brute-force model over the integers 0..59 (an open end ``None`` stands for "up
to the end of the universe and beyond"), that ``subtract`` removes exactly the taken points and
returns sorted, non-overlapping, non-empty ranges, that ``covered`` counts points, that
``Job.next_gap`` / ``Job.done`` find exactly what is left to collect, that a job survives its
checkpoint form unchanged, that backfill ids are stable and distinct, and that
``taken_by_others`` hands a new claim every range some other job (or a finished backfill) owns.
"""

import copy
import hashlib
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_collector.collector.jobs import (
    LIVE,
    Job,
    backfill_id,
    covered,
    jobs_of,
    merge,
    subtract,
    taken_by_others,
)

N = 60  # the universe: points 0..N-1; open ranges also contain N and beyond
BEYOND = N + 10


def points(ranges, limit=N):
    return {p for start, end in ranges for p in range(start, limit if end is None else end)}


def is_open(ranges):
    return any(end is None for _, end in ranges)


@st.composite
def a_range(draw):
    """Any half-open range of the universe, possibly empty, possibly open-ended."""
    start = draw(st.integers(0, N))
    return [start, draw(st.one_of(st.none(), st.integers(start, N)))]


@st.composite
def disjoint(draw):
    """Sorted, non-overlapping, non-empty ranges (what a job owns); maybe open at the end."""
    cuts = sorted(draw(st.sets(st.integers(0, N), max_size=8)))
    ranges = [[s, e] for s, e in zip(cuts[::2], cuts[1::2], strict=False)]
    if len(cuts) % 2 and draw(st.booleans()):
        ranges.append([cuts[-1], None])
    return ranges


RANGE_LISTS = st.lists(a_range(), max_size=6)
PARAMS = settings(max_examples=150, deadline=None)


# --- subtract and covered --------------------------------------------------------------------


@PARAMS
@given(disjoint(), RANGE_LISTS)
def test_subtract_keeps_exactly_the_points_nobody_else_owns(ranges, taken):
    result = subtract(ranges, taken)
    assert points(result) == points(ranges) - points(taken)
    assert is_open(result) == (is_open(ranges) and not is_open(taken))


@PARAMS
@given(st.data(), disjoint(), RANGE_LISTS)
def test_subtract_returns_sorted_non_overlapping_non_empty_ranges(data, ranges, taken):
    result = subtract(data.draw(st.permutations(ranges)), taken)  # in any order, e.g. several jobs' ranges
    for start, end in result:
        assert end is None or start < end
    for (_, end), (next_start, _) in itertools.pairwise(result):
        assert end is not None and end <= next_start


@PARAMS
@given(disjoint(), RANGE_LISTS)
def test_subtract_copies_and_is_idempotent(ranges, taken):
    before = copy.deepcopy((ranges, taken))
    result = subtract(ranges, taken)
    assert (ranges, taken) == before  # the checkpoint document it was handed is not touched
    assert subtract(result, taken) == result
    assert subtract(ranges, []) == ranges
    for piece in [*result, *subtract(ranges, [])]:  # a caller editing the result edits only the result
        piece[0] = -1
    assert (ranges, taken) == before


@PARAMS
@given(a_range().filter(lambda r: r[1] is None or r[0] < r[1]), RANGE_LISTS)
def test_a_claim_and_what_it_skipped_partition_the_request(wanted, taken):
    """As a backfill claims: what it gets plus what others own is the request, nothing counted twice."""
    claimed = subtract([wanted], taken)
    skipped = subtract([wanted], claimed)
    assert points(claimed, BEYOND) | points(skipped, BEYOND) == points([wanted], BEYOND)
    assert not points(claimed, BEYOND) & points(skipped, BEYOND)
    assert not points(claimed) & points(taken)


def test_subtract_examples():
    assert subtract([[0, 10]], [[3, 5]]) == [[0, 3], [5, 10]]
    assert subtract([[0, None]], [[5, 8], [2, 3]]) == [[0, 2], [3, 5], [8, None]]
    assert subtract([[0, None]], [[4, None]]) == [[0, 4]]
    assert subtract([[10, 20]], [[0, 10], [20, 30]]) == [[10, 20]]  # half-open: touching is not overlapping
    assert subtract([[10, 20]], [[5, None]]) == []
    assert subtract([[0, 10]], [[5, 10]]) == [[0, 5]]  # no empty [10, 10) left behind
    assert subtract([[0, 10]], [[0, 5]]) == [[5, 10]]  # nor an empty [0, 0)


@PARAMS
@given(disjoint(), RANGE_LISTS)
def test_covered_counts_points_and_is_none_for_open_ranges(ranges, taken):
    result = subtract(ranges, taken)
    if is_open(result):
        assert covered(result) is None
    else:
        assert covered(result) == len(points(result))
    assert covered([]) == 0


@PARAMS
@given(st.lists(a_range().filter(lambda r: r[1] is not None), max_size=8))
def test_merge_joins_overlapping_and_adjacent_ranges_without_changing_points(ranges):
    merged = merge(copy.deepcopy(ranges))
    assert points(merged) == points(ranges)
    for (_, end), (next_start, _) in itertools.pairwise(merged):
        assert end < next_start  # a gap between any two: nothing left to join
    assert all(start < end for start, end in merged)


# --- Job --------------------------------------------------------------------------------------


def model_gap(ranges, at):
    """The first owned point at or after ``at``, and where its stretch ends (brute force)."""
    owned = points(ranges, BEYOND)
    later = sorted(p for p in owned if at is None or p >= at)
    if not later:
        return None
    first = later[0]
    end = next(e for s, e in ranges if s <= first and (e is None or first < e))
    return first, end


@PARAMS
@given(disjoint(), st.one_of(st.none(), st.integers(0, N)))
def test_next_gap_is_the_first_stretch_still_to_collect(ranges, at):
    gap = Job("j", ranges).next_gap(at)
    assert gap == model_gap(ranges, at)
    if gap is not None:
        start, end = gap
        assert points([[start, end]], BEYOND) <= points(ranges, BEYOND)  # all of it is ours to collect


@PARAMS
@given(disjoint(), st.one_of(st.none(), st.integers(0, N)), st.booleans())
def test_a_job_is_done_when_nothing_is_left_and_no_window_is_open(ranges, watermark, window_open):
    job = Job("j", ranges, watermark, {"cursor": "x"} if window_open else None)
    left = points(ranges, BEYOND) - (set(range(watermark)) if watermark is not None else set())
    assert job.done == (not window_open and not left)


def test_done_examples():
    assert Job("b", [[0, 10]], watermark=10).done
    assert not Job("b", [[0, 10]], watermark=9).done
    assert not Job("b", [[0, 10]]).done  # never started
    assert Job("b", []).done  # everything it asked for was already owned by others
    assert not Job(LIVE, [[0, None]], watermark=10**15).done  # the live job never finishes
    assert not Job("b", [[0, 10]], watermark=10, window={"cursor": "c"}).done  # a window to finish


WINDOWS = st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3))


@PARAMS
@given(disjoint(), st.one_of(st.none(), st.integers(-(2**70), 2**70)), WINDOWS, WINDOWS.map(lambda w: w or {}))
def test_a_job_survives_its_checkpoint_form(ranges, watermark, window, meta):
    job = Job("backfill-x", ranges, watermark, window, meta)
    stored = json.loads(json.dumps({"jobs": {job.id: job.to_dict()}}))  # as the store keeps it
    assert jobs_of(stored) == {job.id: job}
    assert Job.from_dict(job.id, job.to_dict()) == job


def test_a_job_read_from_a_document_does_not_alias_it():
    document = {"jobs": {"b": {"ranges": [[0, 10]], "meta": {"skipped": []}}}}
    job = jobs_of(document)["b"]
    assert job == Job("b", [[0, 10]], None, None, {"skipped": []})
    job.ranges[0][1] = 5
    job.meta["note"] = "x"
    assert document == {"jobs": {"b": {"ranges": [[0, 10]], "meta": {"skipped": []}}}}


# --- backfill ids and what others own ------------------------------------------------------------


def test_backfill_id_is_stable_across_releases():
    """Ids live in checkpoints: a new hash would not find a backfill a previous version started."""
    digest = hashlib.sha256(b"slack:1700000000:1700086400").hexdigest()[:12]
    assert backfill_id("slack", 1_700_000_000, 1_700_086_400) == f"backfill-{digest}"


@settings(max_examples=200, deadline=None)
@given(
    st.tuples(st.sampled_from(["slack", "asana"]), st.integers(0, 2**45), st.integers(0, 2**45)),
    st.tuples(st.sampled_from(["slack", "asana"]), st.integers(0, 2**45), st.integers(0, 2**45)),
)
def test_same_request_same_id_different_request_different_id(one, other):
    assert backfill_id(*one) == backfill_id(*one)
    assert (backfill_id(*one) == backfill_id(*other)) == (one == other)


@pytest.mark.parametrize(
    ("one", "other"),
    [(("slack", 1, 2), ("asana", 1, 2)), (("slack", 1, 2), ("slack", 2, 1)), (("slack", 1, 23), ("slack", 12, 3))],
)
def test_backfill_id_tells_apart_requests_that_look_alike(one, other):
    assert backfill_id(*one) != backfill_id(*other)


DOCUMENT = {
    "jobs": {
        LIVE: {"ranges": [[100, None]], "watermark": 150},
        "backfill-a": {"ranges": [[10, 20], [30, 40]]},
        "backfill-b.0": {"ranges": [[50, 60]]},
    },
    "archived": [[0, 5]],
}


def test_taken_by_others_is_every_range_of_every_other_job_and_the_archive():
    assert sorted(taken_by_others(DOCUMENT, LIVE)) == [[0, 5], [10, 20], [30, 40], [50, 60]]
    assert sorted(taken_by_others(DOCUMENT, "backfill-a")) == [[0, 5], [50, 60], [100, None]]
    assert sorted(taken_by_others(DOCUMENT, "backfill-new"), key=str) == sorted(
        [[0, 5], [10, 20], [30, 40], [50, 60], [100, None]], key=str
    )
    assert taken_by_others({}, LIVE) == []


def test_a_new_claim_never_overlaps_what_others_own():
    claim = subtract([[0, 200]], taken_by_others(DOCUMENT, "backfill-new"))
    assert claim == [[5, 10], [20, 30], [40, 50], [60, 100]]
    own = [r for job in jobs_of(DOCUMENT).values() for r in job.ranges] + DOCUMENT["archived"]
    assert not points(claim, 300) & points(own, 300)
