"""Where runs keep their files, and the little I/O helpers every job shares.

Outputs go to ``{output_root}/{dag_id}/{run_id}/``; ``output_root`` comes from the DAG Param, else
the env ``ABSORB_OUTPUT_ROOT``, else ``var/output`` in the project. The sync state lives under
``ABSORB_STATE_ROOT`` (default ``var/state``). Both may be any ObjectStoragePath URL (s3://...).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_OUTPUT_ROOT = PROJECT_ROOT / "var" / "output"
DEFAULT_STATE_ROOT = PROJECT_ROOT / "var" / "state"
DEFAULT_RULES_PATH = PROJECT_ROOT / "include" / "rules" / "enrollment_rules.yaml"
SYNC_DAG_ID = "absorb_hr_enrollment_sync"
UNENROLL_DAG_ID = "absorb_bulk_unenrollment"
EXPORT_DAG_ID = "absorb_completion_export"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


class InputError(AirflowFailException):
    """A run input (rules, mapping, Params, people file) is wrong: fails at once, before any write,
    and is not retried (the same input gives the same error)."""


def storage_path(location: str | os.PathLike) -> ObjectStoragePath:
    """An ObjectStoragePath for a URL or a local path (relative paths are made absolute)."""
    text = os.fspath(location)
    if "://" not in text:
        text = str(Path(text).expanduser().resolve())
    return ObjectStoragePath(text)


def output_root(param: str | None = None) -> ObjectStoragePath:
    return storage_path(param or os.environ.get("ABSORB_OUTPUT_ROOT") or DEFAULT_OUTPUT_ROOT)


def state_root() -> ObjectStoragePath:
    return storage_path(os.environ.get("ABSORB_STATE_ROOT") or DEFAULT_STATE_ROOT)


def run_key(run_id: str) -> str:
    """The run id as a folder name: characters that trouble object stores (``:``, ``+``) become ``_``."""
    return _UNSAFE.sub("_", run_id)


def run_folder(root: ObjectStoragePath, dag_id: str, run_id: str) -> ObjectStoragePath:
    folder = root / dag_id / run_key(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class CoalescedWriter:
    """Gathers small text writes into ~1 MiB ones before they reach ``handle``.

    Every ``write`` on an ObjectStoragePath handle also records lineage (the path formatted, an
    asset built): ``to_csv`` writes once per row and ``json.dump`` once per token, which cost
    seconds per 100k rows before any byte was stored.
    """

    def __init__(self, handle: Any, limit: int = 1 << 20) -> None:
        self._handle, self._limit = handle, limit
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> int:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= self._limit:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._parts:
            self._handle.write("".join(self._parts))
            self._parts, self._size = [], 0

    def __enter__(self) -> CoalescedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


def write_json(target: ObjectStoragePath, data: Any) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True, default=str)
    with target.open("w", encoding="utf-8") as handle:
        handle.write(text)
    return str(target)


def read_json(source: ObjectStoragePath) -> Any:
    with source.open("r", encoding="utf-8") as handle:
        return json.load(handle)


def write_frame(target: ObjectStoragePath, frame: pd.DataFrame) -> str:
    """Parquet for frames handed between tasks (types survive, unlike CSV)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as handle:
        frame.to_parquet(handle, index=False)
    return str(target)


def read_frame(source: ObjectStoragePath) -> pd.DataFrame:
    import pandas as pd

    with source.open("rb") as handle:
        return pd.read_parquet(handle)


def write_csv(target: ObjectStoragePath, frame: pd.DataFrame) -> str:
    """CSV for people to open; cells a spreadsheet would run as formulas are escaped (``'=...``)."""
    from absorb_provider.csv_safety import escape_frame

    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8", newline="") as handle, CoalescedWriter(handle) as coalesced:
        escape_frame(frame).to_csv(coalesced, index=False)
    return str(target)


def make_hook(conn_id: str | None):
    """The Absorb hook for ``conn_id`` (default ``absorb_default``)."""
    from absorb_provider.hooks.absorb import AbsorbHook

    return AbsorbHook(absorb_conn_id=conn_id or "absorb_default")


@dataclass
class RunContext:
    """What a task of ours needs from Airflow, resolved once: params, ids, folders, dates."""

    dag_id: str
    run_id: str
    run_type: str
    params: dict
    output_root: ObjectStoragePath
    folder: ObjectStoragePath
    now: datetime
    interval_start: datetime | None
    interval_end: datetime | None

    @property
    def scheduled(self) -> bool:
        """A run the scheduler made for its data interval (scheduled or backfill), not a manual one."""
        return self.run_type.rsplit(".", 1)[-1].lower() in ("scheduled", "backfill")

    @property
    def today(self) -> date:
        return self.now.date()

    def hook(self):
        return make_hook(self.params.get("absorb_conn_id"))

    def state(self):
        """The sync state of the portal this run's connection points at."""
        return portal_state(self.hook())


def portal_of(hook: Any) -> dict:
    """The portal a hook talks to: gateway URL and API user (never a secret), and their key."""
    settings = hook.settings
    return {"key": settings.identity, "base_url": settings.base_url, "api_user": settings.username}


def portal_state(hook: Any, root: Any = None):
    """``SyncState`` of the hook's portal under ``root`` (default: the state root)."""
    from absorb_sync.state import SyncState

    return SyncState.for_portal(root if root is not None else state_root(), **portal_of(hook))


def current_run() -> RunContext:
    """The RunContext of the running task (``now`` is the run's ``run_after``, in UTC)."""
    from airflow.sdk import get_current_context

    context = get_current_context()
    dag_run = context["dag_run"]
    params = dict(context["params"])
    root = output_root(params.get("output_root"))
    run_after = getattr(dag_run, "run_after", None) or datetime.now(UTC)
    return RunContext(
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        run_type=str(getattr(dag_run, "run_type", "manual")),
        params=params,
        output_root=root,
        folder=run_folder(root, dag_run.dag_id, dag_run.run_id),
        now=run_after.astimezone(UTC),
        interval_start=context.get("data_interval_start"),
        interval_end=context.get("data_interval_end"),
    )
