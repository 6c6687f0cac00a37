"""Two independent clients of one API user: no login storm, and every failure names the cause.

Two "hosts" - two processes, each with its own token store directory (two machines without
shared storage, or a second deployment on the same API user) - call one sandbox as fast as they
can for 20 s. Absorb keeps one live token per user, so they cannot both work. Target: at most one
login per host in any 5 s, and every failed call carries AbsorbTokenContentionError ("another
client is using API user X: ..."). Before the fix the same run made hundreds of logins and
thousands of 401s, and failed a random share of calls with other errors.

Usage: ``python -m bench.bench_takeover [--seconds 20] [--threads 4]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HOSTS = 2
SECONDS = 20.0
THREADS = 4
LOGIN_WINDOW = 5.0
CONTENTION_ERROR = "AbsorbTokenContentionError"
REMEDY = "give each deployment its own API user, or share the token store"


def _child(start_at: float, seconds: float, threads: int) -> dict:
    """One host: its own store (``ABSORB_PROVIDER_STATE_DIR`` set by the parent), ``threads`` callers."""
    from absorb_provider.hooks.absorb import AbsorbHook

    hook = AbsorbHook("absorb_default")
    _ = hook.client
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0, "failed_contention": 0, "fail_seconds_max": 0.0}
    others: dict[str, int] = {}

    def worker() -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                hook.client.get("courses", {"_limit": 1, "_offset": 0})
                with lock:
                    counts["ok"] += 1
            except Exception as exc:  # counted by kind; the bench checks they all name the cause
                elapsed = time.monotonic() - started
                named = type(exc).__name__ == CONTENTION_ERROR and REMEDY in str(exc)
                with lock:
                    counts["failed"] += 1
                    counts["failed_contention"] += named
                    if not named:
                        key = f"{type(exc).__name__}: {str(exc)[:120]}"
                        others[key] = others.get(key, 0) + 1
                    counts["fail_seconds_max"] = max(counts["fail_seconds_max"], elapsed)
                time.sleep(0.05)  # the next task of this host starts a moment later

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    tokens = hook.client.tokens
    return {
        **counts,
        "other_errors": others,
        "logins": tokens.login_count,
        "login_times": [t - start_at for t in getattr(tokens, "login_times", [])],
        "takeovers": getattr(tokens, "takeover_count", None),
    }


def _max_in_window(times: list[float], window: float) -> int:
    """The most logins in any half-open interval of ``window`` seconds."""
    times = sorted(times)
    best, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        start_at, seconds, threads = args.child
        print(json.dumps(_child(float(start_at), float(seconds), int(threads))))
        return 0

    from absorb_sandbox.testing import SandboxServer

    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-takeover-") as tmp:
        workdir = Path(tmp)
        with SandboxServer(db_path=workdir / "absorb.db", seed="small") as server:
            start_at = time.time() + 8.0  # both children import Airflow first
            children = []
            for index in range(HOSTS):
                env = {
                    **os.environ,
                    "AIRFLOW_CONN_ABSORB_DEFAULT": server.airflow_connection_json(),
                    "ABSORB_PROVIDER_STATE_DIR": str(workdir / f"host-{index}"),
                }
                command = [sys.executable, "-m", "bench.bench_takeover", "--child"]
                command += [str(start_at), str(args.seconds), str(args.threads)]
                children.append(
                    subprocess.Popen(
                        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
                    )
                )
            outputs = [child.communicate(timeout=args.seconds + 300)[0] for child in children]
            stats = server.stats()
    hosts = [json.loads(out.strip().splitlines()[-1]) for out in outputs]

    print(
        f"{HOSTS} hosts x {args.threads} threads, separate token stores, one API user, "
        f"{args.seconds:.0f} s (max_token_takeovers: default)"
    )
    worst_window = 0
    for index, host in enumerate(hosts):
        # a client that does not record its login times is judged by its count alone
        window = _max_in_window(host["login_times"], LOGIN_WINDOW) if host["login_times"] else host["logins"]
        worst_window = max(worst_window, window)
        per_5s = host["logins"] / (args.seconds / LOGIN_WINDOW)
        times = ", ".join(f"{t:.1f}" for t in host["login_times"])
        print(
            f"host {index}: logins {host['logins']} (at {times} s), {per_5s:.2f} per 5 s on average, "
            f"at most {window} in any 5 s; take-overs seen {host['takeovers']}; calls ok {host['ok']}, "
            f"failed {host['failed']} ({host['failed_contention']} with the contention error, slowest "
            f"failure {host['fail_seconds_max']:.2f} s)"
        )
        for text, count in host["other_errors"].items():
            print(f"    other error x{count}: {text}")
    ok = sum(host["ok"] for host in hosts)
    failed = sum(host["failed"] for host in hosts)
    named = sum(host["failed_contention"] for host in hosts)
    share = named / failed if failed else 1.0
    unauthorized = stats["by_status"].get("401", 0)
    print(
        f"sandbox: /authenticate {stats['authenticate_calls']}, 401s {unauthorized}, "
        f"requests {stats['total_requests']}"
    )
    print(
        f"calls ok {ok}, failed {failed} ({100.0 * failed / max(ok + failed, 1):.1f} %), "
        f"share of failed calls carrying the contention error {100.0 * share:.1f} %"
    )
    passed = worst_window <= 1 and share == 1.0
    print(
        f"target: <= 1 login per host per 5 s, every failed call carries the contention error -> "
        f"{'PASS' if passed else 'FAIL'}"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
