"""Tokens as the real API issues them: one live token per user, with a lifetime.

Tokens live in memory for speed (no DB read per request) and are mirrored to SQLite so they
survive a restart. Authenticating again replaces (invalidates) the user's previous token.
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
        self._by_token: dict[str, Session] = {}
        self._by_user: dict[str, str] = {}
        self.reload()

    def reload(self) -> None:
        """Read the live tokens from the store (at start-up and after a reset)."""
        self._by_token.clear()
        self._by_user.clear()
        now = time.time()
        for username, token, expires_at in self.conn.execute(
            "SELECT username, token, expires_at FROM tokens"
        ):
            if expires_at > now:
                self._by_token[token] = Session(username, expires_at)
                self._by_user[username] = token

    def issue(self, username: str) -> str:
        """A new token for ``username``; the user's previous token stops working."""
        token = secrets.token_urlsafe(48)
        expires_at = time.time() + self.ttl
        previous = self._by_user.get(username)
        if previous:
            self._by_token.pop(previous, None)
        self._by_token[token] = Session(username, expires_at)
        self._by_user[username] = token
        self.conn.execute(
            "INSERT OR REPLACE INTO tokens (username, token, expires_at) VALUES (?, ?, ?)",
            (username, token, expires_at),
        )
        return token

    def check(self, token: str) -> Session | None:
        """The session of a live token, or None when unknown, replaced or expired."""
        session = self._by_token.get(token)
        if session is None:
            return None
        if session.expires_at <= time.time():
            self._by_token.pop(token, None)
            return None
        return session
