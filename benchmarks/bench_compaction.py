"""Compaction: a generated year of audit logs on today's layout (one gzip JSON Lines object per
5-minute live run, 288 a day) and compacted (one sorted Parquet file a day), queried with DuckDB.

For each provider: four investigation queries (a count over the year; failed logins by user and IP
over 30 days; admin grants over the year with who granted them; one event id over the year), each
timed and its bytes read measured (``rchar`` of /proc/self/io: every byte DuckDB's reads returned,
page cache or not), on the raw table (Athena's raw columns) and on the ``_all`` view (compacted days);
objects per day before and after; the compaction's own time.

Events come from the emulator's generators (its realistic mix of actions, users, IPs), generated for
a week and replayed over the year with fresh ids and shifted times, written directly as JSON Lines.

    python benchmarks/bench_compaction.py [--days 365] [--events-per-day 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
from common import FIGURES, figure

from audit_collector import providers
from audit_collector.compaction import sql
from audit_collector.compaction.local import compact_local
from audit_collector.compaction.rules import CURRENT
from audit_collector.emulator import make_org
from audit_collector.emulator.asana import asana_events
from audit_collector.emulator.slack import slack_events
from audit_collector.query import connect
from audit_collector.storage.archive import _gzip

FIRST_DAY = datetime(2025, 11, 1, tzinfo=UTC)
POOL_DAYS = 7
RUNS_PER_DAY = 288  # one live run every 5 minutes


def _pool(provider: str, day_start: int, count: int, seed: int) -> list[dict]:
    org = make_org(seed=3, users=3000)
    if provider == "slack":
        return slack_events(org, day_start, day_start + 86400, count, seed=seed)
    return asana_events(org, day_start * 1000, (day_start + 86400) * 1000, count, seed=seed)


def _write_day(job: tuple[str, str, int, int, int]) -> int:
    """One day of one provider: a pooled day's events, new ids, moved to this day, in 288 objects."""
    provider, root, day_index, events_per_day, objects = job
    day_start = int((FIRST_DAY + timedelta(days=day_index)).timestamp())
    pool_start = int(FIRST_DAY.timestamp())
    events = _pool(provider, pool_start, events_per_day, seed=day_index % POOL_DAYS)
    rng = random.Random(day_index)
    encoder = msgspec.json.Encoder()
    shift = day_start - pool_start
    lines_by_run: list[list[bytes]] = [[] for _ in range(objects)]
    for event in events:
        if provider == "slack":
            event["id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            event["date_create"] += shift
            seconds = event["date_create"] - day_start
        else:
            event["gid"] = str(rng.randrange(10**15, 10**16))
            at = datetime.fromisoformat(event["created_at"].replace("Z", "+00:00")) + timedelta(seconds=shift)
            event["created_at"] = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
            seconds = int(at.timestamp()) - day_start
        lines_by_run[min(objects - 1, seconds * objects // 86400)].append(encoder.encode(event))
    dt = (FIRST_DAY + timedelta(days=day_index)).strftime("%Y-%m-%d")
    folder = Path(root) / provider / f"dt={dt}"
    folder.mkdir(parents=True, exist_ok=True)
    for run, lines in enumerate(lines_by_run):
        if lines:
            name = f"{day_start + run * 300}-{day_start + (run + 1) * 300}-p00000.jsonl.gz"
            (folder / name).write_bytes(_gzip(b"\n".join(lines) + b"\n"))
    return len(events)


def generate(root: Path, names: list[str], days: int, events_per_day: int) -> int:
    jobs = [(p, str(root), d, events_per_day, RUNS_PER_DAY) for p in names for d in range(days)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return sum(pool.map(_write_day, jobs, chunksize=4))


def rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def measure(con, query: str, repeat: int) -> tuple[float, int, list]:
    """Best time of ``repeat`` runs, bytes read by the first, and the rows."""
    best, read, rows = float("inf"), 0, []
    for i in range(repeat):
        before, started = rchar(), time.perf_counter()
        rows = con.execute(query).fetchall()
        elapsed = time.perf_counter() - started
        if i == 0:
            read = rchar() - before
        best = min(best, elapsed)
    return best, read, rows


def queries(provider: str, last_day: str, event_id: str) -> list[tuple[str, str, str]]:
    """(name, on today's layout, on the compacted layout): the same question, the same answer."""
    since = (datetime.fromisoformat(last_day) - timedelta(days=29)).strftime("%Y-%m-%d")
    if provider == "slack":
        raw, view = "slack_audit_logs", "slack_audit_logs_all"
        grants = "('role_change_to_admin', 'role_change_to_owner')"
        return [
            ("count over the year", f"SELECT count(*) FROM {raw}", f"SELECT count(*) FROM {view}"),
            (
                "failed logins by user and IP, 30 days",
                f"SELECT actor.user.email, context.ip_address, count(*) AS n FROM {raw} WHERE dt >= '{since}' "
                "AND action = 'user_login_failed' GROUP BY 1, 2 ORDER BY n DESC, 1, 2 LIMIT 20",
                f"SELECT actor_email, ip, count(*) AS n FROM {view} WHERE dt >= '{since}' "
                "AND action = 'user_login_failed' GROUP BY 1, 2 ORDER BY n DESC, 1, 2 LIMIT 20",
            ),
            (
                "admin grants over the year, with who granted them",
                "SELECT from_unixtime(date_create) AS granted_at, actor.user.email, "
                f"json_extract_scalar(entity, '$.user.email'), action FROM {raw} WHERE action IN {grants} "
                "ORDER BY granted_at, 2, 3",
                f"SELECT event_time AS granted_at, actor_email, entity_email, action FROM {view} "
                f"WHERE action IN {grants} ORDER BY granted_at, 2, 3",
            ),
            (
                "one event id over the year",
                f"SELECT id, dt FROM {raw} WHERE id = '{event_id}'",
                f"SELECT id, dt FROM {view} WHERE id = '{event_id}'",
            ),
        ]
    raw, view = "asana_audit_log_events", "asana_audit_log_events_all"
    return [
        ("count over the year", f"SELECT count(*) FROM {raw}", f"SELECT count(*) FROM {view}"),
        (
            "failed logins by user and IP, 30 days",
            f"SELECT actor.email, context.client_ip_address, count(*) AS n FROM {raw} WHERE dt >= '{since}' "
            "AND event_type = 'user_login_failed' GROUP BY 1, 2 ORDER BY n DESC, 1, 2 LIMIT 20",
            f"SELECT actor_email, ip, count(*) AS n FROM {view} WHERE dt >= '{since}' "
            "AND event_type = 'user_login_failed' GROUP BY 1, 2 ORDER BY n DESC, 1, 2 LIMIT 20",
        ),
        (
            "admin grants over the year, with who granted them",
            "SELECT from_iso8601_timestamp(created_at) AS granted_at, actor.email, resource.gid, "
            f"json_extract_scalar(details, '$.new_value') FROM {raw} WHERE event_type = "
            "'user_workspace_admin_role_changed' ORDER BY granted_at, 2, 3",
            "SELECT event_time AS granted_at, actor_email, resource_gid, new_value "
            f"FROM {view} WHERE event_type = 'user_workspace_admin_role_changed' ORDER BY granted_at, 2, 3",
        ),
        (
            "one event id over the year",
            f"SELECT gid, dt FROM {raw} WHERE gid = '{event_id}'",
            f"SELECT gid, dt FROM {view} WHERE gid = '{event_id}'",
        ),
    ]


def objects_per_day(root: Path, provider: str, compacted: bool) -> float:
    if compacted:
        days = list((root / "_compacted" / provider).glob(f"dt=*/{CURRENT}"))
        files = list((root / "_compacted" / provider).glob("dt=*/run=*/*.parquet"))
        return len(files) / max(1, len(days))
    days = list((root / provider).glob("dt=*"))
    return sum(1 for d in days for _ in d.glob("*.jsonl.gz")) / max(1, len(days))


CHART = Path(__file__).resolve().parent / "compaction-before-after.png"
_QUERY_LINE = re.compile(
    r"^(?P<provider>\w+) (?P<name>.+?): (?P<t0>[\d.,]+) s -> (?P<t1>[\d.,]+) s .*?, (?P<b0>[\d.,]+) MB -> "
    r"(?P<b1>[\d.,]+) MB read"
)


def chart(lines: list[str], path: Path = CHART) -> bool:
    """Time and bytes read per query, before and after, from this script's own output lines."""
    rows = [m for m in map(_QUERY_LINE.match, lines) if m]
    if not rows:
        return False
    try:
        import matplotlib
    except ImportError:  # the bench extra
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{m['provider']}\n{m['name'].replace(' over the year', '').replace(', 30 days', '')}" for m in rows]
    number = lambda text: float(text.replace(",", ""))  # noqa: E731
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, (before, after, unit) in zip(axes, (("t0", "t1", "seconds"), ("b0", "b1", "MB read")), strict=True):
        xs = range(len(rows))
        ax.bar(
            [x - 0.2 for x in xs], [number(m[before]) for m in rows], 0.4, label="today: 288 gzip JSON objects a day"
        )
        ax.bar([x + 0.2 for x in xs], [number(m[after]) for m in rows], 0.4, label="compacted: 1 Parquet file a day")
        ax.set_yscale("log")
        ax.set_ylabel(f"{unit} (log scale)")
        ax.set_xticks(list(xs), labels, fontsize=7, rotation=30, ha="right")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_title("Query time, DuckDB, a year of events")
    axes[1].set_title("Bytes read")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--events-per-day", type=int, default=10_000)
    parser.add_argument("--providers", default="slack,asana")
    parser.add_argument("--keep", help="generate into (or reuse) this folder and keep it")
    parser.add_argument("--chart-from", help="only draw the chart from a previous run's output")
    args = parser.parse_args()
    if args.chart_from:
        return 0 if chart(Path(args.chart_from).read_text().splitlines()) else 1
    names = args.providers.split(",")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-compaction-"))
    try:
        started = time.perf_counter()
        if not (root / names[0]).exists():
            events = generate(root, names, args.days, args.events_per_day)
            figure(
                "generated",
                f"{events:,} events, {args.days} days x {len(names)} providers, {RUNS_PER_DAY} objects a day, "
                f"in {time.perf_counter() - started:.0f} s",
            )
        last_day = (FIRST_DAY + timedelta(days=args.days - 1)).strftime("%Y-%m-%d")
        end = (FIRST_DAY + timedelta(days=args.days)).timestamp()
        for provider in names:
            descriptor = providers.get(provider)
            ups = descriptor.units_per_second
            checkpoint = {
                "jobs": {"live": {"ranges": [[int(FIRST_DAY.timestamp()) * ups, None]], "watermark": int(end) * ups}}
            }
            before = objects_per_day(root, provider, compacted=False)
            started = time.perf_counter()
            report = compact_local(root, descriptor, checkpoint)
            took = time.perf_counter() - started
            after = objects_per_day(root, provider, compacted=True)
            figure(
                f"{provider} compaction (DuckDB, local)",
                f"{len(report.compacted)} days, {sum(d.events for d in report.compacted):,} events in {took:.0f} s",
            )
            figure(f"{provider} objects per day, before", f"{before:.0f}")
            figure(f"{provider} objects per day, after", f"{after:.0f}", target="<= 2", ok=after <= 2)
            raw_bytes = sum(p.stat().st_size for p in (root / provider).rglob("*.jsonl.gz"))
            parquet_bytes = sum(p.stat().st_size for p in (root / "_compacted" / provider).rglob("*.parquet"))
            figure(
                f"{provider} stored bytes, raw gzip vs Parquet zstd",
                f"{raw_bytes / 1e6:,.0f} MB vs {parquet_bytes / 1e6:,.0f} MB",
            )

            con = connect(root)
            table = sql.compacted_table(descriptor)
            middle = (FIRST_DAY + timedelta(days=args.days // 2)).strftime("%Y-%m-%d")
            event_id = con.execute(
                f"SELECT {descriptor.id_field} FROM {table} WHERE dt = '{middle}' LIMIT 1 OFFSET 77"
            ).fetchone()[0]
            for name, raw_sql, compacted_sql in queries(provider, last_day, event_id):
                raw_time, raw_read, raw_rows = measure(con, raw_sql, 1)
                new_time, new_read, new_rows = measure(con, compacted_sql, 3)
                same = [tuple(map(str, r)) for r in raw_rows] == [tuple(map(str, r)) for r in new_rows]
                speed, fewer = raw_time / new_time, raw_read / max(1, new_read)
                figure(
                    f"{provider} {name}",
                    f"{raw_time:.2f} s -> {new_time:.3f} s ({speed:,.0f}x faster), {raw_read / 1e6:,.0f} MB -> "
                    f"{new_read / 1e6:,.1f} MB read ({fewer:,.0f}x fewer), same answer: {'yes' if same else 'NO'}",
                    target=">= 10x and >= 10x",
                    ok=speed >= 10 and fewer >= 10 and same,
                )
            con.close()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    lines = [f"{f['name']}: {f['value']}" for f in FIGURES]
    if chart(lines):
        figure("chart", f"benchmarks/{CHART.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
