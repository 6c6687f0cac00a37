"""scripts/bootstrap_airflow.py against a real (SQLite) Airflow metadata database."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .harness import ROOT

SCRIPT = ROOT / "scripts" / "bootstrap_airflow.py"
SECRET_PASSWORD = "pa55-w0rd-never-printed"
SECRET_KEY = "11111111-2222-3333-4444-555555555555"


def _bootstrap(env_overrides: dict[str, str], *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ABSORB_", "AIRFLOW_CONN_"))}
    env.update(env_overrides)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert SECRET_PASSWORD not in output and SECRET_KEY not in output
    return result.stdout


def _connection(conn_id: str):
    from airflow.models import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        conn = session.query(Connection).filter(Connection.conn_id == conn_id).one()
        return conn.conn_type, conn.host, conn.login, conn.password, json.loads(conn.extra)


def _pool_slots(name: str) -> int:
    from airflow.models import Pool

    return Pool.get_pool(name).slots


@pytest.fixture
def portal_env() -> dict[str, str]:
    return {
        "ABSORB_CONN_ID": "absorb_bootstrap_test",
        "ABSORB_BASE_URL": "https://rest.sandbox.myabsorb.eu/",
        "ABSORB_USERNAME": "api.admin",
        "ABSORB_PASSWORD": SECRET_PASSWORD,
        "ABSORB_PRIVATE_KEY": SECRET_KEY,
        "ABSORB_POOL_SLOTS": "3",
    }


def test_creates_then_leaves_unchanged_then_updates(airflow_db, portal_env):
    first = _bootstrap(portal_env)
    assert "connection absorb_bootstrap_test: created (rest.sandbox.myabsorb.eu)" in first
    assert _connection("absorb_bootstrap_test") == (
        "absorb",
        "https://rest.sandbox.myabsorb.eu",
        "api.admin",
        SECRET_PASSWORD,
        {"private_key": SECRET_KEY},
    )
    assert _pool_slots("absorb_api") == 3

    second = _bootstrap(portal_env)
    assert "connection absorb_bootstrap_test: unchanged" in second
    assert "pool absorb_api: unchanged (3 slots)" in second

    third = _bootstrap(portal_env | {"ABSORB_BASE_URL": "", "ABSORB_REGION": "CA", "ABSORB_POOL_SLOTS": "5"})
    assert "connection absorb_bootstrap_test: updated (region CA)" in third
    _, host, _, _, extra = _connection("absorb_bootstrap_test")
    assert host is None and extra == {"private_key": SECRET_KEY, "region": "CA"}
    assert _pool_slots("absorb_api") == 5


def test_defaults_to_the_local_sandbox(airflow_db):
    output = _bootstrap({"ABSORB_CONN_ID": "absorb_bootstrap_sandbox"})
    assert "(127.0.0.1:8765)" in output
    _, host, login, _, extra = _connection("absorb_bootstrap_sandbox")
    assert host == "http://127.0.0.1:8765" and login == "airflow.integration"
    assert set(extra) == {"private_key"}


def test_env_connection_or_pool_only_skips_the_connection(airflow_db, portal_env):
    env = portal_env | {
        "ABSORB_CONN_ID": "absorb_env_only",
        "AIRFLOW_CONN_ABSORB_ENV_ONLY": '{"conn_type": "absorb"}',
    }
    assert "connection absorb_env_only: skipped (AIRFLOW_CONN_ABSORB_ENV_ONLY is set)" in _bootstrap(env)
    assert "skipped (--pool-only)" in _bootstrap(
        portal_env | {"ABSORB_CONN_ID": "absorb_pool_only"}, "--pool-only"
    )
    from airflow.models import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        found = (
            session.query(Connection)
            .filter(Connection.conn_id.in_(["absorb_env_only", "absorb_pool_only"]))
            .count()
        )
    assert found == 0


def test_rejects_a_base_url_without_scheme(airflow_db):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSORB_")}
    env["ABSORB_BASE_URL"] = "rest.myabsorb.com"
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "ABSORB_BASE_URL must start with http:// or https://" in result.stderr
