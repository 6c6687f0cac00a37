"""The e2e session: one sandbox and one Airflow cluster (CeleryExecutor, two workers) for all tests.

Tests act only through Airflow's REST API and check the sandbox's state and request counters.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .airflow_api import AirflowApi
from .harness import E2E_DAGS, ROOT, AirflowCluster

ARTIFACTS = ROOT / "var" / "artifacts"


def _services_available() -> str | None:
    """Why the local PostgreSQL/Redis the harness needs are unusable, or None when they are fine."""
    import psycopg2
    import redis

    try:
        psycopg2.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3
        ).close()
    except psycopg2.Error as exc:
        return f"PostgreSQL at 127.0.0.1:5432 (user postgres) unavailable: {exc}"
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        return f"Redis at 127.0.0.1:6379 unavailable: {exc}"
    return None


@pytest.fixture(scope="session")
def e2e_workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def e2e_sandbox(e2e_workdir) -> Iterator:
    """The sandbox the cluster's ``absorb_default`` connection points at (small seed, own db)."""
    from absorb_sandbox.testing import SandboxServer

    server = SandboxServer(db_path=e2e_workdir / "sandbox.db", seed="small").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def hr_feed(e2e_workdir, e2e_sandbox):
    """``hr_feed(name, changes=0, seed=0) -> (path, summary)``: a feed of the e2e sandbox's own people,
    with ``changes`` hires/movers/leavers mixed in (absorb_sandbox.hr_feed)."""
    from absorb_sandbox.hr_feed import export_hr_feed

    def make(name: str, changes: int = 0, seed: int = 0) -> tuple[Path, dict]:
        target = e2e_workdir / "feeds" / name
        summary = export_hr_feed(e2e_workdir / "sandbox.db", target, changes=changes, seed=seed)
        return target, summary

    return make


@pytest.fixture(scope="session")
def cluster(e2e_workdir, e2e_sandbox) -> Iterator[AirflowCluster]:
    problem = _services_available()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    cluster = AirflowCluster(
        e2e_workdir,
        e2e_sandbox.airflow_connection_json(),
        dags_dirs=[ROOT / "dags", E2E_DAGS],
        extra_env={
            "ABSORB_OUTPUT_ROOT": str(e2e_workdir / "output"),
            "ABSORB_STATE_ROOT": str(e2e_workdir / "state"),
        },
    )
    try:
        cluster.start()
        yield cluster
    finally:
        failed = getattr(cluster, "_session_failed", False)
        strays = cluster.stop()
        if failed:
            print(cluster.diagnostics())
        _keep_logs(cluster)
        assert not strays, f"processes outlived the cluster (killed now): {strays}"
        assert not cluster.database_exists(), f"database {cluster.db_name} was not dropped"


def _keep_logs(cluster: AirflowCluster) -> None:
    """Component logs survive the session under var/artifacts/e2e-logs for post-mortems."""
    target = ARTIFACTS / "e2e-logs"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(cluster.logs, target, dirs_exist_ok=True)
    task_logs = cluster.home / "logs"
    if task_logs.exists():
        shutil.copytree(task_logs, target / "tasks", dirs_exist_ok=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failing e2e test, print each component's log tail (the cluster is shared)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "cluster" in item.fixturenames:
        cluster = item.funcargs.get("cluster") or item._request.getfixturevalue("cluster")
        cluster._session_failed = True
        report.sections.append(("Airflow component logs (tails)", cluster.diagnostics(30)))


@pytest.fixture(scope="session")
def airflow_api(cluster) -> AirflowApi:
    return AirflowApi(cluster.base_url)
