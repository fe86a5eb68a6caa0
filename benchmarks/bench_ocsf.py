"""OCSF and Security Lake: which validator, how much of each API maps to which class, and what the extra
output costs a day (CPU, bytes, objects).

1. Validators, compared on this mapping's events: ``py-ocsf-models`` (pydantic models) and
   ``ocsf-json-schema`` (JSON Schema per class, checked by ``jsonschema``): classes each covers of the
   seven, mutations of a valid event each rejects, time per event.
2. Coverage: per provider and class, the share of actions (every action Slack's ``GET actions`` and the
   emulator list; Asana's event types) and of a generated day's events.
3. A day of 10,000 events per provider written as Security Lake custom sources: CPU, Parquet bytes vs
   the day's raw gzip, objects, pages and row groups within Security Lake's limits.
4. The same day through the compaction function's path in AWS (ocsf/athena_lake.py, against moto and
   the DuckDB Athena of tests/athena_duck.py): Athena queries, the bytes they are billed for, and the
   function's S3 requests and objects per day.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from common import ROOT, figure

sys.path.insert(0, str(ROOT))

from tests.parquet_pages import pages

from audit_collector import ocsf, providers
from audit_collector.compaction.local import local_digest
from audit_collector.emulator import make_org
from audit_collector.emulator.asana import ASANA_EVENTS, asana_events
from audit_collector.emulator.slack import SlackApi, slack_events
from audit_collector.ocsf import validate
from audit_collector.ocsf.classes import CLASSES
from audit_collector.ocsf.lake import LakeTarget, export_day

EVENTS_A_DAY = 10_000
DAY = "2026-11-18"
START = int(datetime.fromisoformat(DAY).replace(tzinfo=UTC).timestamp())
MUTATIONS = ("no user", "bad ip", "bad type_uid", "unknown attribute", "time as text")


def day_events(name: str, org) -> list[dict]:
    if name == "slack":
        return slack_events(org, START, START + 86400, EVENTS_A_DAY, seed=3)
    return asana_events(org, START * 1000, (START + 86400) * 1000, EVENTS_A_DAY, seed=3)


def broken(out: dict, how: str) -> dict:
    out = json.loads(json.dumps(out))
    if how == "no user":
        for key in ("user", "web_resources", "entity", "group"):
            out.pop(key, None)
    elif how == "bad ip":
        (out.get("src_endpoint") or out.get("device"))["ip"] = "999.1.1.1"
    elif how == "bad type_uid":
        out["type_uid"] = 12345
    elif how == "unknown attribute":
        out["actor"]["user"]["shoe_size"] = "44"
    elif how == "time as text":
        out["time"] = "yesterday"
    return out


def compare_validators(events: list[dict]) -> None:
    sample = {e["class_uid"]: e for e in events}  # one event of each class mapped
    wanted = {c.uid for c in CLASSES.values()}
    # ocsf-json-schema: every class of the schema, as JSON Schema.
    from ocsf_json_schema import get_ocsf_schema

    schema_classes = {c["uid"] for c in get_ocsf_schema("1.1.0")["classes"].values()}
    figure("ocsf-json-schema: classes of the seven it has", len(wanted & schema_classes), "of 7")
    caught = sum(bool(validate.errors(broken(e, how))) for e in sample.values() for how in MUTATIONS)
    figure("ocsf-json-schema: broken events rejected", caught, f"of {len(sample) * len(MUTATIONS)}")
    started = time.process_time()
    for event in events:
        validate.errors(event)
    figure(
        "ocsf-json-schema + jsonschema: CPU per event",
        f"{(time.process_time() - started) / len(events) * 1e6:.0f}",
        "us",
    )
    try:
        from py_ocsf_models.events.base_event import BaseEvent
        from py_ocsf_models.events.findings.class_uid import ClassUID
    except ImportError:
        figure("py-ocsf-models", "not installed (pip install -e '.[bench]')")
        return
    figure("py-ocsf-models: classes of the seven it has", len(wanted & {int(c) for c in ClassUID}), "of 7")

    def rejects(event: dict) -> bool:
        try:
            BaseEvent.model_validate(event)  # the nearest it has: the base event, no class's attributes
        except Exception:
            return True
        return False

    caught = sum(rejects(broken(e, how)) for e in sample.values() for how in MUTATIONS)
    figure("py-ocsf-models (BaseEvent): broken events rejected", caught, f"of {len(sample) * len(MUTATIONS)}")


def coverage(name: str, codes: set[str], events: list[dict]) -> None:
    m = ocsf.mapping(providers.get(name))
    by_class = Counter(m.rules[c].ocsf.name for c in codes if c in m.rules)
    counted = Counter()
    for event in events:
        rule = m.rule_for(event)
        counted[rule.ocsf.name if rule else "(none)"] += 1
    for cls in CLASSES.values():
        if by_class[cls.name] or counted[cls.name]:
            figure(
                f"{name} coverage, {cls.caption} ({cls.uid})",
                f"{by_class[cls.name]} of {len(codes)} actions ({by_class[cls.name] / len(codes):.0%}), "
                f"{counted[cls.name]:,} of {len(events):,} events ({counted[cls.name] / len(events):.0%})",
            )
    none = len([c for c in codes if c in m.no_class])
    unknown = len(codes - set(m.rules) - set(m.no_class))
    figure(f"{name} coverage, no class (a stated reason)", f"{none} of {len(codes)} actions")
    figure(f"{name} coverage, actions with neither", unknown, target="0", ok=unknown == 0)


def lake_cost(name: str, events: list[dict], work: Path) -> None:
    descriptor = providers.get(name)
    folder = work / name / f"dt={DAY}"
    folder.mkdir(parents=True)
    per = -(-len(events) // 288)  # one object per 5-minute run, as live collection writes them
    for i in range(0, len(events), per):
        body = "".join(json.dumps(e) + "\n" for e in events[i : i + per]).encode()
        (folder / f"run-{i:06d}.jsonl.gz").write_bytes(gzip.compress(body, 6))
    paths = sorted(folder.glob("*.jsonl.gz"))
    raw_bytes = sum(p.stat().st_size for p in paths)
    target = LakeTarget(work / "lake", "us-east-1", "123456789012")
    best = None
    for _ in range(3):
        shutil.rmtree(work / "lake", ignore_errors=True)
        started = time.process_time()
        written, files, _ = export_day(target, descriptor, DAY, paths, local_digest(paths), lambda *_: None)
        spent = time.process_time() - started
        best = spent if best is None else min(best, spent)
    out = sorted((work / "lake" / "ext").rglob(f"{name}.parquet"))
    lake_bytes = sum(p.stat().st_size for p in out)
    found = [p for path in out for p in pages(path)]
    figure(f"{name} Security Lake day: CPU (this process, best of 3)", f"{best:.2f}", f"s for {written:,} events")
    figure(f"{name} Security Lake day: CPU per million events", f"{best / written * 1e6:.0f}", "s")
    figure(f"{name} Security Lake day: objects", files, "(one per class with events)")
    figure(
        f"{name} Security Lake day: bytes, raw gzip vs OCSF Parquet",
        f"{raw_bytes / 1e6:.1f} MB vs {lake_bytes / 1e6:.1f} MB",
    )
    largest = max(p.uncompressed for p in found)
    figure(
        f"{name} Security Lake day: largest data page", f"{largest / 1024:.0f}", "KiB", "<= 1024 KiB", largest <= 2**20
    )


ATHENA_USD_PER_TB = 5.0
ATHENA_MINIMUM = 10 * 10**6  # bytes billed at least, per query


def athena_lake_cost(name: str, folder: Path) -> None:
    """One closed day exported as the compaction function does it, every call counted."""
    import boto3
    from moto import mock_aws
    from tests.athena_duck import DuckAthena

    from audit_collector.compaction.athena import AthenaCompactor, Target
    from audit_collector.ocsf.athena_lake import AthenaLakeExporter, LakeDestination

    descriptor = providers.get(name)
    end = int(datetime.fromisoformat(DAY).replace(tzinfo=UTC).timestamp()) + 86400
    ups = descriptor.units_per_second
    live = {"ranges": [[(end - 2 * 86400) * ups, None]], "watermark": (end + 600) * ups, "window": None, "meta": {}}
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("archive", "aws-security-data-lake-us-east-1-bench", "results"):
            s3.create_bucket(Bucket=bucket)
        paths = sorted(folder.glob("*.jsonl.gz"))
        for path in paths:
            s3.put_object(Bucket="archive", Key=f"{name}/dt={DAY}/{path.name}", Body=path.read_bytes())
        raw_bytes = sum(p.stat().st_size for p in paths)
        calls: Counter = Counter()
        s3.meta.events.register("before-call.s3.*", lambda model, **_: calls.update([model.name]))
        athena = DuckAthena(boto3.client("s3", region_name="us-east-1"), "archive", "")
        queries: Counter = Counter()
        start = athena.start_query_execution

        def counted(**kwargs):
            queries.update(["UNLOAD" if kwargs["QueryString"].startswith("UNLOAD") else "count"])
            return start(**kwargs)

        athena.start_query_execution = counted
        compactor = AthenaCompactor(
            Target("archive", "", "db", "wg", "table"),
            athena=athena,
            glue=None,
            s3=s3,
            store=None,
            sleep=lambda _: None,
        )
        lake = LakeDestination(
            "aws-security-data-lake-us-east-1-bench", "us-east-1", "123456789012", "auditcol", "s3://results/staging/"
        )
        report = AthenaLakeExporter(lake).export(
            compactor, descriptor, compactor.raw_days(descriptor), {"jobs": {"live": live}}
        )
        objects = len(s3.list_objects_v2(Bucket=lake.bucket).get("Contents", []))
    n = sum(queries.values())
    billed = n * max(ATHENA_MINIMUM, raw_bytes)  # each query reads the whole raw day
    figure(
        f"{name} Security Lake in AWS: Athena queries a day",
        n,
        f"({queries['count']} count, {queries['UNLOAD']} UNLOAD)",
    )
    figure(
        f"{name} Security Lake in AWS: Athena bytes billed a day",
        f"{billed / 1e6:.0f}",
        f"MB (raw day {raw_bytes / 1e6:.1f} MB, 10 MB minimum a query): "
        f"${billed / 1e12 * ATHENA_USD_PER_TB * 365:.2f} a year",
    )
    figure(
        f"{name} Security Lake in AWS: the function's S3 requests a day",
        sum(calls.values()),
        ", ".join(f"{k} {v}" for k, v in sorted(calls.items())),
    )
    figure(f"{name} Security Lake in AWS: objects a day", objects, f"(+1 marker; {report['written'][DAY]:,} events)")


def main() -> int:
    org = make_org()
    listed = json.loads((ROOT / "tests" / "fixtures" / "ocsf" / "slack_actions.json").read_text())["actions"]
    static = json.loads(SlackApi().document("actions"))["actions"]
    slack_codes = {a for source in (listed, static) for names in source.values() for a in names}
    asana_codes = {t for t, _, _ in ASANA_EVENTS}
    mapped = []
    days = {}
    for name in ("slack", "asana"):
        days[name] = day_events(name, org)
        m = ocsf.mapping(providers.get(name))
        started = time.process_time()
        out = [m.to_ocsf(e) for e in days[name]]
        figure(f"{name} mapping CPU per million events", f"{(time.process_time() - started) / len(out) * 1e6:.0f}", "s")
        mapped += [o for o in out if o is not None]
    compare_validators(mapped[:: max(1, len(mapped) // 4000)])
    coverage("slack", slack_codes, days["slack"])
    coverage("asana", asana_codes, days["asana"])
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("slack", "asana"):
            lake_cost(name, days[name], Path(tmp))
            athena_lake_cost(name, Path(tmp) / name / f"dt={DAY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
