"""A small client for Airflow's public REST API (``/api/v2``), the only way the e2e tests act."""

from __future__ import annotations

import time
from typing import Any

import requests

TERMINAL_RUN_STATES = {"success", "failed"}


class AirflowApiError(AssertionError):
    """A REST call answered with an unexpected status; the message carries the body."""


class AirflowApi:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        token = self._call("GET", "/auth/token", expect=(200, 201))["access_token"]
        self.session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, *, expect=(200,), **kwargs) -> Any:
        response = self.session.request(method, f"{self.base_url}{path}", timeout=30, **kwargs)
        if response.status_code not in expect:
            raise AirflowApiError(f"{method} {path} -> {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    # ---- DAGs ------------------------------------------------------------------------------------
    def dag_ids(self) -> set[str]:
        return {d["dag_id"] for d in self._call("GET", "/api/v2/dags", params={"limit": 100})["dags"]}

    def dag(self, dag_id: str) -> dict:
        return self._call("GET", f"/api/v2/dags/{dag_id}")

    def dag_details(self, dag_id: str) -> dict:
        return self._call("GET", f"/api/v2/dags/{dag_id}/details")

    def import_errors(self) -> list[dict]:
        return self._call("GET", "/api/v2/importErrors")["import_errors"]

    def wait_for_dags(self, dag_ids: set[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            missing = dag_ids - self.dag_ids()
            if not missing:
                return
            time.sleep(1)
        raise AssertionError(f"DAGs never appeared: {sorted(missing)}; import errors: {self.import_errors()}")

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._call("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused})

    # ---- runs ------------------------------------------------------------------------------------
    def trigger(self, dag_id: str, conf: dict | None = None, run_id: str | None = None) -> str:
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def runs(self, dag_id: str, **params) -> list[dict]:
        return self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100, **params})[
            "dag_runs"
        ]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(dag_id, run_id)
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            time.sleep(1)
        states = self.task_states(dag_id, run_id)
        raise AssertionError(f"{dag_id} {run_id} still {run['state']} after {timeout:.0f}s; tasks: {states}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return self._call("GET", path, params={"limit": 200})["task_instances"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """task_id -> state; mapped tasks appear as ``task_id[i]``."""
        states = {}
        for ti in self.task_instances(dag_id, run_id):
            key = ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]"
            states[key] = ti["state"]
        return states

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self._call("GET", path, params={"map_index": map_index, "deserialize": True})["value"]

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> str:
        """The task's log as text lines (the API answers structured JSON events)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        body = self._call("GET", path, params={"map_index": map_index, "full_content": True})
        events = body.get("content") or []
        if isinstance(events, str):
            return events
        lines = []
        for event in events:
            if isinstance(event, dict):
                text = event.get("event", "")
                if event.get("error_detail"):
                    text += f" {event['error_detail']}"
                lines.append(f"[{event.get('level', '')}] {text}")
            else:
                lines.append(str(event))
        return "\n".join(lines)

    def explain(self, dag_id: str, run_id: str, lines: int = 25) -> str:
        """Task states plus the log tail of each failed task: the message of a failing assertion."""
        parts = [f"{dag_id} {run_id}: {self.task_states(dag_id, run_id)}"]
        for ti in self.task_instances(dag_id, run_id):
            if ti["state"] == "failed":
                log = self.task_log(dag_id, run_id, ti["task_id"], max(ti["try_number"], 1), ti["map_index"])
                parts.append(f"--- {ti['task_id']} log tail:\n" + "\n".join(log.splitlines()[-lines:]))
        return "\n".join(parts)

    def trigger_and_wait(
        self, dag_id: str, conf: dict | None = None, timeout: float = 180
    ) -> tuple[dict, dict]:
        """Triggers, waits; returns (run, task states)."""
        run_id = self.trigger(dag_id, conf)
        run = self.wait_for_run(dag_id, run_id, timeout)
        return run, self.task_states(dag_id, run_id)

    # ---- human-in-the-loop (held plans) ----------------------------------------------------------
    def hitl_details(self, dag_id: str, run_id: str) -> list[dict]:
        """The run's approval requests, pending and answered (``GET .../hitlDetails``)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/hitlDetails"
        return self._call("GET", path)["hitl_details"]

    def wait_for_hitl(self, dag_id: str, run_id: str, task_id: str, timeout: float = 300) -> dict:
        """The pending request of ``task_id`` once the task awaits input; fails if the run ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for detail in self.hitl_details(dag_id, run_id):
                ti = detail["task_instance"]
                if (
                    ti["task_id"] == task_id
                    and not detail["response_received"]
                    and ti["state"] == "awaiting_input"
                ):
                    return detail
            if self.run(dag_id, run_id)["state"] in TERMINAL_RUN_STATES:
                raise AssertionError(
                    f"{dag_id} {run_id} ended without waiting at {task_id}: {self.explain(dag_id, run_id)}"
                )
            time.sleep(1)
        raise AssertionError(
            f"{task_id} of {dag_id} {run_id} never waited for input: {self.task_states(dag_id, run_id)}"
        )

    def answer_hitl(
        self, dag_id: str, run_id: str, task_id: str, option: str, params_input: dict | None = None
    ) -> dict:
        """``PATCH .../taskInstances/{task_id}/-1/hitlDetails`` with the chosen option."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails"
        body = {"chosen_options": [option], "params_input": params_input or {}}
        return self._call("PATCH", path, json=body)

    # ---- pools / connections ---------------------------------------------------------------------
    def pool(self, name: str) -> dict:
        return self._call("GET", f"/api/v2/pools/{name}")
