"""A generated org: the people and things audit events are about, seeded so every run is reproducible.

Every emulated API draws its events from the same org, so one person shows up in each API's log.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

USER_AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/127.0 Safari/537.36",
    "Slack/4.39.95 (Macintosh; Intel Mac OS X 14_5)",
    "com.tinyspeck.chatlyio/24.08.10 (iPhone; iOS 17.6; Scale/3.00)",
    "Asana/2.3.1 (iPhone; iOS 17.6)",
    "python-requests/2.32.3",
]


@dataclass
class Org:
    """The people and things events are about."""

    enterprise_id: str
    users: list[dict[str, str]]
    workspaces: list[dict[str, str]]
    channels: list[dict[str, Any]]
    apps: list[dict[str, Any]]
    ips: list[str]


def make_org(seed: int = 1, users: int = 2000) -> Org:
    rng = random.Random(seed)
    first = ["ada", "alan", "grace", "linus", "barbara", "ken", "margaret", "dennis", "radia", "frances"]
    last = [
        "lovelace",
        "turing",
        "hopper",
        "torvalds",
        "liskov",
        "thompson",
        "hamilton",
        "ritchie",
        "perlman",
    ]
    people = []
    for i in range(users):
        name = f"{rng.choice(first)}.{rng.choice(last)}{i}"
        people.append(
            {
                "id": f"W{10000000 + i:08d}",
                "name": name.replace(".", " ").title(),
                "email": f"{name}@example.com",
                "team": "E0EXAMPLE",
            }
        )
    workspaces = [
        {"id": f"T{100 + i:07d}", "name": n, "domain": n}
        for i, n in enumerate(["acme-eng", "acme-sales", "acme-ops", "acme-legal", "acme-hq"])
    ]
    channels = [
        {
            "id": f"C{5000000 + i:07d}",
            "name": f"proj-{i}",
            "privacy": rng.choice(["public", "private"]),
            "is_shared": rng.random() < 0.1,
            "is_org_shared": rng.random() < 0.2,
        }
        for i in range(300)
    ]
    apps = [
        {
            "id": f"A{7000000 + i:07d}",
            "name": n,
            "is_distributed": rng.random() < 0.5,
            "is_directory_approved": rng.random() < 0.5,
            "is_workflow_app": False,
            "scopes": rng.sample(["channels:read", "chat:write", "files:read", "users:read", "admin"], 2),
        }
        for i, n in enumerate(["Jira Cloud", "GitHub", "PagerDuty", "Zoom", "Google Drive", "Okta"])
    ]
    ips = [f"203.0.113.{i}" for i in range(1, 60)] + [f"198.51.100.{i}" for i in range(1, 30)]
    return Org("E0EXAMPLE", people, workspaces, channels, apps, ips)


def event_times(rng: random.Random, start: int, end: int, count: int) -> list[int]:
    """Event seconds in [start, end), with same-second bursts like real logins after an outage."""
    out: list[int] = []
    while len(out) < count:
        t = rng.randrange(start, end)
        burst = rng.choice([1] * 20 + [2, 3, 5, 12])
        out.extend([t] * min(burst, count - len(out)))
    return out
