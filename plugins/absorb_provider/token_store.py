"""One Absorb token per API user, shared by every thread, task process and worker that uses it.

Absorb keeps a single live token per user: each ``/authenticate`` invalidates the previous token,
so parallel tasks that log in on their own knock each other out. This module makes them share one.

Layers, cheapest first:

1. in-process memory (threads of a hook and hooks of a process);
2. shared stores holding the token *sealed* (Fernet, key derived from the connection's own
   credentials, so a stored blob is useless to anyone who could not log in anyway):
   - the host's file store: a 0600 file in a 0700 per-user directory, used by every process on
     the machine (tasks, scripts, tests). It holds ciphertext only, never the token;
   - inside an Airflow task, also an Airflow Variable (``absorb_token_secret__<identity>``),
     reached through the Task Execution API, so every worker of the deployment sees it; the
     key contains "secret", so Airflow masks the value as well. Outside a task
     ``Variable.set`` has no channel to the API server and ``Variable.get`` reads only env and
     external backends, which is why the file store exists at all.
   Readers take the newest fresh token of all stores and copy it to the stores that lack it;
3. a host-wide file lock (the lock file holds nothing) so that concurrent first logins on one
   machine queue behind a single ``/authenticate``, plus - in a task - a lease Variable so that
   workers on other machines wait for the one that is logging in.

Tokens are keyed by the identity (gateway + username), not the connection id: Absorb keeps one
token per *user*, so two connections for the same API user must share it too.

On a 401 a client re-authenticates only if the token that failed is still the shared one;
otherwise it adopts the newer token somebody else already stored.

Take-overs: a 401 on a token younger than ``MIN_RELOGIN_INTERVAL_SECONDS`` cannot be an expiry;
somebody outside this host's token store logged in as the same user (a second deployment, or a
host without shared storage). Logging in again at once would knock that client out, which knocks
us out: a login storm. Instead the host waits until its previous login is at least
``MIN_RELOGIN_INTERVAL_SECONDS`` old (plus jitter), and after ``max_takeovers`` take-overs within
``TAKEOVER_WINDOW_SECONDS`` (counted per host, in a file next to the lock) it stops logging in and
raises ``AbsorbTokenContentionError`` on every call for the rest of the window. A 401 on an older
token is an ordinary expiry and is refreshed at once, as before.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.fernet import Fernet, InvalidToken
from filelock import FileLock

from absorb_provider.exceptions import AbsorbTokenContentionError

log = logging.getLogger(__name__)

EXPIRY_MARGIN_SECONDS = 60.0
HOST_LOCK_TIMEOUT_SECONDS = 120.0
LEASE_SECONDS = 30.0
LEASE_SETTLE_SECONDS = 0.25
MIN_RELOGIN_INTERVAL_SECONDS = 5.0  # after a 401, never log in sooner than this after the last login
TAKEOVER_JITTER_SECONDS = 2.5  # added to that wait, so two contending hosts do not move in step
TAKEOVER_WINDOW_SECONDS = 300.0  # take-overs are counted over this window; contention lasts as long
TAKEOVER_POLL_SECONDS = 0.25  # while waiting, how often to look for a token another process stored
DEFAULT_MAX_TAKEOVERS = 3


@dataclass(frozen=True)
class Token:
    """A bearer token and when it stops being usable (``repr`` never shows the value)."""

    value: str = field(repr=False)
    expires_at: float
    issued_at: float = field(default_factory=time.time)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.value.encode()).hexdigest()[:12]

    def is_fresh(self, now: float | None = None) -> bool:
        return (now or time.time()) < self.expires_at - EXPIRY_MARGIN_SECONDS


class TokenCipher:
    """Fernet encryption keyed by the connection's credentials."""

    def __init__(self, key_material: bytes) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(key_material).digest()))

    def seal(self, token: Token) -> str:
        payload = json.dumps(
            {"token": token.value, "expires_at": token.expires_at, "issued_at": token.issued_at}
        ).encode()
        return self._fernet.encrypt(payload).decode()

    def open(self, blob: str | None) -> Token | None:
        """The token in ``blob``, or None when absent, corrupt or sealed with other credentials."""
        if not blob:
            return None
        try:
            data = json.loads(self._fernet.decrypt(blob.encode()))
            return Token(
                value=str(data["token"]),
                expires_at=float(data["expires_at"]),
                issued_at=float(data.get("issued_at", 0.0)),
            )
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None


