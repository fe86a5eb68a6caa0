"""``python -m audit_collector.emulator``: serve a generated org on loopback until interrupted."""

from __future__ import annotations

import argparse
import time

from audit_collector.dates import iso
from audit_collector.emulator.faults import FaultPlan, known_faults
from audit_collector.emulator.org import make_org
from audit_collector.emulator.server import Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit_collector.emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=float, default=3.0, help="days of history to generate")
    parser.add_argument(
        "--events",
        action="append",
        default=[],
        metavar="[API=]COUNT",
        help="events of history, for every API or for one (repeatable; default: each API's demo rate times --days)",
    )
    parser.add_argument("--fault-rate", type=float, default=0.0, help="chance of each fault per request")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every response")
    args = parser.parse_args(argv)
    now = int(time.time())
    start = now - int(args.days * 86400)
    org = make_org(args.seed)
    counts = events_by_api(args.events, parser)
    rates = dict.fromkeys(known_faults(), args.fault_rate) if args.fault_rate else None
    emu = Emulator(port=args.port, faults=FaultPlan(args.seed, rates), latency=args.latency)
    unknown = sorted(set(counts) - {""} - set(emu.apis))
    if unknown:
        parser.error(f"--events names no API the emulator serves: {unknown} (it serves {sorted(emu.apis)})")
    with emu:
        for api in emu.apis.values():
            count = counts.get(api.name, counts.get("", int(api.demo_per_day * args.days)))
            api.add(api.generate(org, start, now, count, seed=args.seed))
            options = "".join(f"  {name} {value}" for name, value in api.options.items())
            print(f"{api.name}: {api.base_url}  token {api.token}{options}  ({count:,} events)")
        print(f"history from {iso(start)}; Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


def events_by_api(values: list[str], parser: argparse.ArgumentParser) -> dict[str, int]:
    """``--events 500 --events slack=300`` as {"": 500, "slack": 300}."""
    counts: dict[str, int] = {}
    for value in values:
        name, _, count = value.rpartition("=")
        if not count.isdigit():
            parser.error(f"--events takes COUNT or API=COUNT, not {value!r}")
        counts[name] = int(count)
    return counts


if __name__ == "__main__":
    raise SystemExit(main())
