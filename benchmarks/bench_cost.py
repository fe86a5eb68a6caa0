"""3. Collector cost: CPU seconds per million events, objects per million, bytes per event.

The handler runs a backfill in a child process (so its CPU is measured alone) against the emulator
with no latency, writing to a moto_server on loopback via AWS_ENDPOINT_URL. Start-up is taken off:
the child first makes one live invocation, as a warm Lambda container has (imports, AWS clients,
the token), then the measured backfill invocation. CPU is the best of three such children (each with
its own state table and archive prefix): a busy machine only ever adds time.
"""

from __future__ import annotations

import json
import time

import boto3
from common import create_state_table, figure, iso, moto_server, run_child

from audit_collector.emulator import Emulator, make_org
from audit_collector.emulator.asana import asana_events
from audit_collector.emulator.slack import slack_events

DAY = 86400
COUNTS = {"slack": 300_000, "asana": 100_000}
TARGET_CPU = {"slack": 10.0, "asana": 25.0}
TRIALS = 3

CHILD = """
import json, os, time
from audit_collector.aws import handler
class Context:
    aws_request_id, function_name, memory_limit_in_mb = "bench", "bench", 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    def get_remaining_time_in_millis(self): return 900_000
payload = json.loads(os.environ["BENCH_PAYLOAD"])
handler.lambda_handler({"provider": payload["provider"]}, Context())  # start-up: the container warms
cpu = time.process_time()
out = handler.lambda_handler(payload, Context())["results"][0]
cpu = time.process_time() - cpu
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"cpu": cpu, "events": out["events_written"], "objects": out["objects_written"],
                  "peak_rss_mb": hwm / 1024}))
"""


def main() -> None:
    org = make_org(4, 3000)
    now = time.time()
    end = now - now % DAY - DAY
    start = end - 10 * DAY
    with moto_server() as url, Emulator() as emu:
        secrets = boto3.client("secretsmanager", endpoint_url=url)
        secrets.create_secret(Name="slack", SecretString=emu.slack.token)
        secrets.create_secret(Name="asana", SecretString=emu.asana.token)
        emu.slack.add(slack_events(org, int(start), int(end), COUNTS["slack"], seed=9))
        emu.asana.add(asana_events(org, int(start * 1000), int(end * 1000), COUNTS["asana"], seed=10))
        env = {
            "AWS_ENDPOINT_URL": url,
            "STATE_TABLE_NAME": "bench-state",
            "ARCHIVE_BUCKET_NAME": "bench-archive",
            "SLACK_TOKEN_SECRET_ID": "slack",
            "ASANA_TOKEN_SECRET_ID": "asana",
            "ASANA_WORKSPACE_GID": emu.asana.workspace_gid,
            "SLACK_API_BASE_URL": emu.slack.base_url,
            "ASANA_API_BASE_URL": emu.asana.base_url,
            "INITIAL_LOOKBACK_DAYS": "0.01",
            "POWERTOOLS_METRICS_NAMESPACE": "AuditCollector",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
        s3 = boto3.client("s3", endpoint_url=url)
        for trial in range(1, TRIALS):
            create_state_table(url, f"bench-state-{trial}")
        for provider in ("slack", "asana"):
            payload = {"provider": provider, "backfill": {"start": iso(start), "end": iso(end)}}
            trials = []
            for trial in range(TRIALS):
                table = "bench-state" if trial == 0 else f"bench-state-{trial}"
                child_env = {**env, "STATE_TABLE_NAME": table, "ARCHIVE_PREFIX": f"trial{trial}"}
                trials.append(run_child(CHILD, {**child_env, "BENCH_PAYLOAD": json.dumps(payload)}))
                assert trials[-1]["events"] == COUNTS[provider], trials[-1]
            result = min(trials, key=lambda r: r["cpu"])
            stored = sum(
                o["Size"]
                for page in s3.get_paginator("list_objects_v2").paginate(
                    Bucket="bench-archive", Prefix=f"trial0/{provider}/"
                )
                for o in page.get("Contents", [])
            )
            cpus = ", ".join(f"{r['cpu']:.1f}" for r in trials)
            per_million = 1_000_000 / result["events"]
            cpu = result["cpu"] * per_million
            objects = result["objects"] * per_million
            figure(
                f"{provider} CPU per million events",
                f"{cpu:.1f}",
                "s",
                f"<= {TARGET_CPU[provider]:g} s",
                cpu <= TARGET_CPU[provider],
            )
            figure(f"{provider} objects per million events", f"{objects:.0f}", "", "<= 200", objects <= 200)
            figure(f"{provider} stored bytes per event", f"{stored / result['events']:.0f}", "bytes (gzip)")
            figure(
                f"{provider} cost run",
                f"{result['events']:,} events, {result['objects']} objects, "
                f"{result['cpu']:.1f} s CPU (best of {TRIALS}: {cpus}), "
                f"peak RSS {result['peak_rss_mb']:.0f} MB",
            )


if __name__ == "__main__":
    main()
