"""Benchmark: ``absorb-portal snapshot`` of the ``large`` seed (~100k users, ~900k enrollments), and
serving it (``absorb-sandbox serve --from-snapshot``).

Targets (2-core machine, sandbox on the same machine): the snapshot in under 10 minutes with a
peak RSS under 1 GB; the clone loaded and answering in under 3 minutes. The snapshot runs as
the command a person runs (a fresh process: Airflow and provider imports included in its wall
time); its peak RSS is that child's ``ru_maxrss`` (``os.wait4``).

    python -m bench.bench_snapshot [--db SEEDED.db] [--pseudonymise]

``--db``: an already seeded sandbox db (copied first, the original is never served); without it
the ``large`` seed is made in a temporary folder (~1 minute).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absorb_sandbox.testing import SandboxServer

TARGET_SNAPSHOT_SECONDS = 600.0
TARGET_SNAPSHOT_RSS_MB = 1024.0
TARGET_CLONE_SECONDS = 180.0


def clone_ready_seconds(snapshot: Path, db: Path) -> float:
    """Seconds until ``serve --from-snapshot`` on a new db prints its banner (loaded, listening)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "absorb_sandbox.cli",
            "serve",
            "--port",
            "0",
            "--db",
            str(db),
            "--from-snapshot",
            str(snapshot),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        banner = process.stdout.readline()
        if not banner:
            raise SystemExit("the clone did not start")
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=30)


def seeded_copy(source: str | None, folder: Path) -> Path:
    target = folder / "portal.db"
    if source:
        shutil.copyfile(source, target)
        return target
    subprocess.run(
        [sys.executable, "-m", "absorb_sandbox.cli", "seed", "--db", str(target), "--seed", "large"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return target


def timed_snapshot(server: SandboxServer, out: Path, pseudonymise: bool) -> dict:
    """The snapshot command in a child process: wall seconds, peak RSS and its summary."""
    env = {**os.environ, "AIRFLOW_CONN_ABSORB_BENCH": server.airflow_connection_json()}
    command = [sys.executable, "-m", "absorb_sync.portal.cli", "snapshot", "--conn-id", "absorb_bench"]
    command += ["--out", str(out)] + (["--pseudonymise"] if pseudonymise else [])
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the snapshot failed (exit {os.waitstatus_to_exitcode(status)})")
    text = output.decode()
    summary = json.loads(text[text.rfind("\n{") + 1 :])  # the summary is the last thing printed
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None, help="a seeded sandbox db to copy (default: seed large)")
    parser.add_argument("--pseudonymise", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-snapshot-") as tmp:
        folder = Path(tmp)
        db = seeded_copy(args.db, folder)
        with SandboxServer(db_path=db, seed="large") as portal:
            snap = timed_snapshot(portal, folder / "snapshot", args.pseudonymise)
            assert portal.stats()["write_calls"] == 0, "the snapshot wrote to the portal"
        size_mb = sum(p.stat().st_size for p in (folder / "snapshot").rglob("*.parquet")) / 2**20
        clone_seconds = clone_ready_seconds(folder / "snapshot", folder / "clone.db")
    counts = snap["summary"]["counts"]
    report = {
        "users": counts["users"],
        "enrollments": counts["enrollments"],
        "courses": counts["courses"],
        "pseudonymised": args.pseudonymise,
        "snapshot_seconds": round(snap["seconds"], 1),
        "snapshot_seconds_reading": snap["summary"]["seconds_this_run"],
        "snapshot_peak_rss_mb": round(snap["peak_rss_mb"], 1),
        "enrollments_per_second": round(counts["enrollments"] / snap["summary"]["seconds_this_run"]),
        "snapshot_size_mb": round(size_mb, 1),
        "clone_ready_seconds": round(clone_seconds, 1),
        "load_average_1min": round(os.getloadavg()[0], 1),  # this machine's cores are shared
    }
    print(json.dumps(report, indent=2))
    missed = []
    if snap["seconds"] > TARGET_SNAPSHOT_SECONDS:
        missed.append(f"snapshot {snap['seconds']:.0f} s > {TARGET_SNAPSHOT_SECONDS:.0f} s")
    if snap["peak_rss_mb"] > TARGET_SNAPSHOT_RSS_MB:
        missed.append(f"snapshot peak RSS {snap['peak_rss_mb']:.0f} MB > {TARGET_SNAPSHOT_RSS_MB:.0f} MB")
    if clone_seconds > TARGET_CLONE_SECONDS:
        missed.append(f"clone ready in {clone_seconds:.0f} s > {TARGET_CLONE_SECONDS:.0f} s")
    print("targets: " + ("; ".join(missed) if missed else "met"))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