class SharedStore(Protocol):
    """Where the sealed token lives between processes."""

    kind: str

    def read(self) -> str | None: ...

    def write(self, blob: str) -> None: ...

    def try_lease(self, owner: str) -> bool: ...

    def release_lease(self, owner: str) -> None: ...


def in_airflow_task() -> bool:
    """True inside a task process, where Variables go through the Task Execution API."""
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:  # pragma: no cover - airflow is a dependency
        return False
    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


STATE_DIR_ENV = "ABSORB_PROVIDER_STATE_DIR"


def _private_dir() -> Path:
    """A 0700 directory of this OS user for lock files (and, outside tasks, the sealed token)."""
    override = os.environ.get(STATE_DIR_ENV)
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    directory = Path(override) if override else base / f"absorb-provider-{os.getuid()}"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    return directory


class FileStore:
    """Sealed token in a 0600 file; for processes that are not Airflow tasks (one machine)."""

    kind = "file"

    def __init__(self, identity: str) -> None:
        self.path = _private_dir() / f"token-{identity}.sealed"

    def read(self) -> str | None:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return None

    def write(self, blob: str) -> None:
        tmp = self.path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(blob)
        os.replace(tmp, self.path)

    def try_lease(self, owner: str) -> bool:
        return True  # the host lock already serialises every process that can see this file

    def release_lease(self, owner: str) -> None:
        return None


class VariableStore:
    """Sealed token in an Airflow Variable, visible to every worker of the deployment."""

    kind = "variable"

    def __init__(self, identity: str) -> None:
        self.key = f"absorb_token_secret__{identity}"
        self.lease_key = f"absorb_token_lease__{identity}"

    @staticmethod
    def _get(key: str) -> str | None:
        from airflow.sdk import Variable

        return Variable.get(key, default=None)

    @staticmethod
    def _set(key: str, value: str) -> None:
        from airflow.sdk import Variable

        Variable.set(key, value, description="Absorb provider: shared API token (encrypted). Do not edit.")

    def read(self) -> str | None:
        return self._get(self.key)

    def write(self, blob: str) -> None:
        self._set(self.key, blob)

    def try_lease(self, owner: str) -> bool:
        """Best-effort cross-host lease: claim, let racing claims land, then check we still hold it."""
        current = self._read_lease()
        if current and current["owner"] != owner and current["until"] > time.time():
            return False
        self._set(self.lease_key, json.dumps({"owner": owner, "until": time.time() + LEASE_SECONDS}))
        time.sleep(LEASE_SETTLE_SECONDS)
        current = self._read_lease()
        return bool(current) and current["owner"] == owner

    def release_lease(self, owner: str) -> None:
        current = self._read_lease()
        if current and current["owner"] == owner:
            self._set(self.lease_key, json.dumps({"owner": owner, "until": 0}))

    def _read_lease(self) -> dict | None:
        raw = self._get(self.lease_key)
        try:
            data = json.loads(raw) if raw else None
            return {"owner": str(data["owner"]), "until": float(data["until"])} if data else None
        except (ValueError, KeyError, TypeError):
            return None


