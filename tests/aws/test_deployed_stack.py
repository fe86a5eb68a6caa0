"""The stack as deployed: each function's code, under its own role from the translated template, in
moto with IAM enforcement on, reading the environment and the payloads the template sets.

A permission the code needs and its role lacks fails here (even where the code swallows the 403);
so does a statement, action or resource of a role that no call used (least privilege, measured).
What moto cannot enforce is named in tests/iam_ledger.py and in docs/deploy.md ("Tested as
deployed"): KMS, bucket policies, conditions other than ``s3:prefix``.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from audit_collector import providers
from audit_collector.aws import handler
from audit_collector.emulator import Emulator
from audit_collector.emulator.registry import api_classes
from audit_collector.storage.s3 import S3Archive

from ..iam_ledger import Ledger, recording
from ..stack import REGION, Deployment, Stack, deploy
from ..support import BUILTIN_PROVIDERS, Crash, FakeClock, add_history, assert_exactly_once

# The providers template.yaml deploys (it is written from the built-in registry), each with its
# emulated API's default token and options: the scenario names none of them.
DEPLOYED = BUILTIN_PROVIDERS


def stack_parameters() -> dict[str, str]:
    """Each provider's token secret name and option values, as `sam deploy --guided` asks for them."""
    found: dict[str, str] = {}
    for name in DEPLOYED:
        descriptor, api = providers.get(name), api_classes()[name]()
        found[descriptor.secret_parameter] = f"audit/{name}"
        for option in descriptor.options:
            found[descriptor.option_parameter(option)] = api.options[option.name]
    return found


PARAMETERS = stack_parameters()

# Statements no call of the code makes, because an AWS service makes it on the function's behalf.
# Each one is named with who uses it; a statement listed here that the template no longer has fails.
USED_BY_A_SERVICE = {
    ("CollectorRole", "WriteOwnLogs"): "the Lambda runtime writes the function's log lines",
    ("CollectorRole", "FailedInvocations"): "Lambda sends a failed asynchronous invocation to the DLQ",
    ("VerifyRole", "WriteOwnLogs"): "the Lambda runtime writes the function's log lines",
    ("VerifyRole", "FailedInvocations"): "Lambda sends a failed asynchronous invocation to the DLQ",
    ("CompactionRole", "WriteOwnLogs"): "the Lambda runtime writes the function's log lines",
    ("CompactionRole", "FailedInvocations"): "Lambda sends a failed asynchronous invocation to the DLQ",
    # Athena runs UNLOAD and CREATE VIEW with the caller's permissions; its answers are stubbed here.
    ("CompactionRole", "ReplaceTheQueryViews"): "Athena's CREATE OR REPLACE VIEW writes the _all view",
    ("CompactionRole", "ReadRawObjectsOnly"): "Athena's UNLOAD reads the raw day",
    ("CompactionRole", "WriteCompactedObjectsOnly"): "Athena's UNLOAD writes the Parquet files",
    ("CompactionRole", "AthenaQueryResults"): "Athena writes query results to the workgroup's bucket",
    ("CompactionRole", "ListAthenaQueryResults"): "Athena lists its results location",
    ("CompactionRole", "LocateTheBuckets"): "Athena locates the buckets it reads and writes",
}
# Parts of statements the code uses, where a further action or resource is Athena's, not the code's.
PARTLY_BY_A_SERVICE = {
    ("CompactionRole", "CatalogOfTheAuditTables"): "Athena reads the _lines and _all tables for UNLOAD and the view",
    ("CompactionRole", "RunQueriesInTheWorkgroup"): "GetQueryResults: the statements' results are never read",
    ("CompactionRole", "PublishCompactedDays"): "UpdatePartition: only when a day is compacted again",
}


# ------------------------------------------------------------------ the scenario


