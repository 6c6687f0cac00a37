"""State the server processes share: request stats, rate-limit buckets and the fault spec.

``absorb-sandbox serve --workers N`` runs N processes on one SQLite database. What used to live
in one process's memory lives in a small SQLite file of its own next to the database,
``<db>-state.db`` (WAL, no fsync: it is runtime state, not data), so every process sees the same:

- ``stats``: one counter row per (kind, name); every request adds to them with one UPSERT
  (about 10 µs), so ``GET /_sandbox/stats`` is global whichever process answers it.
- ``buckets``: the token bucket per API key, updated atomically by one UPSERT ... RETURNING.
- ``settings``: the fault spec (JSON) and its version; each process re-reads it when the
  version changes (one indexed read per request).

A separate file keeps these per-request writes away from the data database, whose change
counter (``PRAGMA data_version``) invalidates the paging caches (see ``service.PageCache``).
Issued tokens stay in the data database (table ``tokens``, they survive restarts and resets) and
are read from it on every request, so a token replaced via one process is refused by all.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS stats (
    kind TEXT NOT NULL, name TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (kind, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS buckets (
    key TEXT PRIMARY KEY, tokens REAL NOT NULL, last REAL NOT NULL, granted INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""

# One statement: refill by the time elapsed, take a token when there is one. Every SET
# expression sees the row as it was, so ``granted`` and ``tokens`` agree.
_REFILL = "min(?2, tokens + max(0.0, ?3 - last) * ?4)"
_ACQUIRE_SQL = (
    "INSERT INTO buckets (key, tokens, last, granted) VALUES (?1, ?2 - 1.0, ?3, 1) "
    f"ON CONFLICT (key) DO UPDATE SET tokens = {_REFILL} - ({_REFILL} >= 1.0), "
    f"last = max(last, ?3), granted = ({_REFILL} >= 1.0) RETURNING tokens, granted"
)


def state_path(db_path: str | Path) -> str:
    """Where the shared state of the database ``db_path`` lives (``:memory:`` for a memory db)."""
    text = str(db_path)
    return ":memory:" if text == ":memory:" else f"{text}-state.db"


class SharedState:
    """One process's connection to the shared state file."""

    def __init__(self, path: str):
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if path != ":memory:":
            self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = OFF")
        self.conn.execute("PRAGMA busy_timeout = 10000")
        self.conn.executescript(STATE_SCHEMA)

    def initialise(self, faults: dict | None) -> None:
        """At server start (before any worker serves): zero the stats, fill the buckets, set
        the faults given on the command line."""
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("DELETE FROM stats")
        self.conn.execute("DELETE FROM buckets")
        self.conn.execute("COMMIT")
        self.set_faults(faults)

    def close(self) -> None:
        self.conn.close()

    # --- stats ---------------------------------------------------------------------------------------

    def add(self, counters: list[tuple[str, str]]) -> None:
        """Add one to each (kind, name) counter, in one statement (one tiny transaction)."""
        rows = ", ".join("(?, ?, 1)" for _ in counters)
        self.conn.execute(
            f"INSERT INTO stats (kind, name, n) VALUES {rows} "
            "ON CONFLICT (kind, name) DO UPDATE SET n = n + excluded.n",
            [value for pair in counters for value in pair],
        )

    def counters(self) -> list[tuple[str, str, int]]:
        return self.conn.execute("SELECT kind, name, n FROM stats").fetchall()

    def reset_stats(self) -> None:
        self.conn.execute("DELETE FROM stats")

    # --- rate limit ----------------------------------------------------------------------------------

    def acquire(self, key: str, rate: float, capacity: float) -> float:
        """Token bucket shared by every process: 0 when granted, else seconds until a token."""
        (tokens, granted), *_ = self.conn.execute(_ACQUIRE_SQL, (key, capacity, time.time(), rate)).fetchall()
        return 0.0 if granted else (1.0 - tokens) / rate

    # --- faults --------------------------------------------------------------------------------------

    def set_faults(self, spec: dict | None) -> int:
        """Store a fault spec (``FaultSpec.describe()`` form, None = off); returns its version."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            row = self.conn.execute("SELECT value FROM settings WHERE key = 'faults_version'").fetchone()
            version = (int(row[0]) if row else 0) + 1
            self.conn.executemany(
                "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
                [("faults", json.dumps(spec)), ("faults_version", str(version))],
            )
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return version

    def faults_version(self) -> int:
        row = self.conn.execute("SELECT value FROM settings WHERE key = 'faults_version'").fetchone()
        return int(row[0]) if row else 0

    def faults(self) -> tuple[int, dict | None]:
        rows = dict(
            self.conn.execute("SELECT key, value FROM settings WHERE key IN ('faults', 'faults_version')")
        )
        return int(rows.get("faults_version", 0)), json.loads(rows.get("faults", "null"))
