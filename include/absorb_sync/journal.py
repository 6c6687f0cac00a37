"""The write journal: what a sync run is about to write and what Absorb answered, made durable at once.

Provenance ("this enrollment was created by the sync, so the sync may remove it later") used to be
recorded only after a whole bulk call returned. A crash in the middle of the apply then lost it:
the writes had happened, a re-run found the enrollments already there and never claimed them, and
a later feed could not remove them. The journal closes that gap:

- before any write, every *intent* (plan line: action, user, course, rule) is appended and fsync'd;
- each *outcome* is appended as it arrives (fsync'd locally; remote stores get one object per flush);
- a *fold* turns the journal into state: created enrollments become provenance, removed ones are
  forgotten, and an intent whose outcome was lost (crash, killed worker) is *adopted* when a later
  attempt or a later read of Absorb shows its enrollment in place.

Folding is idempotent, so a journal may be folded by the run's own apply, by its retry, and by
the next run's planner; a ``folded`` marker only saves re-reading journals with nothing new.

Layout under the portal's state folder: ``journal/{run_key}.jsonl`` locally (one append-only
file), ``journal/{run_key}/part-{n}.jsonl`` on object stores (objects cannot be appended to).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ADOPTABLE = ("enroll", "re_enroll")
CREATED = ("created",)
REMOVED = ("unenrolled", "already_gone")
FOLDED = "folded"
REMOTE_BATCH = 500
REMOTE_SECONDS = 2.0
TAIL_BYTES = 64 * 1024


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class WriteJournal:
    """One attempt's journal of one run (``attempt`` tells a retry's records from the first try's)."""

    def __init__(self, directory: Any, run_key: str, attempt: str | None = None) -> None:
        self.directory = directory
        self.run_key = run_key
        self.attempt = attempt or uuid.uuid4().hex[:12]
        self._local = isinstance(directory, Path)
        self._parts = 0
        self._pending: list[dict] = []  # outcomes not yet put (object stores only)
        self._last_put = time.monotonic()

    # ------------------------------------------------------------------ writing
    def begin(self, run_id: str) -> None:
        self._append([{"type": "attempt", "run_id": run_id}])

    def intents(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Durable before the first write is sent: a crash after this point is recoverable."""
        self._append([{"type": "intent", **dict(row)} for row in rows])

    def outcomes(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Locally each call is appended and fsync'd; on an object store answers are put in batches
        (every ``REMOTE_BATCH`` records or ``REMOTE_SECONDS``): a lost batch only costs adoption work,
        since the intents are already durable."""
        records = [{"type": "outcome", **dict(row)} for row in rows]
        if self._local:
            self._append(records)
            return
        self._pending += records
        if len(self._pending) >= REMOTE_BATCH or time.monotonic() - self._last_put >= REMOTE_SECONDS:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        self._append(pending)
        self._last_put = time.monotonic()

    def mark_folded(self) -> None:
        self._append([{"type": FOLDED}])

    def _append(self, records: list[dict]) -> None:
        if not records:
            return
        stamp = _now()
        text = "".join(
            json.dumps({"attempt": self.attempt, "at": stamp, **r}, default=str, sort_keys=True) + "\n"
            for r in records
        )
        if self._local:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.directory / f"{self.run_key}.jsonl", "a", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            return
        folder = self.directory / self.run_key
        folder.mkdir(parents=True, exist_ok=True)
        self._parts += 1
        name = f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{self.attempt}-{self._parts:06d}.jsonl"
        (folder / name).write_bytes(text.encode("utf-8"))  # one put: all or nothing


# ---------------------------------------------------------------------- reading


def journal_names(directory: Any) -> list[str]:
    """Run keys with a journal under ``directory``."""
    if not directory.exists():
        return []
    names = set()
    for entry in directory.iterdir():
        if entry.name.endswith(".jsonl"):
            names.add(entry.name[: -len(".jsonl")])
        elif entry.is_dir():
            names.add(entry.name)
    return sorted(names)


def read_records(directory: Any, run_key: str) -> list[dict]:
    """Every record of a run's journal, oldest first (a torn last line of a crash is skipped)."""
    texts: list[str] = []
    local = directory / f"{run_key}.jsonl"
    if local.exists():
        texts.append(local.read_text(encoding="utf-8"))
    folder = directory / run_key
    if folder.exists() and folder.is_dir():
        texts += [p.read_text(encoding="utf-8") for p in sorted(folder.iterdir(), key=lambda p: p.name)]
    records = []
    for text in texts:
        for line in text.splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # only the line being written when the process died can be torn
    return records


def last_record(directory: Any, run_key: str) -> dict | None:
    """The last readable record of a run's journal, read from the end of its last file.

    What the planner checks on every run: a folded journal of a large load is tens of MB that
    need not be parsed to learn it has nothing new.
    """
    folder = directory / run_key
    if folder.exists() and folder.is_dir():
        for part in sorted(folder.iterdir(), key=lambda p: p.name, reverse=True):
            found = _last_readable(part.read_text(encoding="utf-8").splitlines())
            if found is not None:
                return found
    local = directory / f"{run_key}.jsonl"
    if not local.exists():
        return None
    if not isinstance(local, Path):
        return _last_readable(local.read_text(encoding="utf-8").splitlines())
    with open(local, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = max(0, size - TAIL_BYTES)
        handle.seek(start)
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    found = _last_readable(lines if start == 0 else lines[1:])  # the first line may be cut
    if found is None and start > 0:  # no whole record in the tail: read it all
        return _last_readable(local.read_text(encoding="utf-8").splitlines())
    return found


def _last_readable(lines: list[str]) -> dict | None:
    for line in reversed(lines):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line
    return None


def needs_fold(records: list[dict]) -> bool:
    """Anything after the last ``folded`` marker?"""
    return bool(records) and records[-1].get("type") != FOLDED


# ---------------------------------------------------------------------- folding


@dataclass
class Fold:
    """What a journal says about provenance."""

    created: dict[str, dict] = field(default_factory=dict)  # enrollment id -> provenance row
    removed: set[str] = field(default_factory=set)
    adopted: int = 0
    unresolved: int = 0


def fold_records(records: list[dict], current: Mapping[tuple[str, str], str] | None = None) -> Fold:
    """Provenance from one journal. ``current`` maps (user id, course id) -> active enrollment id
    (lower-case ids) from a read made after the journal was written; without it, lost outcomes
    can only be adopted from a later attempt's answers."""
    intents: dict[tuple[str, Any], dict] = {}
    answered: set[tuple[str, Any]] = set()
    later_ids: dict[tuple[str, str], str] = {}
    fold = Fold()
    for record in records:
        kind = record.get("type")
        slot = (record.get("attempt"), record.get("key"))
        if kind == "intent":
            intents[slot] = record
        elif kind == "outcome":
            if record.get("outcome") != "failed":  # a failed write may still have happened
                answered.add(slot)
            _apply_outcome(fold, record, intents.get(slot))
            if record.get("enrollment_id") and record.get("outcome") not in (*REMOVED, "failed"):
                later_ids[_pair(record)] = str(record["enrollment_id"])
    for slot, intent in intents.items():
        if slot in answered:
            continue
        _adopt(fold, intent, later_ids, current)
    return fold


def _pair(record: Mapping[str, Any]) -> tuple[str, str]:
    return (str(record.get("user_id") or "").lower(), str(record.get("course_id") or "").lower())


def _provenance_row(intent: Mapping[str, Any] | None, outcome: Mapping[str, Any]) -> dict:
    source = intent or outcome
    return {
        "enrollment_id": str(outcome["enrollment_id"]),
        "user_id": source.get("user_id"),
        "course_id": source.get("course_id"),
        "rule": source.get("rule"),
        "run_id": source.get("run_id"),
    }


def _apply_outcome(fold: Fold, record: Mapping[str, Any], intent: Mapping[str, Any] | None) -> None:
    outcome = record.get("outcome")
    if outcome in CREATED and record.get("enrollment_id"):
        fold.created[str(record["enrollment_id"]).lower()] = _provenance_row(intent, record)
    elif outcome in REMOVED and record.get("enrollment_id"):
        fold.removed.add(str(record["enrollment_id"]))


def _adopt(
    fold: Fold,
    intent: Mapping[str, Any],
    later_ids: Mapping[tuple[str, str], str],
    current: Mapping[tuple[str, str], str] | None,
) -> None:
    """An intent with no answer: the write may or may not have happened. Look at what came after."""
    action = intent.get("action")
    pair = _pair(intent)
    old = str(intent.get("enrollment_id") or "").lower()
    if action == "unenroll":
        if current is not None and old and old not in {v.lower() for v in current.values()}:
            fold.removed.add(str(intent["enrollment_id"]))
        elif current is None:
            fold.unresolved += 1
        return
    if action not in ADOPTABLE:
        return  # a due-date update changes no ownership
    found = later_ids.get(pair) or (current or {}).get(pair)
    if found and found.lower() != old:
        fold.created[found.lower()] = _provenance_row(intent, {"enrollment_id": found})
        fold.adopted += 1
    elif current is None:
        fold.unresolved += 1


def fold_into_state(
    state: Any,
    run_key: str | None = None,
    current: Mapping[tuple[str, str], str] | Callable[[], Mapping[tuple[str, str], str]] | None = None,
) -> dict:
    """Fold every journal with news (or only ``run_key``'s) into ``state``; returns counts.

    ``current`` may be a callable: it is called only when some journal has news (after a crash or
    failed writes), so a normal run never builds the portal-wide lookup. A journal folded without
    ``current`` that still has unresolved intents keeps no marker, so the next planner (which
    reads Absorb) folds it again.
    """
    directory = state.location / "journal"
    totals = {"journals": 0, "created": 0, "adopted": 0, "removed": 0, "unresolved": 0}
    for name in [run_key] if run_key else journal_names(directory):
        last = last_record(directory, name)
        if last is None or last.get("type") == FOLDED:
            continue  # nothing after the last fold (checked without parsing the journal)
        records = read_records(directory, name)
        if not needs_fold(records):
            continue
        if callable(current):
            current = current()
        fold = fold_records(records, current)
        state.record_created(fold.created.values())
        state.forget(fold.removed)
        totals["journals"] += 1
        totals["created"] += len(fold.created)
        totals["adopted"] += fold.adopted
        totals["removed"] += len(fold.removed)
        totals["unresolved"] += fold.unresolved
        if not fold.unresolved:
            WriteJournal(directory, name).mark_folded()
    return totals
