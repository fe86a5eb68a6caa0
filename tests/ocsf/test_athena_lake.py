"""The compaction function's Security Lake export (ocsf/athena_lake.py), offline: moto's S3 and Glue,
and an Athena that runs the statements with DuckDB over the raw objects (tests/athena_duck.py). The
layout, file names and schema are the local writer's (lake.py), every event is once in its class
after a crash at every call, a failed query marks nothing, and the option off writes nothing."""

from __future__ import annotations

import gzip
import json
import os
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import boto3
import duckdb
import pytest
import sqlglot
from moto import mock_aws

from audit_collector import providers
from audit_collector.aws.compaction_handler import compact_all
from audit_collector.compaction.athena import AthenaCompactor, CompactionFailed, Target
from audit_collector.errors import ConfigError
from audit_collector.ocsf import athena_lake, lake_sql
from audit_collector.ocsf.athena_lake import AthenaLakeExporter, LakeDestination
from audit_collector.ocsf.classes import CLASSES
from audit_collector.ocsf.lake import LakeTarget, export_local, schema

from ..athena_duck import DuckAthena
from ..aws.test_compaction_handler import DATABASE, WORKGROUP, Recorder, Store, glue_columns
from ..compaction.test_compaction import checkpoint, collect
from ..parquet_pages import pages
from ..support import BUCKET, TABLE, Crash, load_template

FULL = os.environ.get("CRASH_POINTS") == "all"
NAMES = ("slack", "asana")
PREFIX = "audit/"
LAKE = "aws-security-data-lake-us-east-1-1a2b3c4d5e6f"
RESULTS = "athena-results-bucket"
DEST = LakeDestination(LAKE, "us-east-1", "123456789012", "auditcol", f"s3://{RESULTS}/results/security-lake/")
LAYOUT = re.compile(
    r"ext/(?P<source>auditcol-[a-z]+)/region=us-east-1/accountId=123456789012/"
    r"eventDay=(?P<day>\d{8})/(?P<name>(?P<provider>[a-z]+)(-\d+)?\.parquet)"
)
DESCRIPTORS = [providers.get(n) for n in NAMES]


@pytest.fixture(scope="module")
def collected(tmp_path_factory, org) -> Path:
    """Two and a half days of both providers: two closed days each, and an open one."""
    root = tmp_path_factory.mktemp("athena-lake-raw")
    for name in NAMES:
        collect(root, org, name, days=2.5, count=200)
    return root


@pytest.fixture(scope="module")
def local_lake(collected, tmp_path_factory) -> Path:
    """What the local writer makes of the same archive: the reference."""
    root = tmp_path_factory.mktemp("athena-lake-local")
    for name in NAMES:
        target = LakeTarget(root, DEST.region, DEST.account_id, DEST.source_prefix)
        export_local(collected, providers.get(name), checkpoint(collected, name), target)
    return root


@pytest.fixture
def aws(collected):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in (BUCKET, LAKE, RESULTS):
            s3.create_bucket(Bucket=bucket)
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": DATABASE})
        for descriptor in DESCRIPTORS:
            table = glue_columns(descriptor)
            storage = dict(table["StorageDescriptor"], Location=f"s3://{BUCKET}/{PREFIX}_compacted/{descriptor.name}/")
            glue.create_table(
                DatabaseName=DATABASE,
                TableInput={
                    "Name": table["Name"],
                    "PartitionKeys": table["PartitionKeys"],
                    "StorageDescriptor": storage,
                },
            )
        for name in NAMES:
            for path in sorted((collected / name).rglob("*.jsonl.gz")):
                key = f"{PREFIX}{path.relative_to(collected).as_posix()}"
                s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
        yield {"s3": s3, "glue": glue, "collected": collected}


