"""Shared test set-up: a private Airflow home (SQLite) and sandbox servers on ephemeral ports.

The environment is set before anything imports Airflow, so every test in the session talks to
the same throw-away metadata database and never to a developer's own Airflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from base64 import urlsafe_b64encode
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="absorb-test-airflow-"))

os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
# One key for this process and every Airflow subprocess it starts, whatever order they start in,
# so a connection one of them encrypts the others can read.
os.environ["AIRFLOW__CORE__FERNET_KEY"] = urlsafe_b64encode(os.urandom(32)).decode()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """An initialised Airflow metadata database (``airflow db migrate``), once per session."""
    marker = _AIRFLOW_HOME / ".migrated"
    if not marker.exists():
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            capture_output=True,
            env=os.environ.copy(),
        )
        marker.touch()
    return _AIRFLOW_HOME


def _start_sandbox(db_path: Path, **options):
    from absorb_sandbox.testing import SandboxServer

    return SandboxServer(db_path=db_path, **options).start()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory) -> Iterator:
    """A small seeded sandbox shared by the whole session: read-mostly tests use it."""
    server = _start_sandbox(tmp_path_factory.mktemp("sandbox") / "absorb.db", seed="small")
    yield server
    server.stop()


@pytest.fixture
def fresh_sandbox(tmp_path) -> Iterator:
    """A sandbox of its own for a test that writes or injects faults."""
    server = _start_sandbox(tmp_path / "absorb.db", seed="small")
    yield server
    server.stop()


@pytest.fixture
def sandbox_factory(tmp_path) -> Iterator:
    """Starts sandboxes with custom options (rate limit, faults, token TTL, seed); stops them all."""
    started = []

    def start(name: str = "absorb", **options):
        server = _start_sandbox(tmp_path / f"{name}.db", **options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def absorb_connection(monkeypatch, fresh_sandbox):
    """``absorb_default`` pointing at a fresh sandbox, through the env-var connection backend."""
    monkeypatch.setenv("AIRFLOW_CONN_ABSORB_DEFAULT", fresh_sandbox.airflow_connection_json())
    return fresh_sandbox


def connection_json(server, **extra) -> str:
    """The Airflow connection JSON for ``server`` with optional extra fields."""
    data = json.loads(server.airflow_connection_json())
    data["extra"].update(extra)
    return json.dumps(data)
