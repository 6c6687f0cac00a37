"""Scale benchmarks of the DAGs against a seeded sandbox, each scenario versus a bare script.

``export``: a full ``absorb_completion_export`` (``dag.test`` in a fresh process, as the DAG tests
run it: temp ``AIRFLOW_HOME`` with SQLite, ``AIRFLOW_CONN_ABSORB_DEFAULT`` from the sandbox,
temp ``ABSORB_OUTPUT_ROOT`` / ``ABSORB_STATE_ROOT``) versus a bare ``requests`` loop that pages
``/courses/{id}/enrollments`` into pandas and writes Parquet. They run alternately, ``--runs``
times each (min / median / max). Printed: the wall-time ratio (medians, and min / median / max
of the alternating pairs' ratios), each task's wall time and peak RSS, requests per run versus the
minimum (``/_sandbox/stats``), and each task's start-up cost.

How memory is measured. ``dag.test`` runs every task in one process, so a sampler thread reads
that process's RSS every 10 ms and each task gets the peak within its own start..end (Airflow's
task instance dates): an upper bound for the task, since it includes whatever earlier tasks left
in the process (GX stays imported after the gate, allocators keep freed pages). Each task is
then also run alone in a fresh process - the task's job function on a copy of the run folder,
as a worker runs one task per process - for its own peak RSS (``ru_maxrss``), its start-up cost
(importing what it imports, before any work) and whether it loaded Great Expectations or
matplotlib (and pandas). The targets (at the ``large`` seed: DAG wall <= 1.05x the bare loop,
every task <= 400 MB; at every seed: no task but the gate loads GX, none loads matplotlib) are
checked on these.

Usage: ``python -m bench.bench_scale [small|medium|large] [--runs 3] [--workers 2] [--db FILE]``
(default ``medium`` for a quick run; ``make bench`` runs ``large`` through ``bench/__main__.py``'s
``BENCH_ARGS``, with ``--growth-from medium``: the same scenarios at ``medium`` first, then how
requests, memory and wall time grew from ``medium`` to ``large`` against the pages read; ``--db`` reuses a seeded sandbox database; ``--workdir`` keeps the work folder, so the
sync scenario's first load is reused with the same ``--db``). Each goal is printed PASS/FAIL. Another scenario = another
``scenario_*`` function taking the running sandbox and the work folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from base64 import urlsafe_b64encode
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPORT_DAG = "absorb_completion_export"
EXPORT_TASKS = ("extract", "validate_export", "write_outputs", "compliance_report")
EXPORT_TIME_FACTOR = 1.05
TASK_RSS_LIMIT_MB = 400
TARGET_SEED = "large"
PAGE = 1000
PORT_FILE = "sandbox_port"


# --- children (each in a fresh process; the last stdout line is their JSON) ---------------------


def _child_bare(base_url: str, api_key: str, username: str, password: str, output: str) -> dict:
    """The bare script: requests paging into pandas, then Parquet."""
    import pandas as pd
    import requests

    started = time.monotonic()
    session = requests.Session()
    headers = {"x-api-key": api_key, "x-api-version": "2"}
    body = {"username": username, "password": password, "privateKey": api_key}
    token = session.post(f"{base_url}/authenticate", json=body, headers=headers, timeout=60).json()
    headers["Authorization"] = f"Bearer {token}"

    def pages(path: str, key: str):
        offset = 0
        while True:
            response = session.get(
                f"{base_url}/{path}", params={"_limit": PAGE, "_offset": offset}, headers=headers, timeout=60
            )
            response.raise_for_status()
            rows = response.json()[key]
            yield from rows
            if len(rows) < PAGE:
                return
            offset += 1

    courses = [c["id"] for c in pages("courses", "courses")]
    rows = []
    for course in courses:
        rows.extend(pages(f"courses/{course}/enrollments", "enrollments"))
    frame = pd.DataFrame(rows)
    frame.to_parquet(output, index=False)
    return {"seconds": time.monotonic() - started, "rows": len(frame)}


def _child_dag(conf_json: str) -> dict:
    """``dag.test`` of the export with an RSS sampler; per-task wall and peak RSS."""
    import threading

    import psutil

    process = psutil.Process()
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.time(), process.memory_info().rss))
            time.sleep(0.01)

    threading.Thread(target=sample, daemon=True).start()
    started = time.monotonic()
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    dag = bag.dags[EXPORT_DAG]
    parsed = time.monotonic()
    dag_run = dag.test(run_conf=json.loads(conf_json))
    seconds = time.monotonic() - started
    stop.set()
    tasks = {}
    for ti in dag_run.get_task_instances():
        begin, end = ti.start_date.timestamp(), ti.end_date.timestamp()
        window = [rss for at, rss in samples if begin <= at <= end] or [0]
        before = [rss for at, rss in samples if at <= begin] or [0]
        tasks[ti.task_id] = {
            "state": str(ti.state),
            "seconds": end - begin,
            "peak_rss_mb": max(window) / 2**20,
            "rss_at_start_mb": before[-1] / 2**20,
        }
    from absorb_sync.jobs.runtime import run_key

    return {
        "seconds": seconds,
        "parse_seconds": parsed - started,
        "state": str(dag_run.state),
        "run_id": dag_run.run_id,
        "run_key": run_key(dag_run.run_id),
        "tasks": tasks,
        "peak_rss_mb": max(rss for _, rss in samples) / 2**20,
    }


TASK_IMPORTS = {
    # what each task's code imports (the DAG's task bodies and the job functions they call)
    "extract": [
        "absorb_sync.jobs.export",
        "absorb_sync.jobs.runtime",
        "absorb_provider.hooks.absorb",
        "absorb_provider.io",
        "absorb_sync.export",
        "absorb_sync.export_checks",
        "absorb_sync.export_report",
        "absorb_sync.state",
        "pyarrow.parquet",
        "pyarrow.compute",
    ],
    "validate_export": [
        "absorb_sync.jobs.export",
        "absorb_sync.export_checks",
        "absorb_sync.gates.export_gate",
        "absorb_sync.state",
        "pyarrow.parquet",
    ],
    "write_outputs": [
        "absorb_sync.jobs.export",
        "absorb_sync.export",
        "absorb_provider.csv_safety",
        "pyarrow.parquet",
    ],
    "compliance_report": [
        "absorb_sync.jobs.export",
        "absorb_sync.export_report",
        "absorb_sync.report",
        "absorb_sync.state",
        "pandas",
    ],
}


def _child_task(
    task: str, folder: str, output_root: str, state_root: str, run_id: str, window_json: str
) -> dict:
    """One task's job function alone in a fresh process (as a worker runs it)."""
    import importlib
    from datetime import UTC, datetime

    started = time.perf_counter()
    import airflow.sdk  # noqa: F401 - the task runner has it loaded before the task starts

    base = time.perf_counter()
    for module in TASK_IMPORTS[task]:
        importlib.import_module(module)
    if task == "validate_export":
        from absorb_sync.gates.runner import warm_up

        warm_up()  # the gate's GX context, built on its first use
    imported = time.perf_counter()
    rss_after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from absorb_sync.jobs import export
    from absorb_sync.jobs.runtime import make_hook, portal_state, storage_path

    hook = make_hook(None)
    state = portal_state(hook, state_root)
    window = json.loads(window_json)
    now = datetime.now(UTC)
    run_folder = storage_path(folder)
    if task == "extract":
        export.extract_enrollments(
            folder=run_folder,
            hook=hook,
            course_ids=None,
            window=window,
            state=state,
            output_root=storage_path(output_root),
            now=now,
        )
    elif task == "validate_export":
        export.gate_export(folder=run_folder, state=state, window=window, drop_tolerance_pct=0.0, now=now)
    elif task == "write_outputs":
        export.write_outputs(
            folder=run_folder,
            output_path=None,
            run_id=run_id,
            partition_by="course_id",
            sql_conn_id=None,
            sql_table="absorb_enrollments",
        )
    else:
        export.report_and_record(
            folder=run_folder, state=state, run_id=run_id, window=window, written={}, now=now
        )
    return {
        "seconds": time.perf_counter() - started,
        "airflow_import_seconds": base - started,
        "import_seconds": imported - base,
        "rss_after_imports_mb": rss_after_imports,
        "great_expectations": "great_expectations" in sys.modules,
        "matplotlib": "matplotlib" in sys.modules,
        "pandas": "pandas" in sys.modules,
    }