def compactor(aws, log, *, crash_at=None, files=1, fail=None, lake=True, deadline=None, athena=None) -> AthenaCompactor:
    """``athena``: a DuckAthena to reuse (its copy of the raw objects and its connection)."""
    athena = athena or DuckAthena(aws["s3"], BUCKET, PREFIX)
    athena.files_per_unload, athena.fail = files, fail
    store = Store({n: checkpoint(aws["collected"], n) for n in NAMES})
    return AthenaCompactor(
        Target(BUCKET, PREFIX, DATABASE, WORKGROUP, TABLE),
        athena=Recorder("athena", athena, log, crash_at),
        glue=Recorder("glue", aws["glue"], log, crash_at),
        s3=Recorder("s3", aws["s3"], log, crash_at),
        store=store,
        sleep=lambda _s: None,
        lake=AthenaLakeExporter(DEST, deadline=deadline) if lake else None,
    )


def lake_keys(s3, bucket=LAKE, prefix="") -> list[str]:
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [item["Key"] for item in page.get("Contents", [])]
    return sorted(out)


def download(s3, key: str, tmp: Path) -> Path:
    path = tmp / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(s3.get_object(Bucket=LAKE, Key=key)["Body"].read())
    return path


def rows_of(path: Path) -> list[tuple]:
    """Every column but ``unmapped`` (NULL in Athena's files, see athena_lake), in file order."""
    return duckdb.sql(
        f"SELECT * EXCLUDE (unmapped) FROM read_parquet('{path.as_posix()}', hive_partitioning=false)"
    ).fetchall()


def lake_rows(s3, tmp: Path) -> Counter:
    """(source, day, provider, event id) of every row in the S3 lake, counted."""
    out: Counter = Counter()
    for key in lake_keys(s3):
        found = LAYOUT.fullmatch(key)
        assert found, key
        path = download(s3, key, tmp)
        for (uid,) in duckdb.sql(
            f"SELECT metadata.uid FROM read_parquet('{path}', hive_partitioning=false)"
        ).fetchall():
            out[(found["source"], found["day"], found["provider"], uid)] += 1
    return out


def local_rows(local_lake: Path) -> Counter:
    out: Counter = Counter()
    for path in sorted((local_lake / "ext").rglob("*.parquet")):
        found = LAYOUT.fullmatch(path.relative_to(local_lake).as_posix())
        for (uid,) in duckdb.sql(
            f"SELECT metadata.uid FROM read_parquet('{path}', hive_partitioning=false)"
        ).fetchall():
            out[(found["source"], found["day"], found["provider"], uid)] += 1
    return out


# ------------------------------------------------------------------ what is written


def test_the_lake_holds_what_the_local_writer_writes(aws, local_lake, tmp_path):
    report = compact_all(compactor(aws, []))
    local = sorted(p.relative_to(local_lake).as_posix() for p in (local_lake / "ext").rglob("*.parquet"))
    keys = lake_keys(aws["s3"])
    assert keys == local and len({LAYOUT.fullmatch(k)["source"] for k in keys}) >= 5  # same names, same folders
    for key in keys:
        found = LAYOUT.fullmatch(key)
        ocsf = next(c for c in CLASSES.values() if f"auditcol-{c.lake[0]}" == found["source"])
        ours, theirs = download(aws["s3"], key, tmp_path), local_lake / key
        described = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{ours}', hive_partitioning=false)").fetchall()
        assert [(r[0], r[1].replace('"', "")) for r in described] == [
            (n, t.replace('"', "")) for n, t in schema(ocsf).items()
        ]
        assert rows_of(ours) == rows_of(theirs)  # the same events, values and order
        meta = duckdb.sql(f"SELECT DISTINCT compression FROM parquet_metadata('{ours}')").fetchall()
        assert meta == [("ZSTD",)] and all(p.uncompressed <= 2**20 for p in pages(ours))
        times = [
            t for (t,) in duckdb.sql(f"SELECT time FROM read_parquet('{ours}', hive_partitioning=false)").fetchall()
        ]
        assert times == sorted(times)
        days = {datetime.fromtimestamp(t / 1000, UTC).strftime("%Y%m%d") for t in times}
        assert days == {found["day"]}
    markers = lake_keys(aws["s3"], BUCKET, f"{PREFIX}_compacted/_security_lake/")
    assert {m.split("/")[3] for m in markers} == set(NAMES) and len(markers) == 4  # two closed days each
    record = json.loads(aws["s3"].get_object(Bucket=BUCKET, Key=markers[0])["Body"].read())
    assert record["destination"]["bucket"] == LAKE and sum(record["classes"].values()) > 0
    lake_reports = [r["security_lake"] for r in report["providers"]]
    assert sum(len(r["written"]) for r in lake_reports) == 4 and all(r["behind"] == 0 for r in lake_reports)
    assert sum(r["files"] for r in lake_reports) == len(keys)


