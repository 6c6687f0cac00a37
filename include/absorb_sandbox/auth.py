"""Tokens as the real API issues them: one live token per user, with a lifetime.

Tokens live in the database (table ``tokens``, one row per user), so they survive a restart and
every server process of ``serve --workers N`` sees the same ones: each request looks its token
up (one indexed read). Authenticating again replaces (invalidates) the user's previous token,
whichever process answers the next request.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from dataclasses import dataclass

DEFAULT_TOKEN_TTL = 4 * 3600.0


@dataclass(frozen=True)
class Session:
    username: str
    expires_at: float


class TokenStore:
    def __init__(self, conn: sqlite3.Connection, ttl: float = DEFAULT_TOKEN_TTL):
        self.conn = conn
        self.ttl = ttl

    def reload(self) -> None:
        """Nothing to reload: every check reads the store (kept for callers after a reset)."""

    def issue(self, username: str) -> str:
        """A new token for ``username``; the user's previous token stops working."""
        token = secrets.token_urlsafe(48)
        self.conn.execute(
            "INSERT OR REPLACE INTO tokens (username, token, expires_at) VALUES (?, ?, ?)",
            (username, token, time.time() + self.ttl),
        )
        return token

    def check(self, token: str) -> Session | None:
        """The session of a live token, or None when unknown, replaced or expired."""
        row = self.conn.execute(
            "SELECT username, expires_at FROM tokens WHERE token = ?", (token,)
        ).fetchone()
        if row is None or row[1] <= time.time():
            return None
        return Session(row[0], row[1])
