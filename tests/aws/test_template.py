"""template.yaml against the code: environment, IAM, schedules, payloads, and the Athena tables."""

from __future__ import annotations

import ast
import json
import re
from datetime import UTC, datetime

import duckdb
import pytest

from audit_collector import providers
from audit_collector.aws.config import environment_variables
from audit_collector.aws.invocation import parse_invocation
from audit_collector.emulator import Emulator
from audit_collector.errors import ConfigError
from audit_collector.storage.local import LocalArchive
from audit_collector.storage.state import FileStore

from ..support import ROOT, FakeClock, load_template, run_once

POWERTOOLS_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"}  # read by Powertools itself
TEMPLATE = load_template()
RESOURCES = TEMPLATE["Resources"]


def function_environment() -> dict:
    return RESOURCES["CollectorFunction"]["Properties"]["Environment"]["Variables"]


def test_every_variable_the_code_reads_is_set_and_every_one_set_is_read():
    assert set(function_environment()) == set(environment_variables()) | POWERTOOLS_VARIABLES


def test_no_module_reads_the_environment_behind_configs_back():
    """The Lambda's variables are read in one place: aws/handler.py hands os.environ to
    Config.from_env. The CLI (the laptop edge, cli/) reads only its own variables: tokens, options,
    the signing key."""
    readers = set()
    for path in (ROOT / "src" / "audit_collector").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                readers.add(path.relative_to(ROOT / "src" / "audit_collector").as_posix())
    assert {r for r in readers if not r.startswith("cli/")} == {"aws/handler.py"}


def test_the_function_matches_the_contract():
    props = RESOURCES["CollectorFunction"]["Properties"]
    assert props["CodeUri"] == "src/"
    assert props["Handler"] == "audit_collector.aws.handler.lambda_handler"
    assert props["Runtime"] == "python3.13" and props["Architectures"] == ["arm64"]
    assert props["Timeout"] == 900


BUILTIN = [providers.get(module.rsplit(".", 1)[1]) for module in providers.BUILTIN]
ALL = tuple(d.name for d in BUILTIN)


@pytest.mark.parametrize("descriptor", BUILTIN, ids=lambda d: d.name)
def test_each_provider_has_its_schedule_secret_parameter_and_options(descriptor):
    target = RESOURCES[f"{descriptor.key}Schedule"]["Properties"]["Target"]
    assert parse_invocation(json.loads(target["Input"]), ALL).providers == (descriptor.name,)
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1 and "DeadLetterConfig" in target
    assert descriptor.secret_parameter in TEMPLATE["Parameters"]
    environment = function_environment()
    assert {descriptor.secret_env, descriptor.base_url_env, descriptor.pace_env} <= set(environment)
    assert {o.env for o in descriptor.options} <= set(environment)


def test_example_events_are_accepted_and_bad_ones_rejected():
    good = sorted((ROOT / "events").glob("*.json"))
    bad = sorted((ROOT / "events" / "bad").glob("*.json"))
    assert len(good) >= 3 and len(bad) >= 4
    written = datetime(2026, 11, 22, tzinfo=UTC).timestamp()  # the examples' dates are relative to this day
    for path in good:
        parse_invocation(json.loads(path.read_text()), ALL, now=written)
    for path in bad:
        with pytest.raises(ConfigError):
            parse_invocation(json.loads(path.read_text()), ALL, now=written)