def test_a_rerun_sends_no_query_and_writes_nothing(aws):
    compact_all(compactor(aws, []))
    log = []
    report = compact_all(compactor(aws, log))
    lake_calls = [
        (c, a, kw) for c, a, kw in log if kw.get("Bucket") == LAKE or "security-lake" in kw.get("QueryString", "")
    ]
    assert lake_calls == [] and all(r["security_lake"]["up_to_date"] == 2 for r in report["providers"])


def test_athena_s_split_files_get_fixed_names_and_a_rerun_with_one_file_removes_the_rest(aws, local_lake, tmp_path):
    compact_all(compactor(aws, [], files=3))
    split = lake_keys(aws["s3"])
    assert any(k.endswith("-2.parquet") for k in split)
    assert lake_rows(aws["s3"], tmp_path / "a") == local_rows(local_lake)
    for key in lake_keys(aws["s3"], BUCKET, f"{PREFIX}_compacted/_security_lake/"):
        aws["s3"].delete_object(Bucket=BUCKET, Key=key)  # forget the markers: every day is written again
    compact_all(compactor(aws, [], files=1))
    assert lake_keys(aws["s3"]) == sorted(
        p.relative_to(local_lake).as_posix() for p in (local_lake / "ext").rglob("*.parquet")
    )
    assert lake_rows(aws["s3"], tmp_path / "b") == local_rows(local_lake)


def test_files_the_new_day_does_not_name_are_removed_and_other_providers_files_are_kept(aws, local_lake, tmp_path):
    compact_all(compactor(aws, []))
    day = min(LAYOUT.fullmatch(k)["day"] for k in lake_keys(aws["s3"]))
    planted = []
    for short in ("group", "authn", "api"):  # Asana maps nothing to group, neither provider to API Activity
        folder = f"ext/auditcol-{short}/region=us-east-1/accountId=123456789012/eventDay={day}/"
        planted += [
            f"{folder}{name}" for name in ("slack-7.parquet", "asana-1.parquet", "other.parquet", "slackbot.parquet")
        ]
    for key in planted:
        aws["s3"].put_object(Bucket=LAKE, Key=key, Body=b"PAR1")
    _drop_markers(aws)
    compact_all(compactor(aws, []))
    keys = set(lake_keys(aws["s3"]))
    assert {k for k in planted if k.endswith(("other.parquet", "slackbot.parquet"))} <= keys  # not ours
    assert not {k for k in planted if k.endswith(("slack-7.parquet", "asana-1.parquet"))} & keys
    for key in planted:
        aws["s3"].delete_object(Bucket=LAKE, Key=key)
    assert lake_rows(aws["s3"], tmp_path) == local_rows(local_lake)


