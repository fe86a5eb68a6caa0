"""4. Memory: peak RSS of one collection with 9,999-event pages, for 10,000 and 1,000,000 events.

Memory must not grow with the size of a backfill: it is bounded by one page and one object.

The CLI (the Lambda's pipeline, with pacing off) runs in a child process against the emulator in
this one, writing to a moto_server on loopback. Peak RSS is the child's own VmHWM (ru_maxrss would
inherit this parent's high-water mark across exec on Linux).
"""

from __future__ import annotations

import time

from common import figure, iso, moto_server, run_child

from audit_collector.emulator import Emulator, make_org
from audit_collector.emulator.slack import slack_events

DAY = 86400
CHILD = """
import json, sys
from audit_collector import cli
code = cli.main(sys.argv[1:])
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"code": code, "peak_rss_mb": hwm / 1024}))
"""


def peak(events: int, days: int, org) -> float:
    now = time.time()
    end = now - now % DAY - DAY
    start = end - days * DAY
    with moto_server() as url, Emulator() as emu:
        emu.slack.add(slack_events(org, int(start), int(end), events, seed=events % 97))
        argv = [
            "backfill",
            "--provider",
            "slack",
            "--start",
            iso(start),
            "--end",
            iso(end),
            "--archive",
            "s3://bench-archive/",
            "--state",
            "dynamodb://bench-state",
            "--api-base-url",
            emu.slack.base_url,
            "--calls-per-minute",
            "0",
            "--lookback-days",
            "0.01",
            "--no-progress",
        ]
        code = CHILD.replace("sys.argv[1:]", repr(argv))
        result = run_child(code, {"AWS_ENDPOINT_URL": url, "SLACK_TOKEN": emu.slack.token})
    assert result["code"] == 0, result
    return result["peak_rss_mb"]


def main() -> None:
    org = make_org(6, 3000)
    # Both fill whole 9,999-event pages (what bounds memory): 10,000 events in one day, 1,000,000 in 20.
    small, large = peak(10_000, 1, org), peak(1_000_000, 20, org)
    figure("peak RSS, 10,000-event backfill", f"{small:.0f}", "MB")
    figure("peak RSS, 1,000,000-event backfill (9,999-event pages)", f"{large:.0f}", "MB", "<= 256 MB", large <= 256)
    figure("peak RSS ratio 1,000,000 / 10,000 events", f"{large / small:.2f}", "x", "<= 1.5x", large / small <= 1.5)


if __name__ == "__main__":
    main()
