"""The compaction function against moto: the right statements, for closed days only, published in the
right order (UNLOAD, then the Glue partition, then the view); reruns and crashes at every call
converge; late objects recompact their day; a failed query publishes nothing and raises."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import boto3
import pytest
import sqlglot
from moto import mock_aws

from audit_collector import providers
from audit_collector.aws.compaction_handler import compact_all, lambda_handler
from audit_collector.compaction import sql
from audit_collector.compaction.athena import AthenaCompactor, CompactionFailed, Target
from audit_collector.storage.archive import _gzip

from ..support import BUCKET, TABLE, Crash, create_state_table, load_template

NOW = int(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp())
DATABASE, WORKGROUP, PREFIX = "audit_db", "audit-wg", "audit/"
DAYS = ["2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"]  # the 20th is still open
DESCRIPTORS = [d for d in providers.all_descriptors() if d.compacted_columns]


def checkpoint(descriptor) -> dict:
    ups = descriptor.units_per_second
    live = {"ranges": [[(NOW - 5 * 86400) * ups, None]], "watermark": (NOW - 120) * ups, "window": None, "meta": {}}
    return {"jobs": {"live": live}}


class Store:
    def __init__(self, checkpoints):
        self.checkpoints = checkpoints

    def read(self, provider):
        return {"checkpoint": self.checkpoints.get(provider, {})}


class Recorder:
    """Proxies a boto3 client: records every call (shared log, in order) and can die at the n-th."""

    def __init__(self, name, client, log, crash_at=None, fail=None):
        self.name, self.client, self.log, self.crash_at, self.fail = name, client, log, crash_at, fail

    def __getattr__(self, attr):
        target = getattr(self.client, attr)
        if attr in ("get_paginator", "exceptions", "meta"):
            return target

        def call(**kwargs):
            self.log.append((self.name, attr, kwargs))
            if self.crash_at is not None and len(self.log) == self.crash_at[0]:
                raise Crash(f"{self.name}.{attr}")
            response = target(**kwargs)
            if attr == "get_query_execution" and self.fail and self.fail(kwargs["QueryExecutionId"]):
                response["QueryExecution"]["Status"]["State"] = "FAILED"
            return response

        return call


def glue_columns(descriptor) -> list[dict]:
    """The compacted table's columns as template.yaml declares them."""
    resources = load_template()["Resources"]
    (table,) = [
        r["Properties"]["TableInput"]
        for r in resources.values()
        if r["Type"] == "AWS::Glue::Table" and r["Properties"]["TableInput"]["Name"] == sql.compacted_table(descriptor)
    ]
    return table


@pytest.fixture
def aws():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": DATABASE})
        for descriptor in DESCRIPTORS:
            table = glue_columns(descriptor)
            storage = dict(table["StorageDescriptor"], Location=f"s3://{BUCKET}/{PREFIX}_compacted/{descriptor.name}/")
            glue.create_table(
                DatabaseName=DATABASE,
                TableInput={
                    "Name": table["Name"],
                    "TableType": "EXTERNAL_TABLE",
                    "PartitionKeys": table["PartitionKeys"],
                    "StorageDescriptor": storage,
                    "Parameters": table["Parameters"],
                },
            )
            for day in DAYS:
                for part in range(3):  # live collection writes many small objects a day
                    put_raw(s3, descriptor, day, f"w{part}-p00000", [f"{day}-{part}"])
        athena = boto3.client("athena", region_name="us-east-1")
        athena.create_work_group(Name=WORKGROUP, Configuration={"ResultConfiguration": {"OutputLocation": "s3://r/"}})
        yield {"s3": s3, "glue": glue, "athena": athena}


def put_raw(s3, descriptor, day, name, ids):
    lines = [json.dumps({descriptor.id_field: i, descriptor.time_field: day}).encode() for i in ids]
    key = f"{PREFIX}{descriptor.name}/dt={day}/{name}.jsonl.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=_gzip(b"\n".join(lines) + b"\n"))