def test_a_late_object_rewrites_its_day(aws, tmp_path):
    compact_all(compactor(aws, []))
    descriptor = providers.get("slack")
    closed = sorted({LAYOUT.fullmatch(k)["day"] for k in lake_keys(aws["s3"]) if "/eventDay=" in k})
    first = closed[0]
    iso = f"{first[:4]}-{first[4:6]}-{first[6:]}"
    event = {
        "id": "late-event-0001",
        "action": "user_login_failed",
        "date_create": int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()) + 60,
    }
    event |= {
        "actor": {"type": "user", "user": {"id": "U1", "email": "a@example.com"}},
        "context": {"ip_address": "10.0.0.1"},
    }
    key = f"{PREFIX}{descriptor.name}/dt={iso}/late-0001.jsonl.gz"
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=gzip.compress((json.dumps(event) + "\n").encode()))
    report = compact_all(compactor(aws, []))
    assert list(report["providers"][0]["security_lake"]["written"]) == [iso]
    rows = lake_rows(aws["s3"], tmp_path)
    assert rows[("auditcol-authn", first, "slack", "late-event-0001")] == 1 and set(rows.values()) == {1}


# ------------------------------------------------------------------ crashes and failures


def _drop_markers(aws) -> None:
    for key in lake_keys(aws["s3"], BUCKET, f"{PREFIX}_compacted/_security_lake/"):
        aws["s3"].delete_object(Bucket=BUCKET, Key=key)


def _wipe_lake(aws) -> None:
    for key in lake_keys(aws["s3"]):
        aws["s3"].delete_object(Bucket=LAKE, Key=key)
    _drop_markers(aws)


def _snapshot(aws) -> dict[tuple[str, str], bytes]:
    out = {}
    for bucket, prefix in ((LAKE, ""), (BUCKET, f"{PREFIX}_compacted/_security_lake/")):
        for key in lake_keys(aws["s3"], bucket, prefix):
            out[(bucket, key)] = aws["s3"].get_object(Bucket=bucket, Key=key)["Body"].read()
    return out


def _restore(aws, snapshot) -> None:
    _wipe_lake(aws)
    for (bucket, key), body in snapshot.items():
        aws["s3"].put_object(Bucket=bucket, Key=key, Body=body)


@pytest.mark.parametrize(
    ("before", "after"), [(None, 1), (1, 3), (3, 1)], ids=["fresh", "one-file-to-three", "three-files-to-one"]
)
def test_a_crash_at_every_call_then_a_rerun_leaves_every_event_once_per_class(aws, local_lake, tmp_path, before, after):
    """Slack's two closed days, from an empty lake or over a lake already written (one file a class-day,
    or Athena's split into three) whose markers are gone: killed at each call of the run that writes
    them (each S3 write, query start and result page), then run again. Half-way, no event is there
    twice; after the rerun, every event is there once, in its class."""
    want = Counter({k: n for k, n in local_rows(local_lake).items() if k[2] == "slack"})
    assert want and set(want.values()) == {1}
    athena = DuckAthena(aws["s3"], BUCKET, PREFIX)
    compact_all(compactor(aws, [], lake=False, athena=athena), ["slack"])  # compaction itself is done
    if before is not None:
        compact_all(compactor(aws, [], files=before, athena=athena), ["slack"])
        _drop_markers(aws)  # every day is written again, over the old files
    snapshot = _snapshot(aws)
    calls = []
    compact_all(compactor(aws, calls, files=after, athena=athena), ["slack"])
    first = next(i for i, (_, _, kw) in enumerate(calls, 1) if " AS code" in kw.get("QueryString", ""))
    every = [i for i, (_, call, _) in enumerate(calls, 1) if i >= first and call != "get_query_execution"]
    assert len(every) >= 30 and any(call == "delete_object" for _, call, _ in calls) == (before is not None)
    # make test: the first and last call, a stride of the writes and of the rest (each case takes
    # seconds); CRASH_POINTS=all (make crash-points): every call.
    writes = [i for i in every if calls[i - 1][1] in ("copy_object", "delete_object", "put_object")]
    points = every if FULL else sorted({every[0], every[-1], *writes[1::6], *every[::15]})
    print(f"{len(points)} of {len(every)} crash points ({before} -> {after} files)")
    for n, crash_at in enumerate(points):
        _restore(aws, snapshot)
        with pytest.raises(Crash):
            compact_all(compactor(aws, [], crash_at=(crash_at,), files=after, athena=athena), ["slack"])
        partial = lake_rows(aws["s3"], tmp_path / f"{n}-partial")
        assert set(partial.values()) <= {1} and set(partial) <= set(want), calls[crash_at - 1][:2]  # never twice
        compact_all(compactor(aws, [], files=after, athena=athena), ["slack"])
        assert lake_rows(aws["s3"], tmp_path / f"{n}-rerun") == want, calls[crash_at - 1][:2]


