"""``python -m audit_collector.emulator``: serve a generated org on loopback until interrupted."""

from __future__ import annotations

import argparse
import time

from audit_collector.emulator.data import asana_events, iso_ms, make_org, slack_events
from audit_collector.emulator.faults import FAULTS, FaultPlan
from audit_collector.emulator.server import Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit_collector.emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=float, default=3.0, help="days of history to generate")
    parser.add_argument("--slack-events", type=int, default=20000)
    parser.add_argument("--asana-events", type=int, default=10000)
    parser.add_argument("--fault-rate", type=float, default=0.0, help=f"chance of each fault per request: {FAULTS}")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every response")
    args = parser.parse_args(argv)
    now = int(time.time())
    start = now - int(args.days * 86400)
    org = make_org(args.seed)
    rates = dict.fromkeys(FAULTS, args.fault_rate) if args.fault_rate else None
    emu = Emulator(port=args.port, faults=FaultPlan(args.seed, rates), latency=args.latency)
    emu.slack.add(slack_events(org, start, now, args.slack_events, seed=args.seed))
    emu.asana.add(asana_events(org, start * 1000, now * 1000, args.asana_events, seed=args.seed))
    with emu:
        print(f"Slack: {emu.slack_base_url}  token {emu.slack_token}")
        print(f"Asana: {emu.asana_base_url}  token {emu.asana_token}  workspace {emu.workspace_gid}")
        print(f"history from {iso_ms(start * 1000)}; Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