def compactor(aws, log, crash_at=None, fail=None, **target):
    store = Store({d.name: checkpoint(d) for d in DESCRIPTORS})
    return AthenaCompactor(
        Target(BUCKET, PREFIX, DATABASE, WORKGROUP, TABLE, **target),
        athena=Recorder("athena", aws["athena"], log, crash_at, fail),
        glue=Recorder("glue", aws["glue"], log, crash_at),
        s3=aws["s3"],
        store=store,
        sleep=lambda _s: None,
    )


def partitions(aws, descriptor) -> dict[str, dict]:
    found = aws["glue"].get_partitions(DatabaseName=DATABASE, TableName=sql.compacted_table(descriptor))
    return {p["Values"][0]: p for p in found["Partitions"]}


def statements(log) -> list[str]:
    return [kwargs["QueryString"] for client, call, kwargs in log if call == "start_query_execution"]


def unloaded(log) -> dict[str, str]:
    """Location -> statement of every UNLOAD sent."""
    out = {}
    for text in statements(log):
        if text.startswith("UNLOAD"):
            out[re.search(r"\nTO '([^']+)'", text)[1]] = text
    return out


def test_closed_days_are_unloaded_then_published_then_the_view_moves(aws):
    log = []
    report = compact_all(compactor(aws, log))
    for descriptor, result in zip(DESCRIPTORS, report["providers"], strict=True):
        assert result["compacted"] == DAYS[:-1] and result["watermark"] == DAYS[-2] and result["behind"] == 0
        published = partitions(aws, descriptor)
        assert sorted(published) == DAYS[:-1]  # the open day is not compacted
        for day, partition in published.items():
            location = partition["StorageDescriptor"]["Location"]
            assert re.fullmatch(
                rf"s3://{BUCKET}/{PREFIX}_compacted/{descriptor.name}/dt={day}/run=[0-9TZ]+-[0-9a-f]{{8}}/", location
            )
            assert partition["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
            assert partition["Parameters"]["objects"] == "3" and len(partition["Parameters"]["source"]) == 64
            # Its UNLOAD was sent, for this day, and succeeded before the partition was written.
            unload = unloaded(log)[location]
            assert unload == sql.unload(descriptor, day, location)
            sent = next(i for i, (_, _, kw) in enumerate(log) if kw.get("QueryString") == unload)
            made = next(
                i
                for i, (_, call, kw) in enumerate(log)
                if call == "batch_create_partition"
                and kw["PartitionInputList"][0]["Values"] == [day]
                and kw["TableName"] == sql.compacted_table(descriptor)
            )
            polled = [i for i, (_, call, _) in enumerate(log) if call == "get_query_execution"]
            assert sent < min(p for p in polled if p > sent) < made
        view = [s for s in statements(log) if s.startswith(f"CREATE OR REPLACE VIEW {sql.all_view(descriptor)}")]
        assert view == [sql.create_view(descriptor, DAYS[-2])]
        view_at = next(i for i, (_, _, kw) in enumerate(log) if kw.get("QueryString") == view[0])
        last_partition = max(
            i
            for i, (_, call, kw) in enumerate(log)
            if call == "batch_create_partition" and kw["TableName"] == sql.compacted_table(descriptor)
        )
        assert last_partition < view_at  # the view moves only after the days it covers are published
    for text in statements(log):  # what Athena was sent parses in its dialect
        inner = text[len("UNLOAD (") : text.index(")\nTO '")] if text.startswith("UNLOAD") else text
        sqlglot.parse_one(inner, read="athena", error_level=sqlglot.ErrorLevel.RAISE)


def test_a_rerun_sends_no_unload_and_keeps_the_partitions(aws):
    compact_all(compactor(aws, []))
    before = {d.name: partitions(aws, d) for d in DESCRIPTORS}
    log = []
    report = compact_all(compactor(aws, log))
    assert all(r["compacted"] == [] for r in report["providers"])
    assert not unloaded(log) and not any("partition" in call for _, call, _ in log if call != "get_partitions")
    assert {d.name: partitions(aws, d) for d in DESCRIPTORS} == before


def test_a_crash_at_every_call_then_a_rerun_converges(aws):
    calls = []
    compact_all(compactor(aws, calls))  # how many calls a full run makes
    total = len(calls)
    for crash_at in range(1, total + 1):
        for descriptor in DESCRIPTORS:  # start from nothing compacted
            for day in partitions(aws, descriptor):
                aws["glue"].delete_partition(
                    DatabaseName=DATABASE, TableName=sql.compacted_table(descriptor), PartitionValues=[day]
                )
        log = []
        with pytest.raises(Crash):
            compact_all(compactor(aws, log, crash_at=(crash_at,)))
        crashed = dict(unloaded(log))
        # Whatever is published after the crash points at a run whose UNLOAD succeeded.
        for descriptor in DESCRIPTORS:
            for partition in partitions(aws, descriptor).values():
                assert partition["StorageDescriptor"]["Location"] in crashed
        rerun = []
        report = compact_all(compactor(aws, rerun))
        sent = {**crashed, **unloaded(rerun)}
        for descriptor, result in zip(DESCRIPTORS, report["providers"], strict=True):
            published = partitions(aws, descriptor)
            assert sorted(published) == DAYS[:-1] and result["watermark"] == DAYS[-2]
            for day, partition in published.items():
                assert sent[partition["StorageDescriptor"]["Location"]].startswith("UNLOAD")
                assert f"WHERE dt = '{day}'" in sent[partition["StorageDescriptor"]["Location"]]
        assert sql.create_view(DESCRIPTORS[-1], DAYS[-2]) in statements(rerun)


def test_a_late_object_recompacts_only_its_day(aws):
    compact_all(compactor(aws, []))
    descriptor = DESCRIPTORS[0]
    before = partitions(aws, descriptor)
    put_raw(aws["s3"], descriptor, DAYS[1], "sweep-1-p00000", ["late-1"])
    log = []
    report = compact_all(compactor(aws, log))
    assert report["providers"][0]["compacted"] == [DAYS[1]]
    assert all(r["compacted"] == [] for r in report["providers"][1:])
    after = partitions(aws, descriptor)
    assert after[DAYS[1]]["Parameters"]["objects"] == "4"
    assert after[DAYS[1]]["StorageDescriptor"]["Location"] != before[DAYS[1]]["StorageDescriptor"]["Location"]
    assert [call for _, call, _ in log if "partition" in call and call != "get_partitions"] == ["update_partition"]
    assert {d: p for d, p in after.items() if d != DAYS[1]} == {d: p for d, p in before.items() if d != DAYS[1]}


def test_a_failed_unload_publishes_nothing_for_its_day_and_raises(aws):
    log = []

    def fail(query_id):
        text = next(kw["QueryString"] for _, c, kw in log if c == "start_query_execution" and kw.get("_id") == query_id)
        return text.startswith("UNLOAD") and f"dt = '{DAYS[1]}'" in text

    # Tag each start with the id moto returns, so `fail` can look the statement up.
    class Tagging(Recorder):
        def __getattr__(self, attr):
            call = super().__getattr__(attr)
            if attr != "start_query_execution":
                return call

            def start(**kwargs):
                response = call(**kwargs)
                log[-1][2]["_id"] = response["QueryExecutionId"]
                return response

            return start

    c = compactor(aws, log)
    c.athena = Tagging("athena", aws["athena"], log, None, fail)
    with pytest.raises(CompactionFailed, match=DAYS[1]):
        compact_all(c)
    for descriptor in DESCRIPTORS:
        published = partitions(aws, descriptor)
        assert DAYS[1] not in published and sorted(published) == [DAYS[0], *DAYS[2:-1]]
        # The view stops before the gap: the failed day and the ones after it are read raw.
        assert sql.create_view(descriptor, DAYS[0]) in statements(log)


def test_the_files_each_unload_wrote_are_kept_with_the_partition_and_reported(aws):
    """Athena may split a day across parallel writers: the count is recorded, not assumed."""
    log, wrote = [], {}

    class Writing(Recorder):  # an UNLOAD that writes 1 to 3 files, as Athena's parallel writers may
        def __getattr__(self, attr):
            call = super().__getattr__(attr)
            if attr != "start_query_execution":
                return call

            def start(**kwargs):
                text = kwargs["QueryString"]
                if text.startswith("UNLOAD"):
                    location = re.search(r"\nTO 's3://[^/]+/([^']+)'", text)[1]
                    wrote[location] = 1 + len(wrote) % 3
                    for n in range(wrote[location]):
                        aws["s3"].put_object(Bucket=BUCKET, Key=f"{location}part-{n}", Body=b"PAR1")
                return call(**kwargs)

            return start

    def check(report):
        for descriptor, result in zip(DESCRIPTORS, report["providers"], strict=True):
            counts = {}
            for day, partition in partitions(aws, descriptor).items():
                location = partition["StorageDescriptor"]["Location"].removeprefix(f"s3://{BUCKET}/")
                assert partition["Parameters"]["files"] == str(wrote[location])  # its own run's files only
                if day in result["compacted"]:
                    counts[day] = wrote[location]
            assert result["most_files_a_day"] == max(counts.values())

    c = compactor(aws, log)
    c.athena = Writing("athena", aws["athena"], log)
    check(compact_all(c))
    assert len(wrote) == len(DESCRIPTORS) * len(DAYS[:-1]) and set(wrote.values()) == {1, 2, 3}
    # A late object: the day is compacted again into a new run folder, next to the old one's files.
    for descriptor in DESCRIPTORS:
        put_raw(aws["s3"], descriptor, DAYS[1], "late-p00000", [f"{DAYS[1]}-late"])
    before = len(wrote)
    check(compact_all(c))
    assert len(wrote) == before + len(DESCRIPTORS)


def test_a_run_folder_that_cannot_be_listed_is_published_with_its_count_unknown(aws):
    class Unlistable:  # the compaction role's listing refused on run folders only
        def __init__(self, s3):
            self.s3 = s3

        def __getattr__(self, attr):
            return getattr(self.s3, attr)

        def get_paginator(self, name):
            real = self.s3.get_paginator(name)

            class Paginator:
                def paginate(self, **kwargs):
                    if "/run=" in kwargs.get("Prefix", ""):
                        raise PermissionError("AccessDenied")
                    return real.paginate(**kwargs)

            return Paginator()

    c = compactor(aws, [])
    c.s3 = Unlistable(aws["s3"])
    report = compact_all(c)
    for descriptor, result in zip(DESCRIPTORS, report["providers"], strict=True):
        assert result["compacted"] == DAYS[:-1] and result["most_files_a_day"] is None
        assert {p["Parameters"]["files"] for p in partitions(aws, descriptor).values()} == {"unknown"}


def test_the_handler_reads_its_target_from_the_schedule_input(aws, capsys):
    schedule = load_template()["Resources"]["CompactionSchedule"]["Properties"]["Target"]
    text = schedule["Input"]["Sub"]
    values = {"ArchiveBucket": BUCKET, "ArchivePrefix": PREFIX, "AuditDatabase": DATABASE}
    values |= {"AthenaWorkGroup": WORKGROUP, "StateTable": TABLE}
    values |= {"SecurityLakeSourcePrefix": "", "SecurityLakeBucketSuffix": "", "AthenaResultsBucket": "r"}  # off
    payload = json.loads(re.sub(r"\$\{(\w+)\}", lambda m: values[m[1]], text))
    create_state_table(boto3.client("dynamodb", region_name="us-east-1"))
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    for descriptor in DESCRIPTORS:
        ddb.put_item(
            TableName=TABLE,
            Item={
                "pk": {"S": descriptor.name},
                "sk": {"S": "state"},
                "version": {"N": "1"},
                "checkpoint": {"S": json.dumps(checkpoint(descriptor))},
            },
        )
    result = lambda_handler(payload, None)
    assert [r["watermark"] for r in result["providers"]] == [DAYS[-2]] * len(DESCRIPTORS)
    metric = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "CompactionDaysBehind" in line]
    assert metric and metric[-1]["CompactionDaysBehind"] == 0
    namespace = metric[-1]["_aws"]["CloudWatchMetrics"][0]
    alarm = load_template()["Resources"]["CompactionBehindAlarm"]["Properties"]
    assert namespace["Namespace"] == alarm["Namespace"] and namespace["Metrics"][0]["Name"] == alarm["MetricName"]
    assert [[d["Name"] for d in alarm["Dimensions"]]] == namespace["Dimensions"]
    with pytest.raises(Exception, match="lacks"):
        lambda_handler({"bucket": BUCKET}, None)


