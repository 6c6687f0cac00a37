"""What the three DAGs share: task defaults, the API pool and the connection/output Params.

DAG files import this at parse time, so it stays import-light (``airflow.sdk`` only).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param

DEFAULT_ARGS = {
    "owner": "hr-integration",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
}
API_TASK = {"pool": "absorb_api"}


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
