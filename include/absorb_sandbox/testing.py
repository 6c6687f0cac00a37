"""Test harness: runs ``absorb-sandbox serve`` as a subprocess on a free port.

with SandboxServer(db_path=tmp / "absorb.db", seed="small") as server:
    requests.get(f"{server.base_url}/users", headers=...)

``workers=N`` serves from N processes (needs a db file); ``paging="offset"`` turns keyset paging
and the cached counts off (see ``absorb_sandbox.cli``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_API_KEY = "0b5f4a8e-2c3d-4e5f-8a9b-1c2d3e4f5a6b"
DEFAULT_USERNAME = "airflow.integration"
DEFAULT_PASSWORD = "sandbox-password"
START_TIMEOUT = 180.0


class SandboxServer:
    """A sandbox server subprocess; ``start()`` returns once it answers."""

    def __init__(
        self,
        db_path=":memory:",
        seed="small",
        *,
        rate_limit=None,
        faults=None,
        token_ttl=None,
        api_key=DEFAULT_API_KEY,
        username=DEFAULT_USERNAME,
        password=DEFAULT_PASSWORD,
        host="127.0.0.1",
        port=None,
        workers=1,
        paging=None,
    ):
        self.db_path = str(db_path)
        self.seed = seed
        self.rate_limit = rate_limit
        self.faults = faults
        self.token_ttl = token_ttl
        self.api_key = api_key
        self.username = username
        self.password = password
        self.host = host
        self.port = port
        self.workers = workers
        self.paging = paging
        self.base_url = ""
        self._process: subprocess.Popen | None = None
        self._stderr_file = None

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "absorb_sandbox.cli",
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port or 0),
            "--db",
            self.db_path,
            "--seed",
            self.seed,
            "--api-key",
            self.api_key,
            "--username",
            self.username,
            "--password",
            self.password,
        ]
        if self.rate_limit is not None:
            cmd += ["--rate-limit", str(self.rate_limit)]
        if self.faults is not None:
            cmd += ["--faults", self.faults if isinstance(self.faults, str) else json.dumps(self.faults)]
        if self.token_ttl is not None:
            cmd += ["--token-ttl", str(self.token_ttl)]
        if self.workers != 1:
            cmd += ["--workers", str(self.workers)]
        if self.paging is not None:
            cmd += ["--paging", self.paging]
        return cmd

    def start(self) -> SandboxServer:
        if self._process is not None:
            return self
        self._stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self._process = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        banner = self._read_banner()
        self.base_url = banner["base_url"]
        self.port = int(self.base_url.rsplit(":", 1)[1])
        self._wait_until_ready()
        threading.Thread(target=self._drain_stdout, daemon=True).start()
        return self

    def _read_banner(self) -> dict:
        result: dict = {}

        def read():
            line = self._process.stdout.readline()
            if line:
                result.update(json.loads(line))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(START_TIMEOUT)
        if not result:
            self._fail("the sandbox did not start")
        return result

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._fail("the sandbox exited during start-up")
            try:
                with urllib.request.urlopen(f"{self.base_url}/_sandbox/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        self._fail("the sandbox did not answer /_sandbox/health")

    def _drain_stdout(self) -> None:
        process = self._process
        if process is not None and process.stdout is not None:
            for _ in process.stdout:
                pass

    def _stderr(self) -> str:
        if self._stderr_file is None:
            return ""
        self._stderr_file.seek(0)
        return self._stderr_file.read().decode(errors="replace")[-4000:]

    def _fail(self, message: str):
        stderr = self._stderr()
        self.stop()
        raise RuntimeError(f"{message}: {' '.join(self.command()[2:5])}\n--- stderr ---\n{stderr}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stdout:
            process.stdout.close()
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- admin surface ---------------------------------------------------------------------------------

    def _admin(self, method: str, path: str, payload=None) -> dict:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.base_url}/_sandbox/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} /_sandbox/{path} failed: {exc.code} {exc.read()[:500]!r}") from None

    def stats(self) -> dict:
        return self._admin("GET", "stats")

    def reset_stats(self) -> dict:
        return self._admin("POST", "stats/reset")

    def reset(self) -> None:
        self._admin("POST", "reset")

    def set_faults(self, spec) -> None:
        self._admin("POST", "faults", spec if not isinstance(spec, str) else {"spec": spec})

    def progress(self, fraction=0.2, seed=0) -> dict:
        return self._admin("POST", "progress", {"fraction": fraction, "seed": seed})

    def airflow_connection_json(self, conn_id="absorb_default") -> str:
        return json.dumps(
            {
                "conn_type": "absorb",
                "host": self.base_url,
                "login": self.username,
                "password": self.password,
                "extra": {"private_key": self.api_key},
            }
        )

    def headers(self, token: str | None = None) -> dict[str, str]:
        """Request headers for a direct call (tests): api key, version and the bearer token."""
        headers = {"x-api-key": self.api_key, "x-api-version": "2"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    @property
    def db_file(self) -> Path | None:
        return None if self.db_path == ":memory:" else Path(self.db_path)