# ------------------------------------------------------------------ template.yaml agrees with the code


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=lambda d: d.name)
def test_the_template_declares_the_compacted_and_lines_tables_as_the_code_builds_them(descriptor):
    resources = load_template()["Resources"]
    compacted = glue_columns(descriptor)
    assert [(c["Name"], c["Type"]) for c in compacted["StorageDescriptor"]["Columns"]] == [
        (name, athena) for name, athena, _ in sql.columns(descriptor)
    ]
    assert [k["Name"] for k in compacted["PartitionKeys"]] == ["dt"]
    assert "projection.enabled" not in compacted["Parameters"]  # partitions are the publication
    assert compacted["StorageDescriptor"]["Location"]["Sub"].endswith(f"_compacted/{descriptor.name}/")
    (lines,) = [
        r["Properties"]["TableInput"]
        for r in resources.values()
        if r["Type"] == "AWS::Glue::Table" and r["Properties"]["TableInput"]["Name"] == sql.lines_table(descriptor)
    ]
    assert [c["Name"] for c in lines["StorageDescriptor"]["Columns"]] == ["line"]
    template = lines["Parameters"]["storage.location.template"]["Sub"]
    assert template == f"s3://${{ArchiveBucket}}/${{ArchivePrefix}}{descriptor.name}/dt=${{!dt}}/"