def translated_template() -> dict:
    """The CloudFormation SAM turns the template into, offline."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self):
            return {}

    parameters = {
        "SlackTokenSecret": "audit/slack",
        "AsanaTokenSecret": "audit/asana",
        "AsanaWorkspaceGid": "1",
        "KmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/abc",
    }
    from samtranslator.yaml_helper import yaml_parse

    document = yaml_parse((ROOT / "template.yaml").read_text())
    # What `sam package` does before CloudFormation sees the template.
    for resource in document["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://artifacts/collector.zip"
    return transform(document, parameters, NoManagedPolicies())


def iam_statements(node):
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            yield node
        for value in node.values():
            yield from iam_statements(value)
    elif isinstance(node, list):
        for value in node:
            yield from iam_statements(value)


def test_no_iam_statement_allows_a_wildcard_action_after_sam_translation():
    translated = translated_template()
    statements = list(iam_statements(translated["Resources"]))
    assert statements
    for statement in statements:
        delegation = statement.get("Action") == "kms:*" and ":root" in json.dumps(statement.get("Principal"))
        if statement["Effect"] != "Allow" or delegation:
            continue  # a KMS key policy's standard delegation to the account root (that is, to IAM)
        actions = statement.get("Action")
        actions = actions if isinstance(actions, list) else [actions]
        assert "NotAction" not in statement
        assert all(isinstance(a, str) and "*" not in a for a in actions), statement


def test_the_function_role_has_no_wildcard_resources_and_writes_only_archive_prefixes():
    policy = RESOURCES["CollectorRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    for statement in policy:
        if "If" in statement:  # a statement that exists only with its provider (or KMS) enabled
            statement = statement["If"][1]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert "*" not in resources, statement
        if statement.get("Action") == "s3:PutObject" and statement["Sid"] == "SignedChainHeads":
            assert resources == [{"Sub": "${ArchiveBucket.Arn}/${ArchivePrefix}_chain/*"}]
        elif statement.get("Action") == "s3:PutObject" and statement["Sid"] == "WindowManifests":
            assert resources == [{"Sub": "${ArchiveBucket.Arn}/${ArchivePrefix}_manifests/*"}]
        elif statement.get("Action") == "s3:PutObject" and statement["Sid"] == "SignedChainHeads":
            assert resources == [{"Sub": "${ArchiveBucket.Arn}/${ArchivePrefix}_chain/*"}]
        elif statement.get("Action") == "s3:PutObject":
            assert [r["Sub"] for r in resources] == [
                f"${{ArchiveBucket.Arn}}/${{ArchivePrefix}}{d.name}/*" for d in BUILTIN
            ]
        elif "s3:PutObject" in statement.get("Action", []) and statement["Sid"] == "DriftWatchSnapshots":
            assert resources == [{"Sub": "${ArchiveBucket.Arn}/${ArchivePrefix}_meta/*"}]
        elif "s3:PutObject" in statement.get("Action", []):  # the one marker, and nothing else
            assert statement["Sid"] == "StateStoreMarker" and sorted(statement["Action"]) == [
                "s3:GetObject",
                "s3:PutObject",
            ]
            assert resources == [{"Sub": "${ArchiveBucket.Arn}/${ArchivePrefix}_audit_collector/state-store.json"}]


# ------------------------------------------------------------------ the Athena tables


HIVE_TO_DUCKDB = {"string": "VARCHAR", "bigint": "BIGINT", "int": "INTEGER", "boolean": "BOOLEAN", "double": "DOUBLE"}


def duckdb_type(hive: str) -> str:
    """A Hive type string (as Glue holds it) in DuckDB's spelling."""
    hive = hive.strip()
    if hive.startswith("struct<"):
        fields, depth, current = [], 0, ""
        for char in hive[len("struct<") : -1]:
            depth += char == "<"
            depth -= char == ">"
            if char == "," and depth == 0:
                fields.append(current)
                current = ""
            else:
                current += char
        fields.append(current)
        inner = ", ".join(f'"{name}" {duckdb_type(kind)}' for name, kind in (f.split(":", 1) for f in fields))
        return f"STRUCT({inner})"
    return HIVE_TO_DUCKDB[hive]


def glue_table(descriptor) -> dict:
    """The Glue table whose name the descriptor gives."""
    tables = [
        r["Properties"]["TableInput"]
        for r in RESOURCES.values()
        if r["Type"] == "AWS::Glue::Table" and r["Properties"]["TableInput"]["Name"] == descriptor.table
    ]
    assert len(tables) == 1, descriptor.table
    return tables[0]


@pytest.mark.parametrize("descriptor", BUILTIN, ids=lambda d: d.name)
def test_the_descriptor_columns_are_the_glue_columns_in_both_engines(descriptor):
    glue = glue_table(descriptor)["StorageDescriptor"]["Columns"]
    assert [(c["Name"], c["Type"]) for c in glue] == [(c.name, c.athena) for c in descriptor.columns]
    for column in descriptor.columns:  # the same shape; JSON in DuckDB is a string holding JSON in Glue
        local = column.duckdb.replace("JSON", "VARCHAR").replace('"', "")
        assert duckdb_type(column.athena).replace('"', "") == local, column.name
    assert [k["Name"] for k in glue_table(descriptor)["PartitionKeys"]] == ["dt"]


