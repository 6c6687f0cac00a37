"""Typed errors of the Absorb provider.

Every API error carries Absorb's own error body (``message``, ``validations``, ``code``, ``term``,
``_meta``) so a failure reads as Absorb explained it, never as a bare "422:Unprocessable Entity".
No exception ever carries a request body, a header, a password, a private key or a token.
"""

from __future__ import annotations

from typing import Any


class AbsorbError(Exception):
    """Base class of every error raised by the Absorb provider."""


class AbsorbApiError(AbsorbError):
    """Absorb answered with an error status; holds Absorb's error body."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        validations: list[str] | None = None,
        code: int | None = None,
        term: str | None = None,
        meta: dict[str, Any] | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.status = status
        self.message = message or ""
        self.validations = list(validations or [])
        self.code = code
        self.term = term
        self.meta = dict(meta or {})
        self.method = method
        self.path = path
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f"{self.method} {self.path} -> " if self.method and self.path else ""
        text = f"{where}HTTP {self.status}: {self.message or 'no message'}"
        if self.validations:
            text += " (validations: " + "; ".join(self.validations) + ")"
        if self.term:
            text += f" [term: {self.term}]"
        return text

    def mentions(self, *fragments: str) -> bool:
        """Whether Absorb's message or validations contain any of ``fragments`` (case-insensitive)."""
        haystack = " ".join([self.message, self.term or "", *self.validations]).lower()
        return any(fragment.lower() in haystack for fragment in fragments)


class AbsorbNotFoundError(AbsorbApiError):
    """HTTP 404: the user, course, enrollment... does not exist."""


class AbsorbAlreadyEnrolledError(AbsorbApiError):
    """A create was refused because the user already has an active enrollment in the course."""


class AbsorbAuthError(AbsorbError):
    """Authentication failed (bad credentials, disabled portal, or a 401 that re-login did not fix)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class AbsorbIncompleteReadError(AbsorbError):
    """A paged read streamed a different number of rows than the first page announced (a short read).

    Callers must not act on such a read (never deprovision what was not seen).
    """

    def __init__(self, path: str, expected: int, received: int) -> None:
        self.path = path
        self.expected = expected
        self.received = received
        super().__init__(
            f"incomplete read of {path}: the first page announced {expected} rows, {received} were streamed"
        )


class AbsorbRetryExhaustedError(AbsorbError):
    """Transient failures (429, 5xx, timeouts, dropped connections) outlasted the retry budget."""

    def __init__(self, method: str, path: str, attempts: int, last_problem: str) -> None:
        self.method = method
        self.path = path
        self.attempts = attempts
        self.last_problem = last_problem
        super().__init__(f"{method} {path}: gave up after {attempts} attempts; last problem: {last_problem}")


class AbsorbTokenContentionError(AbsorbAuthError):
    """Another client keeps logging in as the same API user, so our token keeps being replaced.

    Absorb keeps one live token per user: two deployments (or two hosts without a shared token
    store) using one API user knock each other's token out on every login. Raised after a bounded
    number of such take-overs instead of logging in again and again; carries the username only,
    never a password, key or token.
    """

    def __init__(self, username: str, takeovers: int, window_seconds: float) -> None:
        self.username = username
        self.takeovers = takeovers
        self.window_seconds = window_seconds
        super().__init__(
            f"another client is using API user '{username}': give each deployment its own API user, "
            f"or share the token store ({takeovers} tokens of this user were replaced by another "
            f"login within {window_seconds:.0f}s; Absorb keeps one live token per user)",
            status=401,
        )
