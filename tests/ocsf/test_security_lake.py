"""Security Lake custom sources, offline: the layout, each file's schema and limits, and every mapped
event exactly once per class, also after a crash at every step."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from audit_collector import ocsf, providers
from audit_collector.cli import main
from audit_collector.compaction.rules import day_closed
from audit_collector.errors import ArchiveError, ConfigError
from audit_collector.ocsf import lake, validate
from audit_collector.ocsf.classes import CLASSES
from audit_collector.ocsf.lake import LakeTarget, export_local, schema
from audit_collector.storage.local import LocalArchive

from ..compaction.test_compaction import checkpoint, collect, raw_lines
from ..parquet_pages import pages
from ..support import Crash

NAMES = ("slack", "asana")
LAYOUT = re.compile(
    r"ext/(?P<source>auditcol-[a-z]+)/region=us-east-1/accountId=123456789012/"
    r"eventDay=(?P<day>\d{8})/(?P<provider>[a-z]+)\.parquet"
)


@pytest.fixture(scope="module")
def collected(tmp_path_factory, org) -> Path:
    root = tmp_path_factory.mktemp("lake-raw")
    for name in NAMES:
        collect(root, org, name, days=3.5, count=500)
    return root


@pytest.fixture
def archive(collected, tmp_path) -> Path:
    root = tmp_path / "archive"
    shutil.copytree(collected, root)
    return root


def target(root: Path) -> LakeTarget:
    return LakeTarget(root / "lake", "us-east-1", "123456789012")


def export(root: Path, on_step=None) -> None:
    for name in NAMES:
        export_local(root, providers.get(name), checkpoint(root, name), target(root), on_step=on_step)


def lake_files(root: Path) -> list[Path]:
    return sorted((root / "lake" / "ext").rglob("*.parquet"))


def lake_rows(root: Path) -> Counter:
    """(provider, class, event id, raw_data) of every row in the lake."""
    out: Counter = Counter()
    for path in lake_files(root):
        match = LAYOUT.fullmatch(path.relative_to(root / "lake").as_posix())
        rows = duckdb.sql(
            f"SELECT class_uid, metadata.uid, raw_data FROM read_parquet('{path}', hive_partitioning=false)"
        ).fetchall()
        for class_uid, uid, raw in rows:
            out[(match["provider"], class_uid, uid, raw)] += 1
    return out


def wanted(root: Path) -> Counter:
    """What the lake must hold: every archived event of a closed day whose action has a class, once."""
    out: Counter = Counter()
    for name in (n for n in NAMES if (root / n).is_dir()):
        descriptor = providers.get(name)
        m, cp = ocsf.mapping(descriptor), checkpoint(root, name)
        for (day, line), _ in raw_lines(root, name).items():
            event = m.to_ocsf(json.loads(line), line)
            if event is not None and day_closed(descriptor, cp, day):
                out[(name, event["class_uid"], event["metadata"]["uid"], line)] += 1
    return out


def assert_every_event_once(root: Path) -> None:
    want, got = wanted(root), lake_rows(root)
    assert want and set(want.values()) == {1}
    assert got == want


def test_the_layout_is_security_lake_s_one_source_per_class(archive):
    export(archive)
    files = lake_files(archive)
    assert files
    sources = set()
    for path in files:
        match = LAYOUT.fullmatch(path.relative_to(archive / "lake").as_posix())
        assert match, path
        sources.add(match["source"])
        (classes,) = set(
            duckdb.sql(f"SELECT DISTINCT class_name FROM read_parquet('{path}', hive_partitioning=false)").fetchall()
        )
        ocsf_class = next(c for c in CLASSES.values() if c.caption == classes[0])
        assert match["source"] == f"auditcol-{ocsf_class.lake[0]}"  # one class per source
        assert len(match["source"]) <= 20
        days = {
            datetime.fromtimestamp(t / 1000, UTC).strftime("%Y%m%d")
            for (t,) in duckdb.sql(f"SELECT time FROM read_parquet('{path}', hive_partitioning=false)").fetchall()
        }
        assert days == {match["day"]}  # each event in its own eventDay
    assert len(sources) >= 5
    assert not list((archive / "lake" / "ext").rglob("*.json"))  # markers live outside ext/
    assert_every_event_once(archive)


def test_each_file_has_its_class_schema_zstd_sorted_and_within_the_limits(archive):
    export(archive)
    for path in lake_files(archive):
        short = LAYOUT.fullmatch(path.relative_to(archive / "lake").as_posix())["source"].removeprefix("auditcol-")
        name = next(c.name for c in CLASSES.values() if c.lake[0] == short)
        described = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{path}', hive_partitioning=false)").fetchall()
        want = schema(CLASSES[name])
        assert [r[0] for r in described] == list(want)
        assert [r[1].replace('"', "") for r in described] == [t.replace('"', "") for t in want.values()]
        meta = duckdb.sql(
            f"SELECT DISTINCT compression, row_group_id, row_group_compressed_bytes FROM parquet_metadata('{path}')"
        ).fetchall()
        assert {c for c, _, _ in meta} == {"ZSTD"}
        assert all(size <= 256 * 2**20 for _, _, size in meta)
        assert all(p.uncompressed <= 2**20 for p in pages(path))
        times = [
            t for (t,) in duckdb.sql(f"SELECT time FROM read_parquet('{path}', hive_partitioning=false)").fetchall()
        ]
        assert times == sorted(times)


def test_what_the_files_hold_is_valid_ocsf(archive):
    export(archive)
    checked = 0
    for path in lake_files(archive):
        for (text,) in duckdb.sql(
            f"SELECT to_json(t) FROM read_parquet('{path}', hive_partitioning=false) t"
        ).fetchall():
            event = _without_nulls(json.loads(text))
            event["unmapped"] = event.get("unmapped") or {}
            assert validate.errors(event) == []
            checked += 1
    assert checked == sum(wanted(archive).values())


def _without_nulls(value):
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None and v != {}}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def test_a_page_stays_under_the_limit_when_events_are_large(tmp_path):
    big = {"x": "y" * 3000}
    events = []
    for i in range(3000):  # ~10 MB of raw_data: many pages
        e = ocsf.mapping(providers.get("slack")).to_ocsf(
            {"id": f"e{i}", "date_create": 1_760_000_000 + i, "action": "file_downloaded", "actor": {}, **big}
        )
        events.append(e)
    con = lake.connection()
    try:
        path = lake.write_class(con, target(tmp_path), CLASSES["web_resources_activity"], "slack", "2025-10-09", events)
    finally:
        con.close()
    found = pages(path)
    raw_pages = [p for p in found if p.column == "raw_data"]
    assert len(raw_pages) > 5 and max(p.uncompressed for p in found) <= 2**20


def test_a_rerun_writes_nothing_and_an_open_day_is_not_written(archive):
    export(archive)
    before = {p: p.stat().st_mtime_ns for p in lake_files(archive)}
    export(archive)
    assert {p: p.stat().st_mtime_ns for p in lake_files(archive)} == before
    for name in NAMES:
        days = {p.name.removeprefix("dt=") for p in (archive / name).glob("dt=*")}
        open_days = {d for d in days if not day_closed(providers.get(name), checkpoint(archive, name), d)}
        assert open_days
        written = {p.parent.name.removeprefix("eventDay=") for p in lake_files(archive) if p.stem == name}
        assert not {d.replace("-", "") for d in open_days} & written


def test_a_late_object_rewrites_its_day_with_every_event_once(archive):
    export(archive)
    name, descriptor = "slack", providers.get("slack")
    day = min(p.name.removeprefix("dt=") for p in (archive / name).glob("dt=*"))
    first = next((archive / name / f"dt={day}").glob("*.jsonl.gz"))
    late = json.loads(next(iter(raw_lines(archive, name)))[1])
    late.update(id="late-event-0001", action="user_login_failed")
    late["date_create"] = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()) + 60
    LocalArchive(archive).put(f"{name}/dt={day}/late-{first.stem}.jsonl.gz", _gz(json.dumps(late)))
    report = export_local(archive, descriptor, checkpoint(archive, name), target(archive))
    assert list(report.written) == [day]
    assert_every_event_once(archive)
    assert any(uid == "late-event-0001" for _, _, uid, _ in lake_rows(archive))


def _gz(line: str) -> bytes:
    import gzip

    return gzip.compress((line + "\n").encode())


@pytest.fixture(scope="module")
def small(tmp_path_factory, org) -> Path:
    """Two closed days of Slack: a crash at every step of writing them is still a few dozen runs."""
    root = tmp_path_factory.mktemp("lake-small")
    collect(root, org, "slack", days=2.5, count=150)
    return root


def test_a_crash_at_every_step_then_a_rerun_leaves_every_event_once(small, tmp_path):
    descriptor = providers.get("slack")

    def run(root: Path, on_step=None) -> None:
        export_local(root, descriptor, checkpoint(root, "slack"), target(root), on_step=on_step)

    def rows(root: Path) -> Counter:
        return Counter({k: n for k, n in lake_rows(root).items() if k[0] == "slack"})

    reference = tmp_path / "reference"
    shutil.copytree(small, reference)
    steps: list[tuple[str, str]] = []
    run(reference, on_step=lambda step, day: steps.append((step, day)))
    want = rows(reference)
    assert len(steps) >= 8 and want and set(want.values()) == {1}
    assert {(p, c, u) for p, c, u, _ in want} == {(p, c, u) for p, c, u, _ in wanted(reference) if p == "slack"}
    for crash_at in range(len(steps)):
        root = tmp_path / f"crash-{crash_at}"
        shutil.copytree(small, root)
        seen = 0

        def crash(step, day, at=crash_at):
            nonlocal seen
            if seen == at:
                raise Crash(f"{step} {day}")
            seen += 1

        with pytest.raises(Crash):
            run(root, on_step=crash)
        partial = rows(root)
        assert set(partial.values()) <= {1} and set(partial) <= set(want)  # never twice, even half-way
        run(root)
        assert rows(root) == want, steps[crash_at]


def test_a_crash_before_the_rename_leaves_nothing_under_ext(archive, monkeypatch):
    def refuse(src, dst):
        raise Crash("killed before the rename")

    monkeypatch.setattr(lake.os, "replace", refuse)
    with pytest.raises(Crash):
        export(archive)
    assert lake_files(archive) == []
    monkeypatch.undo()
    export(archive)
    assert_every_event_once(archive)


@pytest.mark.parametrize(
    ("region", "account", "message", "prefix"),
    [
        ("us-east-1", "12345", "12 digits", "auditcol"),
        ("mars-1", "123456789012", "not an AWS region", "auditcol"),
        ("us-east-1", "123456789012", "source prefix", "a-prefix-too-long"),
    ],
)
def test_a_wrong_target_is_refused_before_anything_is_written(archive, region, account, message, prefix):
    with pytest.raises(ConfigError, match=message):
        LakeTarget(archive / "lake", region, account, prefix)
    code = main(
        [
            "compact",
            "--archive",
            str(archive),
            "--security-lake",
            str(archive / "lake"),
            "--security-lake-region",
            region,
            "--security-lake-account",
            account,
            "--security-lake-source",
            prefix,
        ]
    )
    assert code != 0
    assert not (archive / "lake").exists() and not (archive / "_compacted").exists()


def test_compact_on_the_cli_writes_the_custom_sources(archive, capsys):
    argv = ["compact", "--archive", str(archive), "--security-lake", str(archive / "lake")]
    argv += ["--security-lake-region", "us-east-1", "--security-lake-account", "123456789012"]
    assert main(argv) == 0
    assert "OCSF for Security Lake" in capsys.readouterr().out
    assert_every_event_once(archive)


def test_every_source_name_fits_security_lake_s_20_characters(tmp_path):
    longest = LakeTarget(tmp_path, "us-east-1", "123456789012", "a" * 13)
    names = [longest.source(c) for c in CLASSES.values()]
    assert len(set(names)) == len(names) and max(map(len, names)) <= 20


def test_the_template_holds_the_crawler_role_only_when_a_prefix_is_given():
    from ..support import load_template

    template = load_template()
    role = template["Resources"]["SecurityLakeCrawlerRole"]
    assert role["Condition"] == "UseSecurityLake"
    assert template["Conditions"]["UseSecurityLake"] == {"Not": [{"Equals": [{"Ref": "SecurityLakeSourcePrefix"}, ""]}]}
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "glue.amazonaws.com"}
    statements = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    objects = next(s for s in statements if "s3:GetObject" in s["Action"])
    assert objects["Resource"]["Sub"].endswith("/ext/${SecurityLakeSourcePrefix}-*")
    pattern = re.compile(template["Parameters"]["SecurityLakeSourcePrefix"]["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch("auditcol") and not pattern.fullmatch("a-prefix-too-long")
    assert template["Outputs"]["SecurityLakeCrawlerRoleArn"]["Condition"] == "UseSecurityLake"


def test_an_object_that_is_not_json_lines_is_named_and_its_day_is_left_as_it_was(archive):
    export(archive)
    before = {p: p.read_bytes() for p in lake_files(archive)}
    day = min(p.name.removeprefix("dt=") for p in (archive / "slack").glob("dt=*"))
    (archive / "slack" / f"dt={day}" / "planted.txt").write_text('{"id": "x"}\nnot json\n')
    with pytest.raises(ArchiveError, match=r"planted.txt line 2 is not a JSON event"):
        export_local(archive, providers.get("slack"), checkpoint(archive, "slack"), target(archive))
    assert {p: p.read_bytes() for p in lake_files(archive)} == before