@contextlib.contextmanager
def crash_after_a_manifest(monkeypatch):
    """The process dies at the first checkpoint save that follows a manifest's write."""
    from audit_collector.storage.state import DynamoDBStore

    real_put, real_save, written = S3Archive._put, DynamoDBStore._save, []

    def put(self, key, body, replaces):
        real_put(self, key, body, replaces)
        written.append("/_manifests/" in f"/{key}")

    def save(self, *args):
        if any(written):
            raise Crash("after the manifest, before the checkpoint")
        real_save(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(S3Archive, "_put", put)
        patch.setattr(DynamoDBStore, "_save", save)
        yield


def day_start(ts: float) -> datetime:
    return datetime.fromtimestamp(ts - ts % 86400, UTC)


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def run_scenario(
    org,
    monkeypatch,
    *,
    edit: Callable[[dict], None] | None = None,
    full: bool = True,
    parameters: dict[str, str] = PARAMETERS,
):
    """Collection of every provider, a backfill, a crash and its rerun, a late-event sweep, verify and
    compaction, each as its function in the deployed stack. Returns the ledger, what each function returned or raised,
    and what the APIs served. With the Security Lake parameters, compaction's Athena runs its SQL
    (tests/athena_duck.py) and writes the custom sources into a lake bucket made here."""
    # 06:00 UTC yesterday: the scenario's three hours stay inside one UTC day whenever the suite
    # runs, so the daily work (the drift watch's snapshot, compaction's closed days) is the same.
    now = day_start(time.time() - 86400).timestamp() + 6 * 3600
    clock = FakeClock(start=now)
    monkeypatch.setattr(handler, "SystemClock", lambda: clock)
    outcomes: dict[str, Any] = {}
    spans: dict[str, list] = {}  # the calls each invocation made
    with mock_aws(), Emulator(clock=clock.time) as emu:
        secrets = boto3.client("secretsmanager", region_name=REGION)
        for name in DEPLOYED:
            descriptor = providers.get(name)
            secrets.create_secret(Name=PARAMETERS[descriptor.secret_parameter], SecretString=emu.api(name).token)
        stack = deploy(parameters, edit=edit)
        lake = bool(parameters.get("SecurityLakeSourcePrefix"))
        if lake:  # the lake's bucket is Security Lake's, not the stack's
            boto3.client("s3", region_name=REGION).create_bucket(Bucket=LAKE_BUCKET)
            plant_stale_lake_files(stack, now)
        deployment = Deployment(stack, emu, clock)
        i = int(now)

        def add(start: int, end: int, count: int, seed: int) -> dict[str, list[dict]]:
            """``count`` events of each provider in [start, end) seconds, served from now on."""
            return {p: add_history(emu, org, p, start, end, count, seed=seed + 100 * n) for n, p in enumerate(DEPLOYED)}

        served = add(i - 3 * 86400, i - 3600, 200, seed=71)
        start = day_start(now - 10 * 86400)  # before the first run's lookback: only the backfill reads it
        backfilled = add(int(start.timestamp()), int(start.timestamp()) + 86400, 60, seed=73)
        roles = {stack.name(logical): statements for logical, statements in stack.roles.items()}
        with recording(roles) as ledger:

            def attempt(label: str, logical: str, event: Any) -> None:
                start = len(ledger.calls)
                try:
                    outcomes[label] = deployment.invoke(logical, event)
                except (Exception, Crash) as exc:  # the ledger says which call was denied
                    outcomes[label] = exc
                spans[label] = ledger.calls[start:]

            attempt("check", "CollectorFunction", {"check": True})  # the preflight, before anything exists
            for payload in stack.functions["CollectorFunction"].payloads:
                attempt(f"collect {payload['provider']}", "CollectorFunction", payload)
            backfill = {"start": iso(start), "end": iso(datetime.fromtimestamp(start.timestamp() + 86400, UTC))}
            for name in DEPLOYED:
                attempt(f"backfill {name}", "CollectorFunction", {"provider": name, "backfill": backfill})
            # A second live window, ten minutes on. Then late events: behind the checkpoint, inside
            # that window, which the sweep re-reads 30 minutes after it ended; and new ones, for the
            # next live window.
            clock.advance(600)
            on_time = add(i - 60, i + 400, 9, seed=78)
            for payload in stack.functions["CollectorFunction"].payloads:
                attempt(f"again {payload['provider']}", "CollectorFunction", payload)
            late = add(i + 60, i + 400, 7, seed=74)
            # A run dies after writing a window's manifest, before its checkpoint: the next run
            # writes the same names again, finds them taken, reads their version and replaces them.
            crashed = add(i + 700, i + 1000, 5, seed=80)
            clock.advance(600)
            for name in DEPLOYED:
                with crash_after_a_manifest(monkeypatch):
                    attempt(f"crash {name}", "CollectorFunction", {"provider": name})
            clock.advance(1800)  # the dead runs' leases expire
            for name in DEPLOYED:
                attempt(f"rerun {name}", "CollectorFunction", {"provider": name})
            new = add(i + 3200, i + 5000, 20, seed=76)
            for provider in served:
                served[provider] += backfilled[provider] + crashed[provider]
                served[provider] += on_time[provider] + late[provider] + new[provider]
            clock.advance(2 * 3600)
            for payload in stack.functions["CollectorFunction"].payloads:
                attempt(f"sweep {payload['provider']}", "CollectorFunction", payload)
            if full:
                for payload in stack.functions["VerifyFunction"].payloads:
                    attempt("verify", "VerifyFunction", payload)
                    attempt("verify quick", "VerifyFunction", {**payload, "quick": True})
                with athena_runs_its_sql(stack) if lake else contextlib.nullcontext():
                    for payload in stack.functions["CompactionFunction"].payloads:
                        attempt("compaction", "CompactionFunction", payload)
        archive = S3Archive(stack.name("ArchiveBucket"), client=boto3.client("s3", region_name=REGION))
        if lake:
            found = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=LAKE_BUCKET).get("Contents", [])
            outcomes["lake"] = sorted(item["Key"] for item in found)
        archived = {p: [k for k in archive.keys(f"{p}/")] for p in (*DEPLOYED, "_meta")}
        if full:
            for provider, events in served.items():
                assert_exactly_once(archive, provider, events)
    outcomes["calls"] = spans
    outcomes["late"] = {p: len(events) for p, events in late.items()}
    return stack, ledger, outcomes, archived


