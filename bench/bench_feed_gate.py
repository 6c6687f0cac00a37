"""Benchmark: read_feed + the GX feed gate on a generated 500,000-row HR feed, and the size refusal.

Targets (2-core machine): a 500k-row feed gets its verdict in under 60 s with a peak RSS under
1.5 GB, both for a typical feed (about 1 % bad rows) and a hostile one (a third of the rows bad:
invalid emails, formula names; the gate fails on the reject rate, as it should); a feed over the
size limit (``ABSORB_MAX_FEED_BYTES``, default 100 MiB) is refused in under 1 s without being
parsed. Each measurement runs in a fresh process (GX import included in its wall time); the peak
RSS is that child's ``ru_maxrss`` (``os.wait4``). Run with ``python -m bench.bench_feed_gate``.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from absorb_sync.feed import CANONICAL_COLUMNS, DEFAULT_MAX_FEED_BYTES

ROWS = 500_000
TARGET_SECONDS = 60.0
TARGET_RSS_MB = 1500.0
REFUSAL_TARGET_SECONDS = 1.0
TODAY = date(2026, 6, 15)
ROOT = Path(__file__).resolve().parents[1]
DEPARTMENTS = ("Engineering", "Sales", "Marketing", "Finance", "Human Resources", "Operations", "Legal")
LOCATIONS = ("New York", "San Francisco", "Toronto", "London", "Berlin", "Sydney", "München")
TITLES = ("Manager", "Analyst", "Software Engineer", "Director of Sales", "Account Executive")
FIRST = ("Ann", "José", "Zoë", "Mohammed", "Li", "Olga", "Siobhán", "Kwame")

CHILD = r"""
import json, resource, sys, time
from datetime import date
started = time.perf_counter()
from absorb_sync.feed import FeedError, load_mapping, read_feed
from absorb_sync.gates import validate_feed
from absorb_sync.gates.runner import warm_up
mode, path = sys.argv[1], sys.argv[2]
out = {}
if mode == "refuse":
    t = time.perf_counter()
    try:
        read_feed(path, load_mapping(None))
        out["refused"] = False
    except FeedError as error:
        out["refused"], out["message"] = True, str(error)
    out["refusal_seconds"] = time.perf_counter() - t
else:
    warm_up()
    out["import_seconds"] = time.perf_counter() - started
    t = time.perf_counter()
    feed = read_feed(path, load_mapping(None))
    out["read_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    result = validate_feed(feed.frame, previous_row_count=None, today=date(2026, 6, 15))
    out["gate_seconds"] = time.perf_counter() - t
    out.update(passed=result.passed, rows=len(feed.frame), rejected=len(result.rejected))
print(json.dumps(out))
"""


def write_feed(path: Path, rows: int, bad_share: float, seed: int = 1) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CANONICAL_COLUMNS)
        for n in range(1, rows + 1):
            hire = TODAY - timedelta(days=rng.randint(-20, 3000))
            roll = rng.random()
            status, term = "active", ""
            if roll > 0.95:
                status, term = "terminated", (hire + timedelta(days=30)).isoformat()
            elif roll > 0.93:
                status = "leave"
            first = rng.choice(FIRST)
            email = f"{first.lower()}.{n}@example.com"
            last = f"Lee{n}"
            if rng.random() < bad_share:
                kind = rng.randrange(4)
                if kind == 0:
                    email = email.replace("@", " at ")
                elif kind == 1:
                    last = '=HYPERLINK("http://evil.example","x")'
                elif kind == 2:
                    email = email.replace("@", "\u200b@")
                else:
                    status = "Retired"
            writer.writerow(
                [
                    f"E{n:07d}",
                    first,
                    last,
                    email,
                    rng.choice(DEPARTMENTS),
                    rng.choice(TITLES),
                    rng.choice(LOCATIONS),
                    "E0000001" if n > 1 else "",
                    hire.isoformat(),
                    term,
                    status,
                ]
            )


def measure(mode: str, path: Path) -> tuple[dict, float, float]:
    """Run the child; (its JSON, wall seconds, peak RSS MB of that child)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins")])}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(path)], stdout=subprocess.PIPE, env=env, text=True
    )
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"child {mode} {path.name} failed with exit code {proc.returncode}")
    return json.loads(stdout.strip().splitlines()[-1]), wall, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> int:
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench_feed_gate_") as tmp:
        folder = Path(tmp)
        for name, bad_share in (("typical", 0.01), ("hostile", 0.34)):
            feed = folder / f"{name}.csv"
            write_feed(feed, ROWS, bad_share)
            out, wall, rss = measure("gate", feed)
            met = wall < TARGET_SECONDS and rss < TARGET_RSS_MB
            ok &= met and out["rows"] == ROWS
            print(
                f"{name:8s} {ROWS:,} rows, {feed.stat().st_size / 1e6:.0f} MB: verdict "
                f"{'passed' if out['passed'] else 'failed'} ({out['rejected']:,} rejected) in {wall:.1f} s "
                f"(imports {out['import_seconds']:.1f} + read {out['read_seconds']:.1f} + gate "
                f"{out['gate_seconds']:.1f}), peak RSS {rss:.0f} MB  [{'PASS' if met else 'FAIL'}: "
                f"< {TARGET_SECONDS:.0f} s, < {TARGET_RSS_MB:.0f} MB]",
                flush=True,
            )
        # over the limit: the typical feed three times over (about 3 x 52 MB) is refused unparsed
        big = folder / "too_big.csv"
        body = (folder / "typical.csv").read_bytes()
        header_end = body.index(b"\n") + 1
        with big.open("wb") as handle:
            handle.write(body)
            while handle.tell() <= DEFAULT_MAX_FEED_BYTES:
                handle.write(body[header_end:])
        out, wall, rss = measure("refuse", big)
        met = out["refused"] and out["refusal_seconds"] < REFUSAL_TARGET_SECONDS
        ok &= met
        print(
            f"over the limit ({big.stat().st_size / 1e6:.0f} MB > {DEFAULT_MAX_FEED_BYTES / 1e6:.0f} MB): "
            f"refused={out['refused']} in {out['refusal_seconds'] * 1000:.1f} ms (process {wall:.1f} s), "
            f"peak RSS {rss:.0f} MB  [{'PASS' if met else 'FAIL'}: < {REFUSAL_TARGET_SECONDS:.0f} s]\n"
            f"  {out.get('message', '')}",
            flush=True,
        )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
