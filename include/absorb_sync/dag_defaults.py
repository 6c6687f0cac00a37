"""What the three DAGs share: task defaults, the API pool and the connection/output Params.

DAG files import this at parse time, so it stays import-light (``airflow.sdk`` only).
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

from airflow.sdk import Param

from absorb_sync.approval import RunMailNotifier

DEFAULT_ARGS = {
    "owner": "hr-integration",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    # a task that fails for good mails the run's notify_emails (off when none are configured)
    "on_failure_callback": [RunMailNotifier("failed")],
}
API_TASK = {"pool": "absorb_api"}
GATE_TASK = {"retries": 0}  # a gate's verdict does not change on retry
MAPPING_PRESETS = ["canonical", "workday", "bamboohr", "adp"]


def effective_mapping(params: dict) -> Any:
    """``column_mapping`` (custom: a YAML path, a preset name or an object) wins; else the preset."""
    custom = params.get("column_mapping")
    if custom not in (None, "", {}):
        return custom
    preset = params.get("mapping_preset") or "canonical"
    if preset == "custom":
        from absorb_sync.jobs.runtime import InputError

        raise InputError(
            "mapping_preset is 'custom' but column_mapping is empty: give a YAML path or an object"
        )
    return preset


def people_list(value: Any) -> list:
    """The ``people`` Param: a JSON list, or text with one person per line (commas also separate).

    A line may be a JSON object (``{"person": "E000123", "courses": [...]}``); blank lines and
    lines starting with ``#`` are ignored."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    text = str(value).strip()
    if text.startswith("["):
        return json.loads(text)
    people: list = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            people.append(json.loads(line))
            continue
        people += [part.strip() for part in line.split(",") if part.strip()]
    return people


def sync_deadline(dag_id: str):
    """A ``DeadlineAlert`` for a daily DAG: ``ABSORB_DEADLINE_HOURS`` after the run's logical date
    (its scheduled time), mail ``ABSORB_NOTIFY_EMAILS`` when the run has not succeeded by then.

    ``None`` (no deadline) unless both are set in the environment of the DAG processor."""
    hours, emails = os.environ.get("ABSORB_DEADLINE_HOURS"), os.environ.get("ABSORB_NOTIFY_EMAILS")
    if not hours or not emails:
        return None
    from airflow.sdk.definitions.callback import SyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=timedelta(hours=float(hours)),
        callback=SyncCallback(
            "absorb_sync.approval.deadline_missed",
            kwargs={
                "dag_id": dag_id,
                "emails": [e.strip() for e in emails.replace(";", ",").split(",") if e.strip()],
                "smtp_conn_id": os.environ.get("ABSORB_SMTP_CONN_ID", "smtp_default"),
            },
        ),
        name=f"{dag_id} not done by logical date + {hours} h",
    )


def connection_and_output_params() -> dict[str, Param]:
    """The ``absorb_conn_id`` and ``output_root`` Params every DAG's trigger form offers."""
    return {
        "absorb_conn_id": Param(
            "absorb_default", type="string", title="Absorb connection", description="Airflow connection id."
        ),
        "output_root": Param(
            None,
            type=["null", "string"],
            title="Output root",
            description="Where run folders go (default: env ABSORB_OUTPUT_ROOT, else var/output).",
        ),
    }