def test_a_failed_query_marks_nothing_for_its_day_and_raises(aws, local_lake, tmp_path):
    want = local_rows(local_lake)
    days = sorted({d for _, d, _, _ in want})

    def fail(text):
        return (
            "UNLOAD" in text
            and "security-lake/slack/" in text
            and "auditcol" not in text
            and f"dt={days[0][:4]}-{days[0][4:6]}-{days[0][6:]}" in text
            and "/entity_management/" in text
        )

    with pytest.raises(CompactionFailed, match="security lake dt="):
        compact_all(compactor(aws, [], fail=fail))
    markers = lake_keys(aws["s3"], BUCKET, f"{PREFIX}_compacted/_security_lake/slack/")
    assert len(markers) == 1  # the other day is written and marked
    assert not any(f"dt={days[0][:4]}-" in m and days[0][6:] + "/" in m for m in markers)
    got = lake_rows(aws["s3"], tmp_path / "a")
    assert not any(p == "slack" and d == days[0] for _, d, p, _ in got)  # nothing of the failed day copied
    compact_all(compactor(aws, []))
    assert lake_rows(aws["s3"], tmp_path / "b") == want


def test_a_count_query_that_fails_is_reported_too(aws):
    with pytest.raises(CompactionFailed, match="count query FAILED"):
        compact_all(compactor(aws, [], fail=lambda text: text.startswith("SELECT") and " AS code" in text))
    assert lake_keys(aws["s3"]) == []


def test_past_the_deadline_no_day_is_started_and_the_days_are_behind(aws):
    report = compact_all(compactor(aws, [], deadline=0))
    assert lake_keys(aws["s3"]) == []
    assert [r["security_lake"]["behind"] for r in report["providers"]] == [2, 2]


# ------------------------------------------------------------------ the option, the SQL


def test_with_the_option_off_nothing_touches_the_lake(aws):
    assert (
        athena_lake.from_event({}) is None
        and athena_lake.from_event({"security_lake": SPEC | {"source_prefix": ""}}) is None
    )
    log = []
    report = compact_all(compactor(aws, log, lake=False))
    assert "security_lake" not in report["providers"][0]
    assert not [kw for _, _, kw in log if kw.get("Bucket") == LAKE or "_security_lake" in kw.get("Key", "")]
    assert not [kw for _, _, kw in log if "security-lake" in kw.get("QueryString", "")]
    assert lake_keys(aws["s3"]) == []


SPEC = {
    "source_prefix": "auditcol",
    "bucket": LAKE,
    "region": "us-east-1",
    "account_id": "123456789012",
    "staging": f"s3://{RESULTS}/results/security-lake/",
}


def test_the_schedule_input_gives_the_destination():
    assert athena_lake.from_event({"security_lake": SPEC}).destination == DEST


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bucket": ""}, "no bucket"),
        ({"bucket": "Not_A_Bucket"}, "not an S3 bucket"),
        ({"region": "mars-1"}, "not an AWS region"),
        ({"account_id": "12345"}, "12 digits"),
        ({"staging": "s3://b"}, "not an S3 folder"),
        ({"source_prefix": "a-prefix-too-long"}, "source prefix"),
    ],
)
def test_a_wrong_security_lake_input_is_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        athena_lake.from_event({"security_lake": SPEC | change})


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=lambda d: d.name)
def test_every_statement_parses_in_athena_s_dialect(descriptor):
    for ocsf in lake_sql.classes_of(descriptor):
        text = lake_sql.unload_class(descriptor, ocsf, "2026-11-01", f"s3://{RESULTS}/results/x/")
        inner = text[len("UNLOAD (") : text.index(")\nTO '")]
        sqlglot.parse_one(inner, read="athena", error_level=sqlglot.ErrorLevel.RAISE)
    sqlglot.parse_one(
        lake_sql.count_codes(descriptor, "2026-11-01"), read="athena", error_level=sqlglot.ErrorLevel.RAISE
    )


