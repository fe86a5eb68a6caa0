"""Shared by the benchmarks: machine facts, a loopback moto_server, child processes, figures."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES: list[dict] = []


def figure(name: str, value: float | str, unit: str = "", target: str = "", ok: bool | None = None) -> None:
    """Print one figure on one line (what run_all collects), e.g. 'slack pages/s: 12.3 (target >= 2x)'."""
    verdict = "" if ok is None else (" PASS" if ok else " MISS")
    line = f"{name}: {value}{(' ' + unit) if unit else ''}{f' (target {target})' if target else ''}{verdict}"
    print(line, flush=True)
    FIGURES.append({"name": name, "value": value, "unit": unit, "target": target, "ok": ok})


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}){memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {datetime.now(UTC).strftime('%Y-%m-%d')}"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_server():
    """A moto_server on loopback with the archive bucket, state table and secrets; yields its URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    try:
        import requests

        requests.post(f"{url}/moto-api/reset", timeout=10)  # servers in one process share moto's state
        s3 = boto3.client("s3", endpoint_url=url)
        s3.create_bucket(Bucket="bench-archive")
        create_state_table(url, "bench-state")
        yield url
    finally:
        server.stop()


def create_state_table(url: str, name: str) -> None:
    """A state table shaped like template.yaml's, in the moto_server at ``url``."""
    import boto3

    boto3.client("dynamodb", endpoint_url=url).create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in ("pk", "sk")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    )


def run_child(code: str, env: dict[str, str], timeout: float = 900) -> dict:
    """Run Python code in a child process; it prints one JSON line last, which is returned."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"child failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
