"""5. Cold start: the handler's import time, and the size of the `sam build` artifact."""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
import sys
import zipfile

from common import ROOT, figure

IMPORT = "import time; t = time.perf_counter(); import audit_collector.aws.handler; print(time.perf_counter() - t)"


def main() -> None:
    samples = []
    for _ in range(7):
        out = subprocess.run(
            [sys.executable, "-X", "frozen_modules=on", "-c", IMPORT],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        samples.append(float(out.stdout) * 1000)
    median = statistics.median(samples)
    figure("handler import time (median of 7)", f"{median:.0f}", "ms", "<= 400 ms", median <= 400)

    sam = ROOT / ".tools-venv" / "bin" / "sam"
    pyenv = (
        subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
        if shutil.which("pyenv")
        else ""
    )
    py313 = os.path.join(pyenv, "versions", "3.13.0", "bin")
    if not (sam.exists() and os.path.exists(os.path.join(py313, "python3.13"))):
        figure("sam build artifact", "not measured (run `make check-template` first; needs python3.13)")
        return
    build = ROOT / ".aws-sam" / "bench-build"
    env = {**os.environ, "PATH": f"{py313}:{os.environ['PATH']}", "SAM_CLI_TELEMETRY": "0"}
    subprocess.run([str(sam), "build", "--build-dir", str(build)], cwd=ROOT, env=env, check=True, capture_output=True)
    folder = build / "CollectorFunction"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in folder.rglob("*"):
            if path.is_file():
                archive.write(path, path.relative_to(folder))
    zipped = len(buffer.getvalue()) / 1e6
    unzipped = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
    shutil.rmtree(build, ignore_errors=True)
    figure("sam build artifact, zipped", f"{zipped:.1f}", "MB", "<= 10 MB", zipped <= 10)
    figure("sam build artifact, unzipped", f"{unzipped:.1f}", "MB")


if __name__ == "__main__":
    main()