def test_every_type_of_the_schema_has_athena_s_spelling():
    for ocsf in CLASSES.values():
        for duck in schema(ocsf).values():
            athena = lake_sql.athena_type(duck)
            assert "STRUCT" not in athena and "[]" not in athena
            sqlglot.parse_one(f"SELECT CAST(NULL AS {athena})", read="athena", error_level=sqlglot.ErrorLevel.RAISE)


def test_the_ip_pattern_agrees_with_python_on_the_addresses_audit_apis_send():
    import ipaddress

    for text in ("1.2.3.4", "255.255.255.255", "10.0.0.1", "::1", "2001:db8::1", "::ffff:1.2.3.4", "fe80::1:2:3:4"):
        ipaddress.ip_address(text)
        assert re.fullmatch(lake_sql.IP_PATTERN, text), text
    for text in ("1.23.45.678", "01.2.3.4", "1.2.3", "abc", "", "1.2.3.4.5", "localhost"):
        assert not re.fullmatch(lake_sql.IP_PATTERN, text), text


# ------------------------------------------------------------------ template.yaml agrees with the code


def test_the_schedule_names_the_lake_and_the_role_may_write_it_only_under_the_condition():
    template = load_template()
    text = template["Resources"]["CompactionSchedule"]["Properties"]["Target"]["Input"]["Sub"]
    values = {"SecurityLakeSourcePrefix": "auditcol", "SecurityLakeBucketSuffix": "1a2b3c4d5e6f"}
    values |= {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AthenaResultsBucket": RESULTS}
    payload = json.loads(re.sub(r"\$\{([\w:]+)\}", lambda m: values.get(m[1], m[1]), text))
    assert athena_lake.from_event(payload).destination == DEST
    now = template["Outputs"]["CompactNowCommand"]["Value"]["Sub"].split("--payload '")[1].split("'")[0]
    assert json.loads(re.sub(r"\$\{([\w:]+)\}", lambda m: values.get(m[1], m[1]), now)) == payload  # by hand too
    assert "Environment" not in template["Resources"]["CompactionFunction"]["Properties"]
    statements = template["Resources"]["CompactionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    lake = [s["If"] for s in statements if "If" in s and s["If"][0] == "UseSecurityLake"]
    assert len(lake) == 2 and all(branch[2] == {"Ref": "AWS::NoValue"} for branch in lake)
    for _, statement, _ in lake:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for resource in resources:
            assert ":::aws-security-data-lake-${AWS::Region}-${SecurityLakeBucketSuffix}" in resource["Sub"]
        if "s3:ListBucket" in statement["Action"]:
            assert statement["Condition"]["StringLike"]["s3:prefix"] == {"Sub": "ext/${SecurityLakeSourcePrefix}-*"}
        else:
            assert statement["Action"] == ["s3:PutObject", "s3:DeleteObject"]
            assert all(r["Sub"].endswith("/ext/${SecurityLakeSourcePrefix}-*") for r in resources)
    assert template["Rules"]["SecurityLakeNeedsItsBucket"]["RuleCondition"] == template["Conditions"]["UseSecurityLake"]
    assert DEST.staging.removeprefix(f"s3://{RESULTS}/").startswith("results/")  # under AthenaQueryResults' grant


def test_the_marker_prefix_is_under_the_compacted_prefix_the_role_writes(aws):
    c = compactor(aws, [])
    assert c.lake.marker_prefix(c, DESCRIPTORS[0]).startswith(f"{PREFIX}_compacted/")