class TokenManager:
    """Hands out the shared token; logs in lazily, at most once per expiry across processes.

    Stores: the host's sealed file always, plus the Airflow Variable inside a task. Reads take
    the newest fresh token of all of them and copy it to any store that lacks it, so scripts and
    tasks on one machine and tasks on other machines all converge on one token.
    """

    def __init__(
        self,
        identity: str,
        key_material: bytes,
        login: Callable[[], Token],
        stores: list[SharedStore] | None = None,
        *,
        username: str = "",
        max_takeovers: int = DEFAULT_MAX_TAKEOVERS,
    ) -> None:
        self._identity = identity
        self.username = username
        self.max_takeovers = max_takeovers
        self._cipher = TokenCipher(key_material)
        self._login = login
        self._fixed_stores = stores
        self._file_store: FileStore | None = None
        self._variable_store: VariableStore | None = None
        self._memory: Token | None = None
        self._thread_lock = threading.RLock()
        self._owner = uuid.uuid4().hex
        self._host_lock = FileLock(
            str(_private_dir() / f"token-{identity}.lock"), timeout=HOST_LOCK_TIMEOUT_SECONDS
        )
        self._takeover_file = _private_dir() / f"takeovers-{identity}.json"
        self._dead: list[str] = []  # values of tokens Absorb rejected (never reused from a store)
        self._contended_until = 0.0
        self._contention_count = 0
        self.login_count = 0
        self.login_times: list[float] = []
        self.takeover_count = 0

    @property
    def stores(self) -> list[SharedStore]:
        """The injected stores, else the host file plus (inside a task) the Airflow Variable."""
        if self._fixed_stores is not None:
            return self._fixed_stores
        if self._file_store is None:
            self._file_store = FileStore(self._identity)
        if not in_airflow_task():
            return [self._file_store]
        if self._variable_store is None:
            self._variable_store = VariableStore(self._identity)
        return [self._variable_store, self._file_store]

    def current(self) -> Token:
        """A fresh token: from memory, else the shared stores, else a single login."""
        if self._contended_until:
            self._raise_if_contended()
        token = self._memory
        if token is not None and token.is_fresh():
            return token
        with self._thread_lock:
            self._raise_if_contended()
            if self._memory is not None and self._memory.is_fresh():
                return self._memory
            return self._obtain(stale=None)

    def replace_rejected(self, rejected: Token) -> Token:
        """After a 401 with ``rejected``: adopt a newer shared token, or log in if ours is still the shared one.

        A 401 on a token younger than ``MIN_RELOGIN_INTERVAL_SECONDS`` is a take-over (another
        client logged in as this user): counted, then the next login waits until the last one is
        that old (plus jitter); the ``max_takeovers``-th take-over raises AbsorbTokenContentionError.
        """
        with self._thread_lock:
            self._raise_if_contended()
            if self._memory is not None and self._memory.value != rejected.value and self._memory.is_fresh():
                return self._memory
            self._mark_dead(rejected)
            shared = self._read_shared(rejected)
            if shared is not None:
                return self._adopt(shared)  # another process of this host already replaced it
            if time.time() - rejected.issued_at < MIN_RELOGIN_INTERVAL_SECONDS:
                self._record_takeover(rejected)
                shared = self._wait_before_relogin(rejected)
                if shared is not None:
                    return self._adopt(shared)
            return self._obtain(stale=rejected)

    # --- take-overs -----------------------------------------------------------------------------

    def _contention_error(self) -> AbsorbTokenContentionError:
        return AbsorbTokenContentionError(self.username, self._contention_count, TAKEOVER_WINDOW_SECONDS)

    def _raise_if_contended(self) -> None:
        if self._contended_until > time.time():
            raise self._contention_error()
        self._contended_until = 0.0

    def _declare_contention(self, count: int, since: float) -> AbsorbTokenContentionError:
        self._contention_count = count
        self._contended_until = since + TAKEOVER_WINDOW_SECONDS
        self._memory = None
        error = self._contention_error()
        log.error("Absorb: %s", error)
        return error

    def _mark_dead(self, rejected: Token) -> None:
        if self._memory is not None and self._memory.value == rejected.value:
            self._memory = None  # other threads wait on the lock instead of collecting 401s
        if rejected.value not in self._dead:
            self._dead = [*self._dead[-7:], rejected.value]

    def _load_takeovers(self, now: float) -> list[list[float]]:
        """``[issued_at of the replaced token, seen at]`` of this host's take-overs within the window."""
        try:
            events = json.loads(self._takeover_file.read_text())
            events = [[float(issued), float(seen)] for issued, seen in events]
        except (OSError, ValueError, TypeError):
            return []
        return [event for event in events if now - event[1] < TAKEOVER_WINDOW_SECONDS]

    def _save_takeovers(self, events: list[list[float]]) -> None:
        tmp = self._takeover_file.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(events, handle)
            os.replace(tmp, self._takeover_file)
        except OSError as exc:
            log.warning("Absorb take-over record not writable: %s", type(exc).__name__)

    def _record_takeover(self, rejected: Token) -> None:
        """Counts a take-over once per replaced token for the whole host; raises at the limit."""
        now = time.time()
        with self._host_lock:
            events = self._load_takeovers(now)
            if not any(abs(issued - rejected.issued_at) < 1e-6 for issued, _ in events):
                events.append([rejected.issued_at, now])
                self._save_takeovers(events)
                self.takeover_count += 1
        log.warning(
            "Absorb: token %s was replaced %.1fs after login: another client logged in as '%s' "
            "(take-over %d of %d allowed within %.0fs)",
            rejected.fingerprint,
            now - rejected.issued_at,
            self.username,
            len(events),
            self.max_takeovers,
            TAKEOVER_WINDOW_SECONDS,
        )
        if len(events) >= self.max_takeovers:
            raise self._declare_contention(len(events), min(seen for _, seen in events))

    def _check_host_contention(self) -> None:
        """Before any login: a host that declared contention (in any process) does not log in again."""
        now = time.time()
        events = self._load_takeovers(now)
        if len(events) >= self.max_takeovers:
            raise self._declare_contention(len(events), min(seen for _, seen in events))

    def _wait_before_relogin(self, rejected: Token) -> Token | None:
        """Sleeps until the host's last login is old enough (plus jitter); a token stored meanwhile wins."""
        until = rejected.issued_at + MIN_RELOGIN_INTERVAL_SECONDS + random.uniform(0, TAKEOVER_JITTER_SECONDS)
        while (remaining := until - time.time()) > 0:
            time.sleep(min(TAKEOVER_POLL_SECONDS, remaining))
            shared = self._read_shared(rejected)
            if shared is not None:
                return shared
        return None

    def _read_shared(self, stale: Token | None) -> Token | None:
        """The newest fresh token in any store (not ``stale``); copied to stores that lack it."""
        found: list[tuple[SharedStore, Token | None]] = []
        for store in self.stores:
            try:
                found.append((store, self._cipher.open(store.read())))
            except Exception as exc:  # a store we cannot reach must not stop the others
                log.warning("Absorb token store %s unreadable: %s", store.kind, type(exc).__name__)
        candidates = [
            token
            for _, token in found
            if token is not None
            and token.is_fresh()
            and (stale is None or token.value != stale.value)
            and token.value not in self._dead
        ]
        if not candidates:
            return None
        newest = max(candidates, key=lambda token: token.issued_at)
        for store, token in found:
            if token is None or token.issued_at < newest.issued_at:
                self._write(store, newest)
        return newest

    def _write(self, store: SharedStore, token: Token) -> None:
        try:
            store.write(self._cipher.seal(token))
        except Exception as exc:
            log.warning("Absorb token store %s not writable: %s", store.kind, type(exc).__name__)

    def _obtain(self, stale: Token | None) -> Token:
        shared = self._read_shared(stale)
        if shared is not None:
            return self._adopt(shared)
        with self._host_lock:
            shared = self._read_shared(stale)
            if shared is not None:
                return self._adopt(shared)
            return self._login_with_lease(stale)

    def _try_leases(self) -> bool:
        return all(store.try_lease(self._owner) for store in self.stores)

    def _login_with_lease(self, stale: Token | None) -> Token:
        deadline = time.monotonic() + LEASE_SECONDS
        while not self._try_leases():
            time.sleep(0.5)
            shared = self._read_shared(stale)
            if shared is not None:
                return self._adopt(shared)
            if time.monotonic() > deadline:
                break  # the lease holder died; log in ourselves
        try:
            self._check_host_contention()
            token = self._login()
            self.login_count += 1
            self.login_times.append(token.issued_at)
            for store in self.stores:
                self._write(store, token)
            kinds = "+".join(store.kind for store in self.stores)
            log.info("Absorb: authenticated; shared token %s stored in %s", token.fingerprint, kinds)
            return self._adopt(token)
        finally:
            for store in self.stores:
                store.release_lease(self._owner)

    def _adopt(self, token: Token) -> Token:
        self._memory = token
        return token


_MANAGERS: dict[str, TokenManager] = {}
_MANAGERS_LOCK = threading.Lock()


def shared_manager(
    identity: str,
    key_material: bytes,
    login: Callable[[], Token],
    *,
    username: str = "",
    max_takeovers: int = DEFAULT_MAX_TAKEOVERS,
) -> TokenManager:
    """One manager per API identity per process, so every hook of the process shares memory too."""
    key = f"{identity}:{hashlib.sha256(key_material).hexdigest()[:16]}"
    with _MANAGERS_LOCK:
        manager = _MANAGERS.get(key)
        if manager is None:
            manager = _MANAGERS[key] = TokenManager(
                identity, key_material, login, username=username, max_takeovers=max_takeovers
            )
        else:
            manager._login = login  # the newest hook's session does the next login
            manager.username, manager.max_takeovers = username or manager.username, max_takeovers
        return manager
