"""The sync's memory between runs: last accepted feed, provenance of our enrollments, last export.

State is kept per portal (``{root}/portals/{key}/``, the key derived from the gateway URL and the
API user, see :meth:`SyncState.for_portal`): a baseline, provenance or leaver list computed
against one Absorb portal must never steer writes against another one that shares a connection id.

Small JSON documents under a root (a local folder or any ObjectStoragePath). Every write replaces a
whole document atomically (temp file + ``os.replace`` locally, one object put remotely), and local
read-modify-write cycles hold a file lock, so a crash or a concurrent run never corrupts state.
A document that exists but cannot be read raises :class:`StateError` rather than being treated as
empty: forgetting provenance or the last feed size would silently weaken the safety gates.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

FEED_DOC = "accepted_feed.json"
PEOPLE_DOC = "accepted_people.json"
PORTAL_DOC = "portal.json"
JOURNAL_DIR = "journal"
PROVENANCE_DOC = "provenance.json"
EXPORT_DOC = "last_export.json"
MANAGED_DOC = "managed_people.json"
USERS_DOC = "user_provenance.json"
FORMAT_VERSION = 1


class StateError(RuntimeError):
    """A state document is unreadable (names the document)."""


class SyncState:
    """Read and write the integration's state documents under ``root``."""

    def __init__(self, root: Any, portal: dict | None = None):
        self._local: Path | None = local_path(root)
        self._remote: Any = None if self._local is not None else _object_path(root)
        self.root = root
        self.portal = dict(portal) if portal else None
        self._portal_written = False

    @classmethod
    def for_portal(cls, root: Any, *, key: str, base_url: str, api_user: str) -> SyncState:
        """The state of one portal (gateway URL + API user; no secret) under ``root``."""
        if not key or not all(c.isalnum() or c in "-_" for c in key):
            raise ValueError(f"portal key must be a plain identifier, got {key!r}")
        child = (local_path(root) or _object_path(root)) / "portals" / key
        return cls(child, portal={"key": key, "base_url": base_url, "api_user": api_user})

    def __repr__(self) -> str:
        return f"SyncState({str(self.root)!r})"

    @property
    def location(self) -> Any:
        """The folder (Path or ObjectStoragePath) that holds this state's documents."""
        return self._local if self._local is not None else self._remote

    # ------------------------------------------------------------------ feed
    def last_accepted_feed(self) -> dict | None:
        document = self._read(FEED_DOC)
        return document.get("last_accepted") if document else None

    def record_accepted_feed(
        self,
        *,
        row_count: int,
        active_count: int,
        run_id: str,
        leavers: list[str],
        active_ids: Iterable[str] | None = None,
        feed_sha256: str | None = None,
    ) -> None:
        """Make a feed the baseline; ``active_ids`` are the people a late hand-over must not remove."""
        entry = {
            "row_count": int(row_count),
            "active_count": int(active_count),
            "run_id": str(run_id),
            "accepted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "feed_sha256": feed_sha256,
        }
        if active_ids is not None:  # written first: the feed document names the run it belongs to
            with self._locked(PEOPLE_DOC):
                self._write(
                    PEOPLE_DOC,
                    {
                        "version": FORMAT_VERSION,
                        "run_id": str(run_id),
                        "active": sorted(map(str, active_ids)),
                    },
                )
        with self._locked(FEED_DOC):
            document = self._read(FEED_DOC) or {}
            history = ([document["last_accepted"]] if document.get("last_accepted") else []) + document.get(
                "history", []
            )
            self._write(
                FEED_DOC,
                {
                    "version": FORMAT_VERSION,
                    "last_accepted": entry,
                    "leavers": sorted({str(x) for x in leavers}),
                    "history": history[:20],
                },
            )

    def last_leavers(self) -> list[str]:
        document = self._read(FEED_DOC)
        return list(document.get("leavers", [])) if document else []

    def accepted_active_people(self) -> tuple[str, set[str]] | None:
        """(run id, employee ids active) of the latest accepted feed, or None before the first one."""
        document = self._read(PEOPLE_DOC)
        if not document:
            return None
        return str(document.get("run_id")), {str(x) for x in document.get("active", [])}

    # ------------------------------------------------------------------ users
    def managed_people(self) -> set[str]:
        """Employee ids active in any feed the sync accepted: the only people it may deactivate."""
        document = self._read(MANAGED_DOC) or {}
        accepted = self.accepted_active_people()
        return {str(x) for x in document.get("employees", [])} | (accepted[1] if accepted else set())

    def record_managed_people(self, employee_ids: Iterable[str], run_id: str) -> None:
        """Add the active people of an accepted feed to the managed ones (never removes any)."""
        with self._locked(MANAGED_DOC):
            document = self._read(MANAGED_DOC) or {}
            known = {str(x) for x in document.get("employees", [])}
            merged = known | {str(x) for x in employee_ids}
            if merged != known or not document:
                self._write(
                    MANAGED_DOC,
                    {"version": FORMAT_VERSION, "run_id": str(run_id), "employees": sorted(merged)},
                )

    def user_provenance(self) -> dict[str, dict]:
        """Absorb user id -> what the sync last did to it (action, fields, run, when)."""
        document = self._read(USERS_DOC)
        return dict(document.get("users", {})) if document else {}

    def record_user_changes(self, rows: Iterable[dict]) -> None:
        """Provenance of user writes that Absorb accepted: the last change per user, and who made it."""
        rows = [r for r in rows if r.get("user_id")]
        if not rows:
            return
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._locked(USERS_DOC):
            known = self.user_provenance()
            for row in rows:
                entry = known.get(str(row["user_id"]), {})
                known[str(row["user_id"])] = {
                    "employee_id": _text(row.get("employee_id")),
                    "action": _text(row.get("action")),
                    "fields": sorted(row.get("fields") or []),
                    "run_id": _text(row.get("run_id")),
                    "recorded_at": now,
                    "created_by_sync": bool(entry.get("created_by_sync"))
                    or row.get("action") == "create_user",
                }
            self._write(USERS_DOC, {"version": FORMAT_VERSION, "users": known})

    # ------------------------------------------------------------------ provenance
    def provenance_ids(self) -> set[str]:
        return set(self._provenance())

    def provenance(self) -> dict[str, dict]:
        """enrollment id -> {user_id, course_id, rule, run_id, recorded_at}."""
        return dict(self._provenance())

    def record_created(self, rows: Iterable[dict]) -> None:
        rows = list(rows)
        missing = [i for i, row in enumerate(rows) if not row.get("enrollment_id")]
        if missing:
            raise ValueError(f"record_created: rows {missing} have no enrollment_id")
        if not rows:
            return
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._locked(PROVENANCE_DOC):
            known = self._provenance()
            for row in rows:
                known[str(row["enrollment_id"])] = {
                    "user_id": _text(row.get("user_id")),
                    "course_id": _text(row.get("course_id")),
                    "rule": _text(row.get("rule")),
                    "run_id": _text(row.get("run_id")),
                    "recorded_at": now,
                }
            self._write(PROVENANCE_DOC, {"version": FORMAT_VERSION, "enrollments": known})

    def forget(self, enrollment_ids: Iterable[str]) -> None:
        ids = {str(i) for i in enrollment_ids}
        if not ids:
            return
        with self._locked(PROVENANCE_DOC):
            known = self._provenance()
            remaining = {k: v for k, v in known.items() if k not in ids}
            if len(remaining) != len(known):
                self._write(PROVENANCE_DOC, {"version": FORMAT_VERSION, "enrollments": remaining})

    def _provenance(self) -> dict[str, dict]:
        document = self._read(PROVENANCE_DOC)
        return dict(document.get("enrollments", {})) if document else {}

    # ------------------------------------------------------------------ export
    def last_export(self) -> dict | None:
        document = self._read(EXPORT_DOC)
        return document.get("summary") if document else None

    def record_export(self, summary: dict) -> None:
        payload = {
            "version": FORMAT_VERSION,
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "summary": summary,
        }
        with self._locked(EXPORT_DOC):
            self._write(EXPORT_DOC, payload)

    # ------------------------------------------------------------------ storage
    def _read(self, name: str) -> dict | None:
        try:
            if self._local is not None:
                path = self._local / name
                if not path.exists():
                    return None
                text = path.read_text(encoding="utf-8")
            else:
                path = self._remote / name
                if not path.exists():
                    return None
                text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise StateError(f"cannot read sync state {name} under {self.root}: {exc}") from exc
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateError(
                f"sync state {name} under {self.root} is not valid JSON ({exc}); fix or remove it"
            ) from exc
        if not isinstance(document, dict):
            raise StateError(f"sync state {name} under {self.root} is not a JSON object")
        return document

    def _write(self, name: str, document: dict) -> None:
        if self.portal and not self._portal_written and name != PORTAL_DOC:
            self._portal_written = True
            self._write(PORTAL_DOC, {"version": FORMAT_VERSION, **self.portal})
        try:
            text = json.dumps(_finite(document), indent=1, sort_keys=True, default=_plain, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StateError(f"cannot store {name}: {exc}") from exc
        if self._local is not None:
            self._local.mkdir(parents=True, exist_ok=True)
            target = self._local / name
            temp = self._local / f".{name}.{uuid.uuid4().hex}.tmp"
            try:
                with open(temp, "w", encoding="utf-8") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
            return
        target = self._remote / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode("utf-8"))  # a single object put: all or nothing

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        if self._local is None:
            yield
            return
        from filelock import FileLock

        self._local.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self._local / f".{name}.lock"), timeout=60):
            yield


def local_path(root: Any) -> Path | None:
    """The local folder behind ``root`` (a path, ``file://`` URL or file ObjectStoragePath), else None."""
    if isinstance(root, (str, os.PathLike)):
        text = os.fspath(root)
        if text.startswith("file://"):
            return Path(text[len("file://") :])
        return None if "://" in text else Path(text)
    if getattr(root, "protocol", None) in ("", "file", "local"):  # an ObjectStoragePath of a local folder
        return Path(root.path)
    return None


def _object_path(root: Any) -> Any:
    if isinstance(root, str):
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(root)
    return root


def _finite(value: Any) -> Any:
    """NaN/inf (e.g. a rate over zero rows) become null, so the document stays strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        return _finite(value.item())
    return value


def _plain(value: Any) -> Any:
    """JSON for numpy scalars, dates and sets; anything else is refused rather than stringified."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    return str(value)
