"""`make airflow` (scripts/airflow_standalone.sh) as a user runs it: the UI comes up with the sandbox,
the connection and the pool, on 127.0.0.1 only, with "Test connection" working, prints its URL and no
secret, and Ctrl-C leaves nothing running."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from .harness import ROOT, free_port, wait_until

pytestmark = pytest.mark.e2e
SCRIPT = ROOT / "scripts" / "airflow_standalone.sh"
PROJECT_DAGS = {"absorb_hr_enrollment_sync", "absorb_bulk_unenrollment", "absorb_completion_export"}


def _ctrl_c_able() -> None:
    """A session of its own (so the test can signal the whole group) with SIGINT as in a terminal."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(3)
        return sock.connect_ex((host, port)) == 0


def _outward_address() -> str | None:
    """This machine's address on its network (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
        except OSError:
            return None
        address = sock.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_make_airflow_serves_the_ui_with_sandbox_connection_and_pool(tmp_path: Path):
    from absorb_sandbox.testing import DEFAULT_API_KEY, DEFAULT_PASSWORD

    api_port, sandbox_port = free_port(), free_port()
    worker_log_port, trigger_log_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ABSORB_"))}
    env |= {
        "AIRFLOW_PORT": str(api_port),
        "SANDBOX_PORT": str(sandbox_port),
        "VAR_DIR": str(tmp_path / "var"),
        # settable log-server ports (defaults 8793/8794, taken when another Airflow runs here)
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_port),
    }
    output = tmp_path / "make-airflow.log"
    with output.open("w") as log:
        process = subprocess.Popen(
            ["bash", str(SCRIPT)],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_ctrl_c_able,
        )
    base_url = f"http://127.0.0.1:{api_port}"
    try:
        wait_until(
            lambda: process.poll() is None and f"http://localhost:{api_port}" in output.read_text(),
            120,
            "the URL",
        )
        wait_until(lambda: requests.get(f"{base_url}/api/v2/version", timeout=5).ok, 180, "the api-server")
        session = requests.Session()
        token = session.get(f"{base_url}/auth/token", timeout=10).json()["access_token"]  # no login needed
        session.headers["Authorization"] = f"Bearer {token}"

        connection = session.get(f"{base_url}/api/v2/connections/absorb_default", timeout=10).json()
        assert connection["conn_type"] == "absorb"
        assert connection["host"] == f"http://127.0.0.1:{sandbox_port}"
        assert session.get(f"{base_url}/api/v2/pools/absorb_api", timeout=10).json()["slots"] >= 1
        assert requests.get(f"{connection['host']}/_sandbox/stats", timeout=5).ok

        def listed() -> bool:
            dags = session.get(f"{base_url}/api/v2/dags", timeout=10).json()["dags"]
            return {d["dag_id"] for d in dags} >= PROJECT_DAGS

        wait_until(listed, 120, "the project DAGs in the UI")

        wait_until(lambda: _port_open(worker_log_port), 60, "the task log server on its port")
        # login is off, so the UI listens on this machine only
        outward = _outward_address()
        if outward:
            assert not _port_open(api_port, outward), f"the UI answers on {outward}:{api_port}"
        # "Test connection" is on (local, single user) and the hook's test reaches the sandbox
        body = {k: connection.get(k) for k in ("connection_id", "conn_type", "host", "login", "password")}
        body |= {"extra": connection.get("extra"), "port": connection.get("port")}
        tested = session.post(f"{base_url}/api/v2/connections/test", json=body, timeout=60)
        assert tested.status_code == 200, tested.text
        assert tested.json()["status"] is True, tested.json()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        try:
            process.wait(timeout=60)
        finally:
            deadline = time.monotonic() + 30
            while _group_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.5)
            leftover = _group_alive(process.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    text = output.read_text()
    assert not leftover, f"processes outlived Ctrl-C:\n{text[-3000:]}"
    assert not _port_open(api_port) and not _port_open(sandbox_port) and not _port_open(worker_log_port)
    assert DEFAULT_PASSWORD not in text and DEFAULT_API_KEY not in text
    assert (tmp_path / "var" / "airflow" / "airflow.db").exists() and (
        tmp_path / "var" / "sandbox.db"
    ).exists()
