"""2. Backfill efficiency through the Lambda handler, against Slack's and Asana's rate limits.

The emulator enforces 50 calls/min (Slack) and 1,500 calls/min (Asana) with token buckets that
answer 429 + Retry-After, and takes 250 ms per call. A dense 12-day backfill runs through
``lambda_handler`` (moto in process for S3, DynamoDB and Secrets Manager).

Efficiency = (fewest calls the API's rules allow / published rate) / actual time. The fewest calls:
Slack ceil(events / 9,999); Asana ceil(events / 100) + 1 (the empty page that says "caught up").
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from common import ROOT, figure, iso

from audit_collector.emulator import Emulator, make_org
from audit_collector.emulator.asana import asana_events
from audit_collector.emulator.slack import slack_events

DAY = 86400
SLACK_PER_DAY, ASANA_PER_DAY, DAYS = 19_500, 6_000, 12
RATES = {"slack": 50.0, "asana": 1500.0}


def run(provider: str, org) -> dict:
    import boto3
    from moto import mock_aws

    from audit_collector.aws import handler

    now = time.time()
    end = now - now % DAY - DAY  # whole UTC days, as a backfill is usually asked for
    start = end - DAYS * DAY
    limits = {"slack": {"calls_per_minute": 50}, "asana": {"calls_per_minute": 1500}}
    with mock_aws(), Emulator(latency=0.25, rate_limit_burst=None, **limits) as emu:
        if provider == "slack":
            events = slack_events(org, int(start), int(end), SLACK_PER_DAY * DAYS, seed=7)
            emu.slack.add(events)
        else:
            events = asana_events(org, int(start * 1000), int(end * 1000), ASANA_PER_DAY * DAYS, seed=8)
            emu.asana.add(events)
        os.environ.update(
            STATE_TABLE_NAME="bench-state",
            ARCHIVE_BUCKET_NAME="bench-archive",
            SLACK_TOKEN_SECRET_ID="slack",
            ASANA_TOKEN_SECRET_ID="asana",
            ASANA_WORKSPACE_GID=emu.asana.workspace_gid,
            SLACK_API_BASE_URL=emu.slack.base_url,
            ASANA_API_BASE_URL=emu.asana.base_url,
            INITIAL_LOOKBACK_DAYS="0.01",
            AWS_DEFAULT_REGION="us-east-1",
        )
        boto3.client("s3").create_bucket(Bucket="bench-archive")
        boto3.client("dynamodb").create_table(
            TableName="bench-state",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in ("pk", "sk")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        )
        secrets = boto3.client("secretsmanager")
        secrets.create_secret(Name="slack", SecretString=emu.slack.token)
        secrets.create_secret(Name="asana", SecretString=emu.asana.token)

        class Context:
            aws_request_id, function_name, memory_limit_in_mb = "bench", "bench", 512
            invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"

            def get_remaining_time_in_millis(self):
                return 900_000

        payload = {"provider": provider, "backfill": {"start": iso(start), "end": iso(end)}}
        began = time.time()
        out = handler.lambda_handler(payload, Context())["results"][0]
        elapsed = time.time() - began
        log = [r for r in emu.request_log if r["data"]]
    per_page = 9999 if provider == "slack" else 100
    fewest = math.ceil(len(events) / per_page) + (0 if provider == "slack" else 1)
    ideal = fewest / (RATES[provider] / 60)
    return {
        "events": len(events),
        "written": out["events_written"],
        "done": out["backfill"]["done"],
        "elapsed": elapsed,
        "fewest": fewest,
        "calls": len(log),
        "throttled": sum(r["status"] == 429 for r in log),
        "efficiency": ideal / elapsed,
        "times": [r["at"] - began for r in log if r["status"] == 200],
        "rate": RATES[provider],
    }


def chart(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (provider, r) in zip(axes, results.items(), strict=True):
        times = sorted(r["times"])
        ax.step(times, range(1, len(times) + 1), where="post", label="calls answered (this collector)")
        horizon = max(times) if times else 1
        ax.plot(
            [0, horizon],
            [1, 1 + r["rate"] / 60 * horizon],
            "--",
            color="grey",
            label=f"rate-limit ceiling ({r['rate']:,.0f}/min)",
        )
        ax.set_title(f"{provider}: {r['events']:,} events, {r['efficiency']:.0%} of the ceiling")
        ax.set_xlabel("seconds")
        ax.set_ylabel("API calls")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    org = make_org(3, 3000)
    results = {provider: run(provider, org) for provider in ("slack", "asana")}
    for provider, r in results.items():
        assert r["done"] and r["written"] == r["events"], r
        figure(f"{provider} backfill efficiency", f"{r['efficiency']:.1%}", "", ">= 90%", r["efficiency"] >= 0.9)
        share = r["throttled"] / r["calls"]
        figure(
            f"{provider} calls answered 429",
            f"{share:.1%}",
            f"({r['throttled']} of {r['calls']})",
            "<= 1%",
            share <= 0.01,
        )
        figure(
            f"{provider} backfill",
            f"{r['events']:,} events in {r['elapsed']:.1f} s, {r['calls']} calls",
            f"(fewest possible {r['fewest']})",
        )
    chart(results, ROOT / "benchmarks" / "backfill-vs-rate-limit.png")
    figure("chart", "benchmarks/backfill-vs-rate-limit.png")


if __name__ == "__main__":
    main()
