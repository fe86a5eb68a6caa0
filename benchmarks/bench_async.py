"""7. The async clients: against slack_sdk's AsyncAuditLogsClient, and an Asana backfill on one loop.

(1) Pages per second of ``AsyncAuditLogsClient`` against ``slack_sdk.audit_logs.async_client``, both
fetching the same 1,000-event pages from the emulator (50 ms per round trip, 100 ms more for a new
connection, as in bench_client), interleaved in one run.

(2) The Asana backfill as the collector runs it (8 time slices, one sync client a thread, one pacer at
1,480 calls/min with a burst of 20) against the same 8 slices on one asyncio loop (one async client,
one aiohttp session, the same pacer), the emulator enforcing 1,500 calls/min with 250 ms per call.
Each variant runs in its own child process (the emulator stays here), so its CPU time and peak RSS
are the client's alone: fetching and parsing pages, not archiving them.
Efficiency = (fewest calls the API allows / published rate) / actual time, as in bench_backfill.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import resource
import sys
import time

from common import ROOT, figure, run_child

START = 1_790_000_000
SLICES, ASANA_EVENTS, ASANA_RATE = 8, 36_000, 1500.0


# --------------------------------------------------------------------------- (1) Slack client pages/s


async def ours(emu) -> int:
    from audit_collector.slack import AsyncAuditLogsClient

    async with AsyncAuditLogsClient(token=emu.slack.token, base_url=emu.slack.base_url) as client:
        return sum([1 async for _ in client.iter_logs(oldest=START, latest=START + 86399, limit=1000)])


async def sdk(emu) -> int:
    """slack_sdk's async client as documented: no session given, so it opens one per call."""
    from slack_sdk.audit_logs.async_client import AsyncAuditLogsClient as SdkClient

    client = SdkClient(token=emu.slack.token, base_url=emu.slack.base_url)
    window = {"oldest": START, "latest": START + 86399, "limit": 1000}
    response, count = await client.logs(**window), 1
    while cursor := (response.body.get("response_metadata") or {}).get("next_cursor"):
        response, count = await client.logs(**window, cursor=cursor), count + 1
    return count


def slack_figures() -> None:
    import asyncio

    from bench_client import compare

    compare(
        {"ours": lambda emu: asyncio.run(ours(emu)), "slack_sdk": lambda emu: asyncio.run(sdk(emu))}, "async client"
    )


# --------------------------------------------------------------------------- (2) Asana backfill, in a child


def _slices(start_ms: int, end_ms: int) -> list[tuple[str, str]]:
    from audit_collector.asana import iso_ms

    step = (end_ms - start_ms) // SLICES
    edges = [start_ms + i * step for i in range(SLICES)] + [end_ms]
    return [(iso_ms(a), iso_ms(b)) for a, b in itertools.pairwise(edges)]


def _pacer():
    from audit_collector.http_retry import RequestPacer
    from audit_collector.providers.asana.descriptor import DESCRIPTOR

    return RequestPacer(DESCRIPTOR.calls_per_minute, burst=DESCRIPTOR.pacing_burst)


def backfill_threads(api: dict) -> int:
    """Today's collector: one sync client per slice, on 8 threads, all on one pacer."""
    from concurrent.futures import ThreadPoolExecutor

    from audit_collector.asana import AsanaAuditLogClient
    from audit_collector.http_retry import all_builtin_retry_handlers

    pacer = _pacer()

    def fetch(window: tuple[str, str]) -> int:
        client = AsanaAuditLogClient(
            token=api["token"], base_url=api["url"], pacer=pacer, retry_handlers=all_builtin_retry_handlers()
        )
        pages = client.iter_audit_log_events(api["gid"], start_at=window[0], end_at=window[1], limit=100)
        return sum(len(page.events) for page in pages)

    with ThreadPoolExecutor(SLICES) as pool:
        return sum(pool.map(fetch, _slices(api["start_ms"], api["end_ms"])))


def backfill_asyncio(api: dict) -> int:
    """The same slices as tasks on one loop: one async client, one session, the same pacer."""
    import asyncio

    from audit_collector.asana import AsyncAsanaAuditLogClient
    from audit_collector.http_retry import all_builtin_async_retry_handlers

    async def main() -> int:
        handlers = all_builtin_async_retry_handlers()
        async with AsyncAsanaAuditLogClient(
            token=api["token"], base_url=api["url"], pacer=_pacer(), retry_handlers=handlers
        ) as client:

            async def fetch(window: tuple[str, str]) -> int:
                pages = client.iter_audit_log_events(api["gid"], start_at=window[0], end_at=window[1], limit=100)
                return sum([len(page.events) async for page in pages])

            return sum(await asyncio.gather(*(fetch(w) for w in _slices(api["start_ms"], api["end_ms"]))))

    return asyncio.run(main())


def child(variant: str, api_json: str) -> None:
    """Run one variant and print what it cost, as one JSON line (for ``run_child``)."""
    api = json.loads(api_json)
    run = {"threads": backfill_threads, "asyncio": backfill_asyncio}[variant]
    cpu, wall = time.process_time(), time.perf_counter()
    events = run(api)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"events": events, "cpu": cpu, "wall": wall, "peak_mib": peak_mib}))


def asana_figures(rounds: int = 2) -> None:
    from audit_collector.emulator import Emulator, make_org
    from audit_collector.emulator.asana import asana_events

    start_ms = START * 1000
    end_ms = start_ms + 12 * 86_400_000
    events = asana_events(make_org(3, 3000), start_ms, end_ms, ASANA_EVENTS, seed=8)
    fewest = math.ceil(len(events) / 100) + 1
    ideal = fewest / (ASANA_RATE / 60)
    results: dict[str, list[dict]] = {"threads": [], "asyncio": []}
    with Emulator(latency=0.25, asana={"calls_per_minute": ASANA_RATE}) as emu:
        emu.asana.add(events)
        api = {"url": emu.asana.base_url, "token": emu.asana.token, "gid": emu.asana.workspace_gid}
        api |= {"start_ms": start_ms, "end_ms": end_ms}
        for _ in range(rounds):
            for variant in results:  # interleaved: drift hits both alike
                time.sleep(1.0)  # the emulator's bucket refills between runs
                before = len(emu.request_log)
                code = f"import bench_async; bench_async.child({variant!r}, {json.dumps(api)!r})"
                out = run_child(code, {"PYTHONPATH": str(ROOT / "benchmarks")}, timeout=300)
                log = emu.request_log[before:]
                out["throttled"] = sum(r["status"] == 429 for r in log)
                assert out["events"] == len(events), out
                results[variant].append(out)
    for variant, runs in results.items():
        wall = sum(r["wall"] for r in runs) / len(runs)
        cpu = sum(r["cpu"] for r in runs) / sum(r["events"] for r in runs) * 1e6
        peak = max(r["peak_mib"] for r in runs)
        throttled = sum(r["throttled"] for r in runs)
        figure(
            f"asana 8-slice backfill efficiency, {variant}",
            f"{ideal / wall:.1%}",
            f"({wall:.1f} s, {throttled} calls answered 429)",
        )
        figure(f"asana 8-slice backfill CPU per million events, {variant}", f"{cpu:.1f}", "s")
        figure(f"asana 8-slice backfill peak memory, {variant}", f"{peak:.0f}", "MiB RSS")


def main() -> None:
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    if only in ("", "slack"):
        slack_figures()
    if only in ("", "asana"):
        asana_figures()


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