@pytest.mark.parametrize("descriptor", BUILTIN, ids=lambda d: d.name)
def test_what_the_collector_writes_reads_back_through_the_glue_table_definition(descriptor, org, tmp_path):
    provider = descriptor.name
    table = glue_table(descriptor)
    params = table["Parameters"]
    assert params["projection.enabled"] == "true" and params["projection.dt.format"] == "yyyy-MM-dd"
    template = params["storage.location.template"]["Sub"]
    assert template == f"s3://${{ArchiveBucket}}/${{ArchivePrefix}}{provider}/dt=${{!dt}}/"
    assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"

    now = int(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp())
    clock = FakeClock(start=float(now))
    with Emulator(clock=clock.time) as emu:
        api = emu.api(descriptor.name)
        served = api.generate(org, now - 2 * 86400 + 60, now - 3600, 400, seed=51)
        api.add(served)
        run_once(provider, emu, store=FileStore(tmp_path / "s.json"), archive=LocalArchive(tmp_path / "a"), clock=clock)

    # Every object sits where the projection template says its partition is.
    keys = list(LocalArchive(tmp_path / "a").keys(f"{provider}/"))
    assert keys and all(re.fullmatch(rf"{provider}/dt=\d{{4}}-\d\d-\d\d/[^/]+\.jsonl\.gz", k) for k in keys)

    columns = {c["Name"]: duckdb_type(c["Type"]) for c in table["StorageDescriptor"]["Columns"]}
    spec = ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items()).replace('"', '\\"')
    rows = duckdb.sql(
        f"SELECT * FROM read_json('{tmp_path}/a/{provider}/dt=*/*.jsonl.gz', format='newline_delimited', "
        f"columns={{{spec.replace(chr(92), '')}}}, hive_partitioning=true, hive_types={{'dt': 'VARCHAR'}})"
    )
    names = rows.columns
    got = {(row[0]): dict(zip(names, row, strict=True)) for row in rows.fetchall()}
    key = descriptor.id_field
    assert set(got) == {e[key] for e in served}
    for event in served:
        row = got[event[key]]
        assert row["dt"] == descriptor.event_date(event)  # every provider: its partition is its event's UTC date
        for column in descriptor.columns:  # and each top-level string field reads back as served
            if column.athena == "string" and isinstance(event.get(column.name), str):
                assert row[column.name] == event[column.name], column.name
        if provider == "slack":
            assert row["date_create"] == event["date_create"] and row["action"] == event["action"]
            assert row["actor"]["user"]["email"] == event["actor"]["user"]["email"]
            assert json.loads(row["entity"]) == event["entity"]  # a string holding the JSON
            assert (json.loads(row["details"]) if row["details"] else None) == event.get("details")
            assert row["context"]["ip_address"] == event["context"]["ip_address"]
            session = event["context"]["session_id"]
            assert row["context"]["session_id"] == (None if session is None else str(session))
            assert row["dt"] == datetime.fromtimestamp(event["date_create"], UTC).strftime("%Y-%m-%d")
        elif provider == "asana":
            assert row["created_at"] == event["created_at"] and row["event_type"] == event["event_type"]
            assert row["actor"]["email"] == event["actor"]["email"]
            assert row["resource"]["gid"] == event["resource"]["gid"]
            assert json.loads(row["details"]) == event["details"]
            assert row["context"]["client_ip_address"] == event["context"]["client_ip_address"]
            assert row["dt"] == event["created_at"][:10]


def test_samconfig_and_outputs_name_what_users_need():
    text = (ROOT / "samconfig.toml").read_text()
    for needed in ("stack_name", "region", "capabilities", "resolve_s3", "confirm_changeset", "parameter_overrides"):
        assert needed in text
    outputs = TEMPLATE["Outputs"]
    for needed in (
        "ArchiveBucketName",
        "GlueDatabase",
        *(f"{d.key}Table" for d in BUILTIN),
        "AthenaWorkGroupName",
        "FunctionName",
        "RunNowCommand",
    ):
        assert needed in outputs
    backfill = outputs["BackfillCommand"]["Value"]["Sub"]
    payload = json.loads(backfill.split("--payload '")[1].split("'")[0])
    written = datetime(2026, 11, 22, tzinfo=UTC).timestamp()
    assert parse_invocation(payload, ("slack",), now=written).backfill is not None


def test_the_manifests_table_and_the_verification_cover_every_provider():
    """audit_manifests projects one folder per provider; the collector may write manifests and read
    (HeadObject) what it writes; the verification reads every provider's folder and the manifests."""
    table = RESOURCES["AuditManifestsTable"]["Properties"]["TableInput"]
    assert table["Name"] == "audit_manifests"
    assert table["Parameters"]["projection.source.values"].split(",") == list(ALL)
    columns = [c["Name"] for c in table["StorageDescriptor"]["Columns"]]
    assert {"provider", "job", "window_id", "range_start", "range_end", "objects", "seq", "prev"} <= set(columns)
    role = RESOURCES["CollectorRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    look = next(s for s in role if s.get("Sid") == "LookBeforeReplacing")
    assert [r["Sub"] for r in look["Resource"]] == [
        *(f"${{ArchiveBucket.Arn}}/${{ArchivePrefix}}{d.name}/*" for d in BUILTIN),
        "${ArchiveBucket.Arn}/${ArchivePrefix}_manifests/*",
    ]
    verify = RESOURCES["VerifyRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    read = next(s for s in verify if s.get("Sid") == "ReadDataAndManifests")
    assert [r["Sub"] for r in read["Resource"]] == [
        *(r["Sub"] for r in look["Resource"]),
        "${ArchiveBucket.Arn}/${ArchivePrefix}_chain/*",  # the signed heads
    ]
    assert not any("s3:PutObject" in str(s.get("Action")) for s in verify)  # read-only
    assert RESOURCES["VerifyFunction"]["Properties"]["Handler"] == "audit_collector.aws.verify_handler.lambda_handler"
    assert RESOURCES["VerifyFindingsAlarm"]["Properties"]["MetricName"] == "VerifyFindings"
