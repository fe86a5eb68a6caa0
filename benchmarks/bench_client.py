"""1. This project's Slack client against slack_sdk's AuditLogsClient: pages per second.

Both fetch the same 1,000-event pages from the emulator, which models a 50 ms round trip and
charges two more for setting up a connection. Runs are interleaved so drift hits both alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from common import figure

from audit_collector.emulator import Emulator, make_org
from audit_collector.emulator.slack import slack_events
from audit_collector.slack import AuditLogsClient

PAGES, ROUNDS, START = 20, 3, 1_790_000_000


def ours(emu: Emulator) -> int:
    client = AuditLogsClient(token=emu.slack.token, base_url=emu.slack.base_url)
    return sum(1 for _ in client.iter_logs(oldest=START, latest=START + 86399, limit=1000))


def sdk(emu: Emulator) -> int:
    from slack_sdk.audit_logs import AuditLogsClient as SdkClient

    client = SdkClient(token=emu.slack.token, base_url=emu.slack.base_url)
    pages, cursor = 0, None
    while True:
        response = client.logs(oldest=START, latest=START + 86399, limit=1000, cursor=cursor)
        pages += 1
        cursor = (response.body.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return pages


def compare(fetchers: dict[str, Callable[[Emulator], int]], label: str) -> None:
    """Pages/s of ``ours`` and ``slack_sdk`` on the same pages, interleaved, and the ratio (bench_async too)."""
    events = slack_events(make_org(1, 2000), START, START + 86400, PAGES * 1000, seed=5)
    times = dict.fromkeys(fetchers, 0.0)
    pages = dict.fromkeys(fetchers, 0)
    with Emulator(latency=0.05, connect_latency=0.10) as emu:
        emu.slack.add(events)
        for _ in range(ROUNDS):
            for name, fetch in fetchers.items():
                started = time.perf_counter()
                pages[name] += fetch(emu)
                times[name] += time.perf_counter() - started
    rate = {name: pages[name] / times[name] for name in times}
    figure(f"{label} pages/s, this project", f"{rate['ours']:.1f}", "pages/s")
    figure(f"{label} pages/s, slack_sdk", f"{rate['slack_sdk']:.1f}", "pages/s")
    ratio = rate["ours"] / rate["slack_sdk"]
    figure(f"{label} speed-up over slack_sdk", f"{ratio:.2f}", "x", ">= 2x", ratio >= 2)


def main() -> None:
    compare({"ours": ours, "slack_sdk": sdk}, "client")


if __name__ == "__main__":
    main()
