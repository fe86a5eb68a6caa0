"""Compaction of a local archive: closed days only, every event once, reruns and crashes change nothing,
late events reach the compacted day; and every statement Athena runs parses in Athena's dialect."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import shutil
import zlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlglot
from hypothesis import given
from hypothesis import strategies as st

from audit_collector import providers
from audit_collector.cli import main
from audit_collector.collector import Settings
from audit_collector.compaction import sql
from audit_collector.compaction.local import compact_local, read_markers
from audit_collector.compaction.rules import CURRENT, day_closed
from audit_collector.emulator import Emulator, api_classes, make_org
from audit_collector.query import connect
from audit_collector.storage.archive import _gzip
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.state import FileStore

from ..support import Crash, FakeClock, add_history, run_once

NOW = int(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp())
DESCRIPTORS = [d for d in providers.all_descriptors() if d.compacted_columns and d.emulator]
NAMES = [d.name for d in DESCRIPTORS]


def collect(root: Path, org, provider: str, days: float = 3.5, count: int = 400) -> None:
    """A live collection over the last ``days`` days of generated events, into ``root``."""
    clock = FakeClock(start=float(NOW))
    settings = Settings(
        settle_seconds=120,
        initial_lookback_days=days + 1,
        page_limit=50 if provider == "slack" else 20,
        max_object_bytes=20_000,  # many objects a day, as live collection writes them
    )
    with Emulator(clock=clock.time) as emu:
        add_history(emu, org, provider, NOW - int(days * 86400), NOW - 600, count, seed=11)
        run_once(
            provider,
            emu,
            store=FileStore(root / "state.json"),
            archive=LocalArchive(root),
            clock=clock,
            settings=settings,
        )


def checkpoint(root: Path, provider: str) -> dict:
    return FileStore(root / "state.json").read(provider)["checkpoint"]


def raw_lines(root: Path, provider: str) -> Counter:
    """(dt, line) of every archived event: the exact text."""
    out: Counter = Counter()
    for path in sorted((root / provider).glob("dt=*/*.jsonl.gz")):
        dt = path.parent.name.removeprefix("dt=")
        for line in zlib.decompress(path.read_bytes(), 31).split(b"\n"):
            if line:
                out[(dt, line.decode())] += 1
    return out


def view_lines(root: Path, descriptor) -> Counter:
    con = connect(root)
    try:
        rows = con.execute(f"SELECT dt, event FROM {sql.all_view(descriptor)}").fetchall()
    finally:
        con.close()
    return Counter((dt, event) for dt, event in rows)


def assert_every_event_once(root: Path, descriptor) -> None:
    raw = raw_lines(root, descriptor.name)
    got = view_lines(root, descriptor)
    assert raw and all(n == 1 for n in raw.values())
    assert got == raw  # every event once, in its own dt, the archived text byte for byte


@pytest.fixture(scope="module")
def archives(tmp_path_factory, org) -> dict[str, Path]:
    """One collected (not compacted) archive per provider; tests copy it."""
    out = {}
    for name in NAMES:
        root = tmp_path_factory.mktemp(f"raw-{name}")
        collect(root, org, name)
        out[name] = root
    return out


@pytest.fixture
def archive(request, archives, tmp_path) -> Path:
    root = tmp_path / "archive"
    shutil.copytree(archives[request.param], root)
    return root


def closed_days_of(root: Path, descriptor) -> list[str]:
    cp = checkpoint(root, descriptor.name)
    days = sorted(p.name.removeprefix("dt=") for p in (root / descriptor.name).glob("dt=*"))
    return [d for d in days if day_closed(descriptor, cp, d)]


# ------------------------------------------------------------------ closed days


@pytest.mark.parametrize("archive", NAMES, indirect=True)
def test_only_closed_days_are_compacted(archive):
    descriptor = provider_of(archive)
    report = compact_local(archive, descriptor, checkpoint(archive, descriptor.name))
    today = datetime.fromtimestamp(NOW, UTC).strftime("%Y-%m-%d")
    assert report.open_days == [today]  # the live watermark is minutes before now: today is open
    assert sorted(read_markers(archive, "", descriptor)) == [d.day for d in report.compacted]
    assert len(report.compacted) >= 3 and today not in read_markers(archive, "", descriptor)
    assert report.watermark == report.compacted[-1].day
    # One Parquet file per compacted day, where collection wrote several objects.
    assert sum(r.objects for r in report.compacted) > len(report.compacted)
    for result in report.compacted:
        assert len(list((archive / "_compacted" / descriptor.name / f"dt={result.day}").rglob("*.parquet"))) == 1
    assert_every_event_once(archive, descriptor)


def test_a_day_a_backfill_still_owns_is_open():
    descriptor = providers.get("slack")
    day = "2026-11-10"
    start = int(datetime(2026, 11, 10, tzinfo=UTC).timestamp())
    live = {"ranges": [[start - 86400 * 5, None]], "watermark": NOW}
    assert day_closed(descriptor, {"jobs": {"live": live}}, day)
    assert not day_closed(descriptor, {"jobs": {}}, day)  # nothing collected live yet
    assert not day_closed(descriptor, {"jobs": {"live": {**live, "watermark": start + 86399}}}, day)
    backfill = {"ranges": [[start - 86400 * 30, start - 86400 * 5]], "watermark": None}
    old_day = "2026-10-20"
    assert not day_closed(descriptor, {"jobs": {"live": live, "backfill-x": backfill}}, old_day)
    done = {**backfill, "watermark": start - 86400 * 5}
    assert day_closed(descriptor, {"jobs": {"live": live, "backfill-x": done}}, old_day)
    assert not day_closed(descriptor, {"jobs": {"live": live}}, day, grace_seconds=NOW - start)


# ------------------------------------------------------------------ every event once


def provider_of(root: Path):
    return next(d for d in DESCRIPTORS if (root / d.name).exists())


@pytest.mark.parametrize("archive", NAMES, indirect=True)
def test_the_view_returns_every_event_once_before_and_after_with_typed_columns(archive):
    descriptor = provider_of(archive)
    assert_every_event_once(archive, descriptor)  # nothing compacted: all raw
    compact_local(archive, descriptor, checkpoint(archive, descriptor.name))
    assert_every_event_once(archive, descriptor)
    con = connect(archive)
    try:
        names = [n for n, _, _ in sql.columns(descriptor)]
        rows = con.execute(f"SELECT {', '.join(names)}, dt FROM {sql.compacted_table(descriptor)}").fetchall()
    finally:
        con.close()
    assert rows
    for row in rows:
        values = dict(zip([*names, "dt"], row, strict=True))
        event = json.loads(values["event"])
        assert values[descriptor.id_field] == descriptor.event_id(event)
        assert values["event_time"].replace(tzinfo=UTC).timestamp() == pytest.approx(descriptor.event_seconds(event))
        assert values["dt"] == descriptor.event_date(event)
        if descriptor.name == "slack":
            assert (values["actor_email"], values["ip"], values["action"]) == (
                event["actor"]["user"]["email"],
                event["context"]["ip_address"],
                event["action"],
            )
            kind = event["entity"]["type"]
            assert values["entity_type"] == kind and values["entity_id"] == event["entity"][kind].get("id")
        else:
            assert (values["actor_email"], values["ip"], values["event_type"]) == (
                event["actor"]["email"],
                event["context"]["client_ip_address"],
                event["event_type"],
            )
            assert values["resource_gid"] == event["resource"]["gid"]


@pytest.mark.parametrize("archive", NAMES, indirect=True)
def test_a_rerun_changes_nothing(archive):
    descriptor = provider_of(archive)
    first = compact_local(archive, descriptor, checkpoint(archive, descriptor.name))
    files = {p: p.read_bytes() for p in (archive / "_compacted").rglob("*") if p.is_file()}
    again = compact_local(archive, descriptor, checkpoint(archive, descriptor.name))
    assert again.compacted == [] and again.up_to_date == [d.day for d in first.compacted]
    assert {p: p.read_bytes() for p in (archive / "_compacted").rglob("*") if p.is_file()} == files
    assert_every_event_once(archive, descriptor)


@pytest.mark.parametrize("provider", NAMES)
def test_a_crash_at_every_step_leaves_query_results_unchanged(provider, archives, tmp_path):
    descriptor = providers.get(provider)
    steps = 3 * len(closed_days_of(archives[provider], descriptor))
    expected = raw_lines(archives[provider], provider)
    for crash_at in range(1, steps + 1):
        root = tmp_path / f"crash-{crash_at}"
        shutil.copytree(archives[provider], root)
        seen = []

        def on_step(step, day, crash_at=crash_at, seen=seen):
            seen.append((step, day))
            if len(seen) == crash_at:
                raise Crash(f"{step} {day}")

        with pytest.raises(Crash):
            compact_local(root, descriptor, checkpoint(root, provider), on_step=on_step)
        assert view_lines(root, descriptor) == expected, seen[-1]
        report = compact_local(root, descriptor, checkpoint(root, provider))
        assert view_lines(root, descriptor) == expected
        markers = read_markers(root, "", descriptor)
        assert sorted(markers) == closed_days_of(root, descriptor)
        assert len(report.compacted) + len(report.up_to_date) == len(markers)
        for day, marker in markers.items():  # the crashed run's folder is gone, the published one stays
            runs = sorted(p.name for p in (root / "_compacted" / provider / f"dt={day}").glob("run=*"))
            assert runs == [f"run={marker['run']}"]


@pytest.mark.parametrize("archive", NAMES, indirect=True)
def test_late_swept_events_reach_the_compacted_day(archive):
    descriptor = provider_of(archive)
    report = compact_local(archive, descriptor, checkpoint(archive, descriptor.name))
    day = report.compacted[1].day
    # The late-event sweep writes a new object into a closed, compacted day.
    template = json.loads(next(iter(raw_lines(archive, descriptor.name)))[1])
    late = dict(template, **{descriptor.id_field: "late-00000000000000001"})
    if descriptor.name == "slack":
        late["date_create"] = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()) + 3600
    else:
        late["created_at"] = f"{day}T01:00:00.000Z"
    line = json.dumps(late, separators=(",", ":")).encode()
    LocalArchive(archive).put(f"{descriptor.name}/dt={day}/sweep-1-p00000.jsonl.gz", _gzip(line + b"\n"))

    again = compact_local(archive, descriptor, checkpoint(archive, descriptor.name))
    assert [d.day for d in again.compacted] == [day]  # only the day whose objects changed
    assert again.compacted[0].events == report.compacted[1].events + 1
    assert_every_event_once(archive, descriptor)
    con = connect(archive)
    try:
        found = con.execute(
            f"SELECT dt, event FROM {sql.compacted_table(descriptor)} WHERE {descriptor.id_field} = ?",
            ["late-00000000000000001"],
        ).fetchall()
    finally:
        con.close()
    assert found == [(day, line.decode())]


# ------------------------------------------------------------------ the SQL Athena runs


def parse_athena(text: str):
    return sqlglot.parse_one(text, read="athena", error_level=sqlglot.ErrorLevel.RAISE)


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=lambda d: d.name)
def test_every_athena_statement_parses_in_athenas_dialect(descriptor):
    select = sql.select_day(descriptor, "2026-11-18")
    assert isinstance(parse_athena(select), sqlglot.exp.Select)
    view = parse_athena(sql.create_view(descriptor, "2026-11-18"))
    assert isinstance(view, sqlglot.exp.Create) and view.args.get("replace")
    assert isinstance(parse_athena(sql.create_view(descriptor, None)), sqlglot.exp.Create)
    # sqlglot keeps UNLOAD as a command: check its envelope, and parse what it wraps.
    location = f"s3://bucket/audit/_compacted/{descriptor.name}/dt=2026-11-18/run=20261120T000000Z-abcdef12/"
    unload = sql.unload(descriptor, "2026-11-18", location)
    match = re.fullmatch(
        r"UNLOAD \((?P<select>.*)\)\nTO '(?P<to>[^']+)'\nWITH \(format = 'PARQUET', compression = 'ZSTD'\)",
        unload,
        re.S,
    )
    assert match and match["select"] == select and match["to"] == location
    parse_athena(match["select"])
    # Only functions both engines have (DuckDB gets the Athena ones in compaction.add_athena_functions).
    functions = {name.lower() for name in re.findall(r"(\w+)\(", select)}
    both = {"cast", "coalesce", "json_extract_scalar", "json_extract", "json_format", "from_unixtime"}
    assert functions <= both | {"from_iso8601_timestamp"}, functions
    for bad in ("'; DROP", "2026-1-1", "x"):
        with pytest.raises(ValueError):
            sql.select_day(descriptor, bad)
    with pytest.raises(ValueError):
        sql.unload(descriptor, "2026-11-18", "s3://bucket/x' --/")


def test_the_compacted_column_names_are_plain_and_include_the_id():
    for descriptor in DESCRIPTORS:
        names = [n for n, _, _ in sql.columns(descriptor)]
        assert names[0] == "event_time" and descriptor.id_field in names and names[-1] == "event"
        assert len(set(names)) == len(names) and all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)


# ------------------------------------------------------------------ the layout of a compacted day


@given(st.integers(min_value=0, max_value=50_000_000))
def test_row_groups_are_whole_vectors_about_eight_a_day_within_bounds(events):
    rows = sql.row_group_rows(events)
    assert rows % sql.VECTOR == 0 and sql.SMALLEST_ROW_GROUP <= rows <= sql.LARGEST_ROW_GROUP
    groups = -(-events // rows)
    if rows < sql.LARGEST_ROW_GROUP:
        assert groups <= sql.ROW_GROUPS_A_DAY  # never more than eight unless the groups are at the largest
    if rows > sql.SMALLEST_ROW_GROUP:
        assert -(-events // (rows - sql.VECTOR)) > sql.ROW_GROUPS_A_DAY  # and no larger than that needs


def write_big_day(root: Path, descriptor, day_start: int, count: int) -> dict:
    """One day of ``count`` generated events in 48 raw objects; returns a checkpoint that closes it."""
    org = make_org(seed=5, users=500)
    events = api_classes()[descriptor.name]().generate(org, day_start, day_start + 86400, count, seed=3)
    folder = root / descriptor.name / f"dt={datetime.fromtimestamp(day_start, UTC):%Y-%m-%d}"
    folder.mkdir(parents=True)
    for part in range(48):
        lines = [json.dumps(e) for e in events[part::48]]
        (folder / f"{day_start + part}-{day_start + part + 1}-p00000.jsonl.gz").write_bytes(
            _gzip(("\n".join(lines) + "\n").encode())
        )
    ups = descriptor.units_per_second
    return {"jobs": {"live": {"ranges": [[day_start * ups, None]], "watermark": (day_start + 2 * 86400) * ups}}}


@pytest.mark.parametrize(
    "count",
    [9_000, pytest.param(130_000, marks=pytest.mark.slow)],  # the larger: beyond one DuckDB row group of input
)
@pytest.mark.parametrize("descriptor", [d for d in DESCRIPTORS if d.compacted_sort], ids=lambda d: d.name)
def test_a_compacted_day_is_sorted_by_type_in_row_groups_a_type_question_can_skip(descriptor, count, tmp_path):
    day_start = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp())
    closing = write_big_day(tmp_path, descriptor, day_start, count)
    report = compact_local(tmp_path, descriptor, closing)
    assert [d.events for d in report.compacted] == [count]
    assert_every_event_once(tmp_path, descriptor)
    (path,) = (tmp_path / "_compacted" / descriptor.name).rglob("*.parquet")
    kind = descriptor.compacted_sort[0]
    con = connect(tmp_path)
    try:
        names = ", ".join(descriptor.compacted_sort)
        rows = con.execute(f"SELECT {names} FROM read_parquet('{path}')").fetchall()
        groups = con.execute(
            "SELECT row_group_id, stats_min_value, stats_max_value, row_group_num_rows "
            f"FROM parquet_metadata('{path}') WHERE path_in_schema = '{kind}' ORDER BY row_group_id"
        ).fetchall()
    finally:
        con.close()
    assert rows == sorted(rows)  # type, then time, then id
    assert len(groups) == -(-count // sql.row_group_rows(count)) > 1
    assert all(n == sql.row_group_rows(count) for *_, n in groups[:-1])
    # Each group's range of types starts where the previous one's ends: a question about one type
    # reads only the groups whose range holds it, which are exactly the groups holding it.
    assert all(a[2] <= b[1] for a, b in itertools.pairwise(groups))
    for value in {r[0] for r in rows}:
        holding = {i // sql.row_group_rows(count) for i, r in enumerate(rows) if r[0] == value}
        assert {g for g, low, high, _ in groups if low <= value <= high} == holding
    # Compacted again from nothing (its publication gone), the day is the same file, byte for byte.
    first = path.read_bytes()
    (path.parent.parent / CURRENT).unlink()
    again = compact_local(tmp_path, descriptor, closing)
    (new_path,) = (tmp_path / "_compacted" / descriptor.name).rglob("*.parquet")
    assert [d.events for d in again.compacted] == [count] and new_path != path
    assert new_path.read_bytes() == first


def test_a_sort_that_is_not_total_or_names_a_missing_column_is_refused():
    descriptor = DESCRIPTORS[0]
    with pytest.raises(ValueError, match="compacted_sort names no compacted column: nope"):
        dataclasses.replace(descriptor, compacted_sort=("nope", "event_time"))
    for sort in (
        ("event_time",),
        (descriptor.id_field, "event_time"),
        ("event_time", "event_time", descriptor.id_field),
    ):
        with pytest.raises(ValueError, match=f"must name each column once and end with {descriptor.id_field}"):
            dataclasses.replace(descriptor, compacted_sort=sort)
    assert dataclasses.replace(descriptor, compacted_sort=("event_time", descriptor.id_field)).compacted_sort


# ------------------------------------------------------------------ the CLI, end to end


@pytest.mark.slow
def test_demo_then_compact_then_query(tmp_path, capsys):
    folder = tmp_path / "demo"
    assert main(["demo", "--archive", str(folder), "--days", "2.5", "--users", "200", "--fault-rate", "0"]) == 0
    before = {d.name: raw_lines(folder, d.name) for d in DESCRIPTORS}
    demo_out = capsys.readouterr().out
    for descriptor in DESCRIPTORS:  # the demo compacts the closed days and reads them back once
        assert re.search(rf"^{descriptor.name}: [1-9]\d* closed day\(s\) compacted", demo_out, re.M), demo_out
        assert view_lines(folder, descriptor) == before[descriptor.name]
    shutil.rmtree(folder / "_compacted")  # then the CLI does it again from nothing
    assert main(["compact", "--archive", str(folder)]) == 0
    out = capsys.readouterr().out
    for descriptor in DESCRIPTORS:
        assert re.search(rf"^{descriptor.name}: [1-9]\d* day\(s\) compacted", out, re.M), out
        assert list((folder / "_compacted" / descriptor.name).glob(f"dt=*/{CURRENT}"))
        assert view_lines(folder, descriptor) == before[descriptor.name]
    table = sql.all_view(DESCRIPTORS[0])
    assert main(["query", "--archive", str(folder), "--format", "json", f"SELECT count(*) AS n FROM {table}"]) == 0
    printed = capsys.readouterr().out
    assert str(sum(before[DESCRIPTORS[0].name].values())) in printed
    assert main(["compact", "--archive", str(folder)]) == 0  # a rerun: nothing to do
    assert all(" 0 day(s) compacted" in line for line in capsys.readouterr().out.splitlines())


def test_the_local_view_is_athenas_view_text_but_for_the_raw_side_table():
    for descriptor in DESCRIPTORS:
        local = sql.create_view(descriptor, "2026-11-18", lines=f"{sql.lines_table(descriptor)}_open")
        athena = sql.create_view(descriptor, "2026-11-18")
        assert local != athena
        assert local.replace(f"{sql.lines_table(descriptor)}_open", sql.lines_table(descriptor)) == athena