def _run_child(env: dict, *args: str, module: str = "bench.bench_scale") -> dict:
    """Runs a child; its peak RSS is its own ``ru_maxrss`` from ``os.wait4`` (nothing else's)."""
    command = [sys.executable, "-m", module, "--child", *args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=str(ROOT))
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise SystemExit(f"child {args[:2]} failed:\n{stderr[-4000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


# --- helpers -------------------------------------------------------------------------------------


def _spread(values: list[float]) -> str:
    return f"min {min(values):.1f} / median {statistics.median(values):.1f} / max {max(values):.1f}"


def _pages(count: int) -> int:
    """Requests a paged listing of ``count`` rows takes (a short page ends it)."""
    return count // PAGE + 1


def _minimum_requests(db_path: Path) -> dict:
    """The fewest requests each side can make: one login plus every page it must read."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as connection:
        per_course = [
            n
            for (n,) in connection.execute(
                "SELECT COUNT(e.id) FROM courses c LEFT JOIN enrollments e ON e.course_id = c.id GROUP BY c.id"
            )
        ]
        users = connection.execute("SELECT COUNT(*) FROM users").fetchone()[0]
        departments = connection.execute("SELECT COUNT(*) FROM departments").fetchone()[0]
    enrollment_pages = sum(_pages(n) for n in per_course)
    bare = 1 + _pages(len(per_course)) + enrollment_pages
    return {
        "bare": bare,
        "dag": bare + _pages(users) + _pages(departments),
        "enrollments": sum(per_course),
        "courses": len(per_course),
        "users": users,
    }


def _airflow_env(workdir: Path, server) -> dict:
    home = workdir / "airflow"
    home.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__FERNET_KEY": urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW_CONN_ABSORB_DEFAULT": server.airflow_connection_json(),
            "GX_ANALYTICS_ENABLED": "false",
            "ABSORB_PROVIDER_STATE_DIR": str(workdir / "provider-state"),
        }
    )
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=env
    )
    return env


# --- scenarios -----------------------------------------------------------------------------------


def scenario_export(server, workdir: Path, runs: int, seed: str) -> tuple[bool, dict]:
    """A full completion export: the DAG versus the bare paging loop, alternating."""
    print(f"\n[export] full export of the '{seed}' seed: dag.test vs bare requests+pandas ({runs} runs each)")
    minimum = _minimum_requests(Path(server.db_path))
    env = _airflow_env(workdir, server)
    bare_args = (
        "bare",
        server.base_url,
        server.api_key,
        server.username,
        server.password,
        str(workdir / "bare.parquet"),
    )
    _run_child(env, *bare_args)  # warm-up (the sandbox's page cache), not counted
    bare_runs, dag_runs = [], []
    conf = json.dumps({"full_export": True})
    last = None
    for number in range(runs):
        before = server.stats()["total_requests"]
        bare_runs.append(_run_child(env, *bare_args))
        middle = server.stats()["total_requests"]
        run_env = dict(env)
        out = workdir / f"output-{number}"
        run_env.update(ABSORB_OUTPUT_ROOT=str(out), ABSORB_STATE_ROOT=str(workdir / "state"))
        dag_runs.append(_run_child(run_env, "dag", conf))
        after = server.stats()["total_requests"]
        bare_runs[-1]["requests"], dag_runs[-1]["requests"] = middle - before, after - middle
        if dag_runs[-1]["state"] != "success":
            raise SystemExit(f"[export] the DAG run failed: {dag_runs[-1]['tasks']}")
        if last is not None:
            shutil.rmtree(last, ignore_errors=True)  # keep only the newest run's files (GBs at large)
        last = out
        print(
            f"[export] run {number + 1}: bare {bare_runs[-1]['seconds']:.1f}s ({bare_runs[-1]['rows']} rows), "
            f"dag {dag_runs[-1]['seconds']:.1f}s",
            flush=True,
        )
    bare_median = statistics.median(r["seconds"] for r in bare_runs)
    dag_median = statistics.median(r["seconds"] for r in dag_runs)
    ratio = dag_median / bare_median
    pair_ratios = [d["seconds"] / b["seconds"] for b, d in zip(bare_runs, dag_runs, strict=True)]
    print(
        f"[export] bare loop wall (s): {_spread([r['seconds'] for r in bare_runs])}; peak RSS "
        f"{max(r['peak_rss_mb'] for r in bare_runs):.0f} MB"
    )
    print(
        f"[export] DAG wall (s):       {_spread([r['seconds'] for r in dag_runs])} (DagBag parse "
        f"{statistics.median(r['parse_seconds'] for r in dag_runs):.1f}s); process peak RSS "
        f"{max(r['peak_rss_mb'] for r in dag_runs):.0f} MB"
    )
    print(
        f"[export] wall-time ratio DAG / bare (medians): {ratio:.2f} (goal <= {EXPORT_TIME_FACTOR}); "
        f"per alternating pair: min {min(pair_ratios):.2f} / median {statistics.median(pair_ratios):.2f} "
        f"/ max {max(pair_ratios):.2f}"
    )
    print(
        f"[export] requests per run: bare {sorted({r['requests'] for r in bare_runs})} (minimum {minimum['bare']}), "
        f"DAG {sorted({r['requests'] for r in dag_runs})} (minimum {minimum['dag']}: login, course/user/department "
        f"pages, {minimum['enrollments']} enrollments in {minimum['courses']} courses)"
    )
    print("[export] in dag.test (one process; peak within the task's window, RSS at its start):")
    for task in EXPORT_TASKS:
        walls = [r["tasks"][task]["seconds"] for r in dag_runs]
        peak = max(r["tasks"][task]["peak_rss_mb"] for r in dag_runs)
        start = max(r["tasks"][task]["rss_at_start_mb"] for r in dag_runs)
        print(f"    {task:18s} wall {_spread(walls)} s; peak RSS {peak:.0f} MB (at start {start:.0f} MB)")

    # each task alone in a fresh process, on a copy of the last run's folder
    run = dag_runs[-1]
    window = json.dumps({"full": True, "since": None, "until": None})
    probe = workdir / "probe" / EXPORT_DAG / "probe"
    shutil.rmtree(workdir / "probe", ignore_errors=True)
    probe.mkdir(parents=True)
    probe_env = dict(
        env, ABSORB_OUTPUT_ROOT=str(workdir / "probe"), ABSORB_STATE_ROOT=str(workdir / "probe-state")
    )
    print("[export] each task alone in a fresh process on the same data (peak RSS = its ru_maxrss):")
    ok_rss = True
    peaks: dict[str, float] = {}
    heavy: dict[str, list[str]] = {}
    for task in EXPORT_TASKS:
        result = _run_child(
            probe_env,
            "task",
            task,
            str(probe),
            str(workdir / "probe"),
            str(workdir / "probe-state"),
            run["run_id"],
            window,
        )
        ok_rss &= result["peak_rss_mb"] <= TASK_RSS_LIMIT_MB
        peaks[task] = result["peak_rss_mb"]
        heavy[task] = [name for name in ("great_expectations", "matplotlib") if result[name]]
        print(
            f"    {task:18s} wall {result['seconds']:.1f}s; peak RSS {result['peak_rss_mb']:.0f} MB "
            f"(limit {TASK_RSS_LIMIT_MB}); start-up {result['import_seconds']:.2f}s + airflow.sdk "
            f"{result['airflow_import_seconds']:.2f}s, {result['rss_after_imports_mb']:.0f} MB after imports; "
            f"imports GX: {'yes' if result['great_expectations'] else 'no'}, "
            f"matplotlib: {'yes' if result['matplotlib'] else 'no'}, "
            f"pandas: {'yes' if result.get('pandas') else 'no'}",
            flush=True,
        )
    shutil.rmtree(workdir / "probe", ignore_errors=True)
    light = _verdicts(ratio, peaks, heavy)
    figures = {
        "pages": minimum["dag"],
        "requests": statistics.median(r["requests"] for r in dag_runs),
        "wall_s": dag_median,
        "peak_rss_mb": max(peaks.values()),
    }
    if seed != TARGET_SEED:
        print(f"[export] targets apply at the '{TARGET_SEED}' seed (fixed costs dominate smaller ones)")
        return light, figures
    ok = ratio <= EXPORT_TIME_FACTOR and ok_rss and light
    print(f"[export] -> {'OK' if ok else 'MISSED'}")
    return ok, figures


GATE_TASKS = ("validate_export",)  # the only task allowed to load Great Expectations


def _verdicts(ratio: float, peaks: dict[str, float], heavy: dict[str, list[str]]) -> bool:
    """PASS/FAIL per goal (the time and memory goals hold at the ``large`` seed); returns whether
    the tasks other than gates stayed clear of GX and matplotlib (a goal at every seed)."""
    print(
        f"[export] goal wall DAG <= {EXPORT_TIME_FACTOR}x bare: {'PASS' if ratio <= EXPORT_TIME_FACTOR else 'FAIL'} "
        f"({ratio:.2f}x)"
    )
    for task, peak in peaks.items():
        verdict = "PASS" if peak <= TASK_RSS_LIMIT_MB else "FAIL"
        print(f"[export] goal {task} peak RSS <= {TASK_RSS_LIMIT_MB} MB: {verdict} ({peak:.0f} MB)")
    light = True
    for task, loaded in heavy.items():
        allowed = {"great_expectations"} if task in GATE_TASKS else set()
        extra = [name for name in loaded if name not in allowed]
        light &= not extra
        print(
            f"[export] goal {task} imports no {'matplotlib' if task in GATE_TASKS else 'GX / matplotlib'}: "
            f"{'FAIL (' + ', '.join(extra) + ')' if extra else 'PASS'}"
        )
    return light


def scenario_sync(server, workdir: Path, runs: int, seed: str) -> tuple[bool, dict]:
    """The first load's read-back and no-op syncs (see ``bench.scale_sync``)."""
    from bench.scale_sync import scenario_sync as run

    return run(server, workdir, runs, seed)


SCENARIOS = {"export": scenario_export, "sync": scenario_sync}


def _kept_port(workdir: Path) -> int | None:
    """The port of the kept work folder's sandbox: the sync state is keyed by the portal's URL."""
    kept = workdir / PORT_FILE
    return int(kept.read_text()) if kept.exists() else None


@contextlib.contextmanager
def _workdir(kept: str | None):
    """The given folder (kept for the next run), or a temporary one."""
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        yield Path(kept).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="absorb-bench-scale-") as tmp:
        yield Path(tmp)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("seed", nargs="?", default="medium", choices=["small", "medium", "large"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="sandbox server processes")
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument(
        "--db", help="sandbox database to reuse (seeded when empty; saves the seeding between runs)"
    )
    parser.add_argument(
        "--workdir",
        help="work folder to keep and reuse (e.g. the sync's first load, with --db) instead of a temp one",
    )
    parser.add_argument(
        "--growth-from",
        choices=["small", "medium"],
        help="run the scenarios at this smaller seed first and print how requests, memory and wall "
        "time grow to SEED compared with the pages read",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        runner = {"bare": _child_bare, "dag": _child_dag, "task": _child_task}[kind]
        result = runner(*rest)
        print(json.dumps(result))
        return 0
    from bench.scale_growth import print_growth

    smaller = None
    if args.growth_from:
        with _workdir(None) as workdir:
            smaller = _run_seed(args.growth_from, args, workdir, db=None, keep_port=False)
    with _workdir(args.workdir) as workdir:
        results = _run_seed(args.seed, args, workdir, db=args.db, keep_port=bool(args.workdir))
    verdicts = {name: ok for name, (ok, _) in results.items()}
    if smaller is not None:
        grown = {name: figures for name, (_, figures) in results.items()}
        verdicts["growth"] = print_growth(
            args.growth_from, {name: figures for name, (_, figures) in smaller.items()}, args.seed, grown
        )
    print(f"\nbench_scale: {verdicts}")
    return 0 if all(verdicts.values()) else 1


def _run_seed(seed: str, args: argparse.Namespace, workdir: Path, *, db: str | None, keep_port: bool) -> dict:
    """Every selected scenario at ``seed`` against one sandbox: name -> (goals met, figures)."""
    from absorb_sandbox.testing import SandboxServer

    results = {}
    started = time.monotonic()
    with SandboxServer(
        db_path=db or workdir / f"{seed}.db",
        seed=seed,
        workers=args.workers,
        port=_kept_port(workdir) if keep_port else None,
    ) as server:
        if keep_port:
            (workdir / PORT_FILE).write_text(str(server.port or server.base_url.rsplit(":", 1)[1]))
        print(
            f"sandbox '{seed}' ({args.workers} worker(s)) ready in {time.monotonic() - started:.0f}s",
            flush=True,
        )
        for name in args.only.split(","):
            results[name] = SCENARIOS[name](server, workdir, args.runs, seed)
    return results


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