LAKE_PARAMETERS = {**PARAMETERS, "SecurityLakeSourcePrefix": "auditcol", "SecurityLakeBucketSuffix": "0a1b2c3d4e5f"}
LAKE_BUCKET = f"aws-security-data-lake-{REGION}-0a1b2c3d4e5f"
EXPORTED = tuple(p for p in DEPLOYED if providers.get(p).ocsf_mapping)  # the providers with an OCSF form
# Planted in each class-day folder as a file of an earlier run: the export deletes it (s3:DeleteObject).
STALE = f"{EXPORTED[0]}-9.parquet"


@contextlib.contextmanager
def athena_runs_its_sql(stack: Stack):
    """Compaction's Athena answered by DuckDB (tests/athena_duck.py), for one invocation: its UNLOADs
    really write, under the compaction role's credentials (Athena runs as the caller)."""
    from ..athena_duck import BesideMoto, DuckAthena

    real = boto3.client
    (payload,) = stack.functions["CompactionFunction"].payloads

    def client(service, *args, **kwargs):
        made = real(service, *args, **kwargs)
        if service != "athena":
            return made
        duck = DuckAthena(real("s3", region_name=REGION), payload["bucket"], payload.get("prefix", ""))
        return BesideMoto(made, duck)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(boto3, "client", client)
        yield


def plant_stale_lake_files(stack: Stack, now: float) -> None:
    """A file of an earlier run in folders the export will write (Athena once split a day in two),
    for every day the scenario's events can fall on. Before IAM enforcement starts: not the code's."""
    s3 = boto3.client("s3", region_name=REGION)
    account = stack.resolver.pseudo["AWS::AccountId"]
    for back in range(-1, 13):
        day = datetime.fromtimestamp(now - back * 86400, UTC).strftime("%Y%m%d")
        for short in ("authn", "webres"):
            key = f"ext/auditcol-{short}/region={REGION}/accountId={account}/eventDay={day}/{STALE}"
            s3.put_object(Bucket=LAKE_BUCKET, Key=key, Body=b"PAR1")