def test_the_compaction_role_reads_raw_writes_only_the_compacted_prefix():
    resources = load_template()["Resources"]
    statements = resources["CompactionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    writes = []
    for statement in statements:
        if "If" in statement:
            statement = statement["If"][1]
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert "*" not in targets and all("*" not in a for a in actions), statement
        if "s3:PutObject" in actions:
            writes += [t["Sub"] for t in targets]
        if any(a.startswith("athena:") for a in actions):
            assert all("workgroup/${AthenaWorkGroup}" in t["Sub"] for t in targets)
    lake = "arn:${AWS::Partition}:s3:::aws-security-data-lake-${AWS::Region}-${SecurityLakeBucketSuffix}"
    assert writes == [
        "${ArchiveBucket.Arn}/${ArchivePrefix}_compacted/*",
        "${AthenaResultsBucket.Arn}/results/*",
        f"{lake}/ext/${{SecurityLakeSourcePrefix}}-*",  # only with the Security Lake option (test_athena_lake)
    ]
    function = resources["CompactionFunction"]["Properties"]
    assert function["Handler"] == "audit_collector.aws.compaction_handler.lambda_handler"
    assert function["CodeUri"] == resources["CollectorFunction"]["Properties"]["CodeUri"]
    assert resources["CompactionSchedule"]["Properties"]["Target"]["Arn"] == {"GetAtt": "CompactionFunction.Arn"}
    for alarm in ("CompactionErrorsAlarm", "CompactionBehindAlarm"):
        assert resources[alarm]["Properties"]["AlarmActions"]
