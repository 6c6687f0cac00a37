"""The cluster topology of docker-compose.yaml, started without Docker as subprocesses of the venv.

api-server, scheduler, dag-processor, triggerer and two Celery workers run on a fresh PostgreSQL
database and a Redis broker, with a temporary AIRFLOW_HOME. Every process is started in its own
process group and tagged with a session marker in its environment, so ``stop()`` can end exactly
what it started and prove that nothing was left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from base64 import urlsafe_b64encode
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
E2E_DAGS = Path(__file__).resolve().parent / "dags"
SUPPORT_DIR = Path(__file__).resolve().parent / "support"
PG_ADMIN_DSN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
SESSION_MARKER = "ABSORB_E2E_SESSION"
WORKER_NAMES = ("e2e-worker-1", "e2e-worker-2")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComponentExited(RuntimeError):
    """An Airflow component died; the message carries the tail of its log."""


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.5):
    """Polls ``predicate`` until it returns a truthy value; raises TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except ComponentExited:
            raise
        except Exception as exc:  # the component may not be up yet
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})")


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"<{path.name}: no log>"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


@dataclass
class Component:
    name: str
    argv: list[str]
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None


class AirflowCluster:
    """Starts and stops the whole topology; ``base_url`` is the api-server's URL."""

    def __init__(
        self,
        workdir: Path,
        sandbox_connection_json: str,
        *,
        dags_dirs: Iterable[Path],
        extra_env: dict[str, str] | None = None,
    ):
        self.workdir = workdir
        self.home = workdir / "airflow_home"
        self.logs = workdir / "component-logs"
        self.dags_folder = workdir / "dags"
        self.session_id = secrets.token_hex(8)
        self.db_name = f"absorb_e2e_{self.session_id}"
        self.redis_db = 8 + os.getpid() % 8
        self.api_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.sandbox_connection_json = sandbox_connection_json
        self.dags_dirs = list(dags_dirs)
        self.extra_env = dict(extra_env or {})
        self.components: list[Component] = []
        self._db_created = False
        # one set of secrets and log-server ports shared by every component of this cluster
        self._fernet_key = urlsafe_b64encode(secrets.token_bytes(32)).decode()
        self._secret_key = secrets.token_hex(16)
        self._jwt_secret = secrets.token_hex(32)
        self._trigger_log_port, self._worker_log_port = free_port(), free_port()

    # ---- environment -------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        db_url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.db_name}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            {
                SESSION_MARKER: self.session_id,
                "AIRFLOW_HOME": str(self.home),
                "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONPATH": str(SUPPORT_DIR),
                "GX_ANALYTICS_ENABLED": "false",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__FERNET_KEY": self._fernet_key,
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "1",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
                "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://postgres@127.0.0.1:5432/{self.db_name}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                "AIRFLOW__API__SECRET_KEY": self._secret_key,
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__EXPOSE_CONFIG": "True",
                "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret,
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
                # Unpausing the @daily project DAGs would start a run with default Params against the
                # sandbox at once; tests trigger runs themselves. The scheduled-run test turns this on.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "600",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._trigger_log_port),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._worker_log_port),
                "AIRFLOW_CONN_ABSORB_DEFAULT": self.sandbox_connection_json,
                # the export's SQL target: a table in this session's own database
                "AIRFLOW_CONN_E2E_WAREHOUSE": json.dumps(
                    {
                        "conn_type": "postgres",
                        "host": "127.0.0.1",
                        "port": 5432,
                        "login": "postgres",
                        "schema": self.db_name,
                    }
                ),
            }
        )
        env.update(self.extra_env)
        return env

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> AirflowCluster:
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self._link_dags()
        self._create_database()
        self._flush_redis()
        self._run_once("db-migrate", ["airflow", "db", "migrate"], timeout=240)
        self._run_once(
            "bootstrap",
            [str(VENV_BIN / "python"), str(ROOT / "scripts" / "bootstrap_airflow.py"), "--pool-only"],
            timeout=120,
        )
        airflow = str(VENV_BIN / "airflow")
        self._spawn(
            "api-server", [airflow, "api-server", "--port", str(self.api_port), "--host", "127.0.0.1"]
        )
        self._spawn("scheduler", [airflow, "scheduler"])
        self._spawn("dag-processor", [airflow, "dag-processor"])
        self._spawn("triggerer", [airflow, "triggerer"])
        for name in WORKER_NAMES:
            self._spawn(
                name,
                [airflow, "celery", "worker", "--celery-hostname", f"{name}@%h", "--skip-serve-logs"],
                extra_env={
                    "E2E_WORKER_HOSTNAME": name,
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "e2e_hostname.worker_hostname",
                },
            )
        try:
            wait_until(lambda: self._alive() and self._api_healthy(), 120, "the api-server health endpoint")
            for name in WORKER_NAMES:
                wait_until(
                    lambda n=name: self._alive() and "ready." in self.log(n), 120, f"celery worker {name}"
                )
        except Exception:
            print(self.diagnostics())
            raise
        return self

    def restart(self, name: str, extra_env: dict[str, str] | None = None) -> None:
        """Restarts one component; ``extra_env`` is laid over the settings of its previous start."""
        component = next(c for c in self.components if c.name == name)
        self._terminate_all([component])
        self.components.remove(component)
        log_path = component.log_path
        log_path.rename(log_path.with_suffix(f".{int(time.time())}.log"))
        self._spawn(name, component.argv, component.extra_env | (extra_env or {}))

    def stop(self) -> list[str]:
        """Stops every component by process group; returns descriptions of stray processes found."""
        self._terminate_all(self.components)
        strays = self.stray_processes()
        for pid, _ in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._drop_database()
        self._flush_redis()
        return [f"{pid}: {cmd}" for pid, cmd in strays]

    def stray_processes(self) -> list[tuple[int, str]]:
        """Live processes (other than this one) whose environment carries this session's marker."""
        marker = f"{SESSION_MARKER}={self.session_id}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    stat = (entry / "stat").read_text()
                    if ") Z " in stat:  # a zombie is already dead; its parent reaps it
                        continue
                    cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    found.append((int(entry.name), cmd.strip()))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        return found

    # ---- diagnostics -------------------------------------------------------------------------
    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def diagnostics(self, lines: int = 40) -> str:
        parts = []
        for component in self.components:
            state = "running" if component.process and component.process.poll() is None else "exited"
            parts.append(
                f"===== {component.name} ({state}) — {component.log_path}\n{tail(component.log_path, lines)}"
            )
        return "\n".join(parts)

    # ---- internals ---------------------------------------------------------------------------
    def _link_dags(self) -> None:
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        for source_dir in self.dags_dirs:
            for dag_file in sorted(source_dir.glob("*.py")):
                if dag_file.name.startswith("_"):
                    continue
                link = self.dags_folder / dag_file.name
                if not link.exists():
                    link.symlink_to(dag_file)

    def _create_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(**PG_ADMIN_DSN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{self.db_name}"')
        conn.close()
        self._db_created = True

    def _drop_database(self) -> None:
        if not self._db_created:
            return
        import psycopg2

        conn = psycopg2.connect(**PG_ADMIN_DSN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        conn.close()
        self._db_created = False

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of ``sql`` run against this session's database (the metadata db and the export table)."""
        import psycopg2

        conn = psycopg2.connect(**(PG_ADMIN_DSN | {"dbname": self.db_name}))
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    def database_exists(self) -> bool:
        import psycopg2

        conn = psycopg2.connect(**PG_ADMIN_DSN)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.db_name,))
                return cur.fetchone() is not None
        finally:
            conn.close()

    def _flush_redis(self) -> None:
        import redis

        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=self.redis_db).flushdb()

    def _run_once(self, name: str, argv: list[str], timeout: float) -> None:
        log_path = self.logs / f"{name}.log"
        with log_path.open("w") as log:
            result = subprocess.run(
                argv, env=self.env(), stdout=log, stderr=subprocess.STDOUT, timeout=timeout
            )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])} failed ({result.returncode}):\n{tail(log_path)}")

    def _spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        log_path = self.logs / f"{name}.log"
        env = self.env() | (extra_env or {})
        log = log_path.open("w")
        process = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True
        )
        log.close()
        self.components.append(Component(name, argv, log_path, extra_env or {}, process))

    @staticmethod
    def _terminate_all(components: list[Component], grace: float = 20) -> None:
        """SIGTERM to every process group at once, SIGKILL to whatever is left after ``grace``."""
        groups = [c.process.pid for c in components if c.process is not None]
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_group_alive(g) for g in groups):
            for component in components:
                component.process.poll()  # reaps leaders as they exit
            time.sleep(0.2)
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        for component in components:
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(timeout=5)

    def _alive(self) -> bool:
        """True while every component runs; raises naming the first one that exited."""
        for component in self.components:
            if component.process and component.process.poll() is not None:
                raise ComponentExited(
                    f"{component.name} exited with {component.process.returncode}:\n{tail(component.log_path)}"
                )
        return True

    def _api_healthy(self) -> bool:
        response = requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
        return response.status_code == 200