def problems(stack: Stack, ledger: Ledger) -> list[str]:
    """What is wrong with the roles: calls they deny, and statements no call uses."""
    found = [
        f"{c.role} was denied {c.action} on {', '.join(c.resources)} {dict(c.context) or ''}".strip()
        for c in ledger.denied()
    ]
    ran = {stack.functions[f].role for f in stack.functions}
    for logical in sorted(ran):
        used = ledger.used(stack.name(logical))
        for index, statement in enumerate(stack.roles[logical]):
            sid = statement.get("Sid", f"#{index}")
            if (logical, sid) in USED_BY_A_SERVICE:
                continue
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            unused = [(a, r) for a in actions for r in resources if (index, a, r) not in used]
            if (logical, sid) in PARTLY_BY_A_SERVICE:
                unused = [(a, r) for a, r in unused if not any((index, a, x) in used for x in resources)]
                unused = [(a, r) for a, r in unused if not any((index, x, r) in used for x in actions)]
                if unused and len(unused) < len(actions) * len(resources):
                    continue
            for action, resource in unused:
                found.append(f"{logical}.{sid} allows {action} on {resource}, which no call used")
    return found


@pytest.fixture(scope="module")
def deployed(org):
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield run_scenario(org, monkeypatch)


def test_every_function_runs_under_its_own_role_and_succeeds(deployed):
    stack, _, outcomes, archived = deployed
    assert all(isinstance(outcomes[f"crash {p}"], Crash) for p in DEPLOYED)  # the injected deaths, nothing else
    failed = {label: repr(out) for label, out in outcomes.items() if isinstance(out, Exception)}
    late_served = outcomes["late"]
    outcomes = {label: out for label, out in outcomes.items() if label not in ("calls", "late")}
    assert not failed, failed
    assert set(outcomes) == {
        *(f"{run} {p}" for run in ("collect", "backfill", "again", "crash", "rerun", "sweep") for p in DEPLOYED),
        *("check", "verify", "verify quick", "compaction"),
    }
    assert {stack.functions[f].role for f in stack.functions} == {"CollectorRole", "VerifyRole", "CompactionRole"}

    def late(label: str) -> int:
        return outcomes[label]["results"][0]["sweep"]["late_events"]

    for name in DEPLOYED:  # the sweep found and archived what arrived late
        assert late(f"rerun {name}") + late(f"sweep {name}") == late_served[name], name
    assert all(p["objects"] > 0 for p in outcomes["verify"]["providers"]), outcomes["verify"]["providers"]
    assert {p["provider"] for p in outcomes["verify"]["providers"]} == set(DEPLOYED)
    compacted = outcomes["compaction"]["providers"]
    assert all(report["compacted"] for report in compacted), compacted
    assert {r["provider"] for r in compacted} == {p for p in DEPLOYED if providers.get(p).compacted_columns}
    assert all(archived[p] for p in DEPLOYED)
    watched = sorted(k.split("/")[1] for k in archived["_meta"] if "/vocabulary/" in k)
    # the drift watch's first snapshot, once each, as the role
    assert watched == sorted(p for p in DEPLOYED if providers.get(p).vocabulary)


def test_the_preflight_passes_on_a_new_stack_and_writes_nothing(deployed):
    _, _, outcomes, _ = deployed
    check = outcomes["check"]
    assert check["ok"], check["lines"]
    assert {(c["subject"], c["name"]) for c in check["checks"]} >= {
        *((p, "token") for p in DEPLOYED if providers.get(p).preflight),
        ("storage", "pairing"),
        ("storage", "object lock"),
        ("storage", "encryption"),
    }
    actions = {c.action for c in outcomes["calls"]["check"]}
    assert actions and not {a for a in actions if a.split(":")[1].startswith(("Put", "Update", "Delete"))}


def test_the_scheduled_verification_of_a_new_stack_finds_nothing(deployed):
    verified = deployed[2]["verify"]
    findings = [(f["kind"], f["key"], f["detail"]) for p in verified["providers"] for f in p["findings"]]
    assert verified["clean"], findings


def test_no_call_is_denied_and_no_statement_is_unused(deployed):
    stack, ledger, _, _ = deployed
    found = problems(stack, ledger)
    assert found == [], "\n".join(found)
    assert {c.role for c in ledger.calls} == {stack.name(r) for r in ("CollectorRole", "VerifyRole", "CompactionRole")}


def test_the_service_allowances_name_statements_the_template_has():
    """The two lists above cannot outlive the statements they excuse."""
    from ..stack import translate

    template = translate(PARAMETERS)
    for role, sid in (*USED_BY_A_SERVICE, *PARTLY_BY_A_SERVICE):
        policies = template["Resources"][role]["Properties"]["Policies"]
        sids = {s.get("Sid") for p in policies for s in p["PolicyDocument"]["Statement"] if isinstance(s, dict)}
        assert sid in sids, (role, sid)


def without_statement(role: str, sid: str) -> Callable[[dict], None]:
    def edit(template: dict) -> None:
        for policy in template["Resources"][role]["Properties"]["Policies"]:
            statements = policy["PolicyDocument"]["Statement"]
            kept = [s for s in statements if not (isinstance(s, dict) and s.get("Sid") == sid)]
            assert len(kept) < len(statements), sid
            policy["PolicyDocument"]["Statement"] = kept

    return edit


def test_a_collector_role_without_read_on_the_data_prefixes_fails_the_suite(org, monkeypatch):
    """Last round's bug: the fenced writes and the sweep read what is archived; without s3:GetObject
    on the data and manifest prefixes they are denied (some denials the code even reads as "absent")."""
    stack, ledger, outcomes, _ = run_scenario(
        org, monkeypatch, edit=without_statement("CollectorRole", "LookBeforeReplacing"), full=False
    )
    found = problems(stack, ledger)
    assert any("was denied s3:GetObject" in p and f"/{DEPLOYED[0]}/" in p for p in found), found
    assert any(isinstance(out, Exception) for out in outcomes.values())


@pytest.fixture(scope="module")
def deployed_with_lake(org):
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield run_scenario(org, monkeypatch, parameters=LAKE_PARAMETERS, edit=without_the_crawler_role)


def without_the_crawler_role(template: dict) -> None:
    """No function runs as the crawlers' role (Glue assumes it; tests/test_security_lake.py checks it),
    and its AWS managed policy is one the ledger cannot measure."""
    del template["Resources"]["SecurityLakeCrawlerRole"]
    template.get("Outputs", {}).pop("SecurityLakeCrawlerRoleArn", None)


def test_with_security_lake_compaction_writes_the_custom_sources_under_its_own_role(deployed_with_lake):
    """The role's lake statements against every call the export makes (and Athena's, as the caller):
    nothing denied, nothing unused (DeleteObject: the planted file of an earlier run)."""
    stack, ledger, outcomes, _ = deployed_with_lake
    failed = {label: repr(out) for label, out in outcomes.items() if isinstance(out, Exception)}
    assert not failed, failed
    reports = {r["provider"]: r["security_lake"] for r in outcomes["compaction"]["providers"]}
    assert all(r["written"] and not r["failed"] for r in reports.values()), reports
    written = [k for k in outcomes["lake"] if not k.endswith(STALE)]
    layout = rf"ext/auditcol-[a-z]+/region={REGION}/accountId=\d{{12}}/eventDay=\d{{8}}/({'|'.join(EXPORTED)})\.parquet"
    assert written and all(re.fullmatch(layout, k) for k in written), written
    closed = {
        k.split("/eventDay=")[1].split("/")[0]
        for k in written
        if k.startswith(("ext/auditcol-authn/", "ext/auditcol-webres/")) and f"/{EXPORTED[0]}" in k
    }
    assert not [k for k in outcomes["lake"] if k.endswith(STALE) and k.split("/eventDay=")[1].split("/")[0] in closed]
    found = problems(stack, ledger)
    assert found == [], "\n".join(found)
    lake_calls = [c for c in ledger.calls if any(LAKE_BUCKET in r for r in c.resources)]
    assert {c.action for c in lake_calls} == {"s3:ListBucket", "s3:PutObject", "s3:DeleteObject"}
    assert {c.role for c in lake_calls} == {stack.name("CompactionRole")}


def test_without_security_lake_the_role_has_no_lake_statement_and_nothing_calls_the_lake(deployed):
    stack, ledger, outcomes, _ = deployed
    sids = {s.get("Sid") for s in stack.roles["CompactionRole"]}
    assert not sids & {"WriteTheCustomSources", "ListTheCustomSources"}
    assert not any("aws-security-data-lake" in r for c in ledger.calls for r in c.resources)
    assert all("security_lake" not in r for r in outcomes["compaction"]["providers"])
    assert all(not p["security_lake"]["source_prefix"] for p in stack.functions["CompactionFunction"].payloads)
