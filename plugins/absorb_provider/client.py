"""The transport under the hook: pooled session, auth headers, retries, rate limit, paging.

Kept apart from the hook so that the operation methods read as the API reference does.
"""

from __future__ import annotations

import io
import logging
import queue
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from absorb_provider.exceptions import (
    AbsorbAlreadyEnrolledError,
    AbsorbApiError,
    AbsorbAuthError,
    AbsorbIncompleteReadError,
    AbsorbNotFoundError,
    AbsorbRetryExhaustedError,
)
from absorb_provider.rate_limit import RateLimiter
from absorb_provider.settings import AbsorbSettings
from absorb_provider.token_store import Token, TokenManager, shared_manager

log = logging.getLogger(__name__)

API_VERSION = "2"
MAX_PAGE_SIZE = 1000
MAX_PAGE_INDEX = 65535
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
ALREADY_ENROLLED_HINTS = ("already enrolled", "already has an active enrollment", "existing enrollment")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts and in total time."""

    max_attempts: int = 8
    base_delay: float = 0.25
    max_delay: float = 20.0
    total_budget: float = 180.0
    min_delay: float = 0.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return max(self.min_delay, random.uniform(0, ceiling))


@dataclass
class ApiResponse:
    """A decoded answer plus whether an earlier attempt of the same call may have reached Absorb."""

    status: int
    data: Any
    ambiguous_retry: bool = False


def _retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def api_error_from(response: requests.Response, method: str, path: str) -> AbsorbApiError:
    """Builds the typed error from Absorb's error body (or the raw text when it is not JSON)."""
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        fields = {
            "message": body.get("message") or body.get("Message") or body.get("detail"),
            "validations": body.get("validations") or [],
            "code": body.get("code"),
            "term": body.get("term"),
            "meta": body.get("_meta") or {},
        }
        if not isinstance(fields["validations"], list):
            fields["validations"] = [str(fields["validations"])]
        fields["validations"] = [str(v) for v in fields["validations"]]
        if not isinstance(fields["message"], str):
            fields["message"] = None if fields["message"] is None else str(fields["message"])
    else:
        text = (response.text or "").strip()[:500]
        fields = {
            "message": text or response.reason,
            "validations": [],
            "code": None,
            "term": None,
            "meta": {},
        }
    error_class = AbsorbApiError
    if response.status_code == 404:
        error_class = AbsorbNotFoundError
    probe = AbsorbApiError(response.status_code, **fields)
    if response.status_code in (400, 409, 422) and probe.mentions(*ALREADY_ENROLLED_HINTS):
        error_class = AbsorbAlreadyEnrolledError
    return error_class(response.status_code, **fields, method=method, path=path)


class AbsorbClient:
    """Speaks HTTP to one Absorb gateway as one API user; safe to share between threads."""

    def __init__(self, settings: AbsorbSettings, retry: RetryPolicy | None = None) -> None:
        self.settings = settings
        self.retry = retry or RetryPolicy()
        self.limiter = RateLimiter(settings.requests_per_second)
        self.session = self._new_session(settings.max_concurrency)
        self.tokens: TokenManager = shared_manager(
            settings.identity,
            settings.key_material(),
            self.login,
            username=settings.username,
            max_takeovers=settings.max_token_takeovers,
        )
        self._stats_lock = threading.Lock()
        self.request_count = 0
        self.retry_count = 0

    @staticmethod
    def _new_session(concurrency: int) -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(10, concurrency * 2), max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.update({"x-api-version": API_VERSION, "Accept": "application/json"})
        return session

    def close(self) -> None:
        self.session.close()

    @property
    def _timeout(self) -> tuple[float, float]:
        return (min(10.0, self.settings.timeout), self.settings.timeout)

    def _url(self, path: str) -> str:
        return f"{self.settings.base_url}/{path.lstrip('/')}"

    # --- authentication -------------------------------------------------------------------------

    def login(self) -> Token:
        """``POST /authenticate``; raises AbsorbAuthError with Absorb's message, never the credentials."""
        body = {
            "username": self.settings.username,
            "password": self.settings.password,
            "privateKey": self.settings.private_key,
        }
        response = self._send_with_retries(
            "POST", "authenticate", json=body, headers={"x-api-key": self.settings.private_key}
        )
        if response.status_code != 200:
            error = api_error_from(response, "POST", "/authenticate")
            raise AbsorbAuthError(
                f"Absorb refused authentication for user '{self.settings.username}' "
                f"(HTTP {response.status_code}: {error.message or 'no message'})",
                status=response.status_code,
            )
        try:
            raw = response.json()
        except ValueError:
            raw = response.text
        value = raw if isinstance(raw, str) else (raw or {}).get("token", "") if isinstance(raw, dict) else ""
        value = value.strip().strip('"')
        if not value:
            raise AbsorbAuthError(
                "Absorb answered /authenticate without a token", status=response.status_code
            )
        _mask(value)
        return Token(value=value, expires_at=time.time() + self.settings.token_lifetime)

    # --- requests -------------------------------------------------------------------------------

    def _send_with_retries(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        json: Any = None,
        headers: dict[str, str],
        state: dict | None = None,
    ) -> requests.Response:
        """One logical call: retries 429/5xx/timeouts/drops with backoff; returns the final response."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            self.limiter.acquire()
            problem: str
            wait: float | None = None
            try:
                response = self.session.request(
                    method, self._url(path), params=params, json=json, headers=headers, timeout=self._timeout
                )
                with self._stats_lock:
                    self.request_count += 1
                if response.status_code not in RETRY_STATUSES:
                    return response
                problem = f"HTTP {response.status_code}"
                wait = _retry_after_seconds(response) if response.status_code == 429 else None
                if response.status_code != 429 and state is not None:
                    state["ambiguous"] = True  # a 5xx may have applied the write
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"{type(exc).__name__} ({_reason(exc)})"
                if state is not None:
                    state["ambiguous"] = True
                    if isinstance(exc, requests.Timeout):
                        state["timed_out"] = True  # it may still be in flight at Absorb
            if state is not None and state["ambiguous"] and state.get("no_ambiguous_retry"):
                raise AbsorbRetryExhaustedError(
                    method,
                    "/" + path.lstrip("/"),
                    attempt,
                    f"{problem}; not retried: it may have been applied",
                )
            elapsed = time.monotonic() - started
            delay = wait if wait is not None else self.retry.delay(attempt)
            if attempt >= self.retry.max_attempts or elapsed + delay > self.retry.total_budget:
                raise AbsorbRetryExhaustedError(method, "/" + path.lstrip("/"), attempt, problem)
            with self._stats_lock:
                self.retry_count += 1
            log.warning(
                "Absorb %s /%s: %s, retry %d in %.2fs", method, path.lstrip("/"), problem, attempt, delay
            )
            time.sleep(delay)

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        json: Any = None,
        state: dict | None = None,
        raw: bool = False,
    ) -> ApiResponse:
        """An authenticated call; on 401 adopts or obtains a new shared token, then retries.

        ``state["ambiguous"]`` becomes True when an earlier attempt may have reached Absorb.
        """
        state = state if state is not None else {}
        state.setdefault("ambiguous", False)
        params = {k: v for k, v in (params or {}).items() if v is not None}
        token = self.tokens.current()
        # Every 401 goes to the token manager: it adopts a newer token, refreshes an expired one,
        # or - for a token replaced moments after login - waits, and at its take-over limit raises
        # AbsorbTokenContentionError. The bound here only guards against a manager that never does.
        auth_attempts = max(3, self.tokens.max_takeovers + 2)
        for auth_attempt in range(auth_attempts):
            headers = {"x-api-key": self.settings.private_key, "Authorization": f"Bearer {token.value}"}
            response = self._send_with_retries(
                method, path, params=params, json=json, headers=headers, state=state
            )
            if response.status_code != 401:
                break
            if auth_attempt == auth_attempts - 1:
                raise AbsorbAuthError(
                    f"{method} /{path.lstrip('/')}: Absorb kept answering 401 after re-login", 401
                )
            token = self.tokens.replace_rejected(token)
        if response.status_code >= 400:
            raise api_error_from(response, method, "/" + path.lstrip("/"))
        data = response.content if raw else _decode(response)
        return ApiResponse(response.status_code, data, state["ambiguous"])

    def get(self, path: str, params: dict | None = None) -> Any:
        return self.call("GET", path, params=params).data

    def post(self, path: str, *, params: dict | None = None, json: Any = None) -> Any:
        return self.call("POST", path, params=params, json=json).data

    def put(self, path: str, *, json: Any = None) -> Any:
        return self.call("PUT", path, json=json).data

    # --- paging ---------------------------------------------------------------------------------

    def paginate(
        self,
        path: str,
        key: str,
        params: dict | None = None,
        page_size: int = MAX_PAGE_SIZE,
        prefetch: bool = False,
        row_model: type | None = None,
    ) -> Iterator[dict]:
        """Streams rows page by page (``_offset`` is a page index); checks the total at the end.

        Raises AbsorbIncompleteReadError when the rows streamed differ from the first page's
        ``totalItems``, so a caller never acts on a partial read. ``prefetch`` fetches the next
        page in a background thread while the caller works on the current one (at most two
        pages in memory). ``row_model`` (one of ``absorb_provider.schemas``): each page is
        validated against it, AbsorbSchemaError when a relied-on field is missing or mistyped.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
        pages = self._pages(path, key, dict(params or {}), page_size, row_model)
        if prefetch:
            pages = read_ahead(pages)
        expected: int | None = None
        received = 0
        for rows, total in pages:
            if expected is None:
                expected = total
            received += len(rows)
            yield from rows
        if expected is not None and received != expected:
            raise AbsorbIncompleteReadError("/" + path.lstrip("/"), expected, received)

    def paginate_tables(
        self,
        path: str,
        key: str,
        row_schema: Any,
        params: dict | None = None,
        page_size: int = MAX_PAGE_SIZE,
        prefetch: bool = True,
        row_model: type | None = None,
        concurrency: int = 1,
    ) -> Iterator[Any]:
        """Like ``paginate`` but yields one ``pyarrow.Table`` per page, parsed in C++ (no dicts).

        Columns follow ``row_schema``; fields Absorb adds are ignored, missing ones are null.
        Same page walk and the same short-read check as ``paginate``. With ``row_model``, a page
        with a null in a field the model says is never null (the ids: a missing or renamed
        field reads as all nulls here) raises AbsorbSchemaError. ``concurrency`` > 1 requests up
        to that many of the pages the first page's ``totalItems`` promises at once (still
        yielded in order, within the rate limit): a long listing is not one round trip after
        another.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        pages = self._table_pages(
            path, key, row_schema, dict(params or {}), page_size, row_model, concurrency
        )
        if prefetch:
            pages = read_ahead(pages)
        expected: int | None = None
        received = 0
        for table, total in pages:
            if expected is None:
                expected = total
            received += table.num_rows
            yield table
        if expected is not None and received != expected:
            raise AbsorbIncompleteReadError("/" + path.lstrip("/"), expected, received)

    def _table_pages(
        self,
        path: str,
        key: str,
        row_schema: Any,
        base: dict,
        page_size: int,
        row_model: type | None = None,
        concurrency: int = 1,
    ) -> Iterator[tuple[Any, int | None]]:
        def fetch(page_index: int) -> tuple[Any, int | None]:
            params = {**base, "_limit": page_size, "_offset": page_index}
            content = self.call("GET", path, params=params, raw=True).data
            table, total = _page_table(content, key, row_schema, path)
            if row_model is not None:
                _check_page_shape(table, content, row_model, path)
            return table, total

        page_index = 0
        table, total = fetch(page_index)
        yield table, total
        if table.num_rows < page_size:
            return
        page_index += 1
        promised = min(-(-total // page_size), MAX_PAGE_INDEX + 1) if total else 0
        if concurrency > 1 and promised > page_index:
            for table, _ in _ordered(fetch, range(page_index, promised), concurrency):
                yield table, total
                page_index += 1
                if table.num_rows < page_size:
                    return
        for index in range(page_index, MAX_PAGE_INDEX + 1):  # beyond what the total promised
            table, total = fetch(index)
            yield table, total
            if table.num_rows < page_size:
                return
        raise AbsorbApiError(
            422, f"/{path.lstrip('/')}: more than {MAX_PAGE_INDEX + 1} pages; narrow the filter"
        )

    def _pages(
        self, path: str, key: str, base: dict, page_size: int, row_model: type | None = None
    ) -> Iterator[tuple[list[dict], int | None]]:
        for page_index in range(MAX_PAGE_INDEX + 1):
            rows, total = _page_rows(
                self.get(path, {**base, "_limit": page_size, "_offset": page_index}), key, path
            )
            if row_model is not None:
                from absorb_provider.schemas import validate_rows

                validate_rows(row_model, rows, "/" + path.lstrip("/"))
            yield rows, total
            if len(rows) < page_size:
                return
        raise AbsorbApiError(
            422, f"/{path.lstrip('/')}: more than {MAX_PAGE_INDEX + 1} pages; narrow the filter"
        )


_END = object()


def _ordered(fetch: Any, indexes: range, concurrency: int) -> Iterator[Any]:
    """``fetch(i)`` for every index, up to ``concurrency`` at once in threads, yielded in index
    order. A failure is raised at its turn; stopping early cancels what has not started and waits
    for what has (no request outlives the read)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor
    from itertools import islice

    upcoming = iter(indexes)
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="absorb-page")
    try:
        pending = deque(pool.submit(fetch, index) for index in islice(upcoming, concurrency))
        while pending:
            result = pending.popleft().result()
            following = next(upcoming, None)
            if following is not None:
                pending.append(pool.submit(fetch, following))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def read_ahead(pages: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """Runs ``pages`` in a background thread, ``depth`` items ahead of the consumer."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for page in pages:
                if not put((None, page)):
                    return
            put((None, _END))
        except BaseException as exc:  # handed to the consumer, raised there
            put((exc, None))

    threading.Thread(target=produce, name="absorb-read-ahead", daemon=True).start()
    try:
        while True:
            error, page = buffer.get()
            if error is not None:
                raise error
            if page is _END:
                return
            yield page
    finally:
        stop.set()


def _page_table(content: bytes, key: str, row_schema: Any, path: str) -> tuple[Any, int | None]:
    """One page envelope parsed by pyarrow's JSON reader into a table of rows and the total."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    envelope = pa.schema([("totalItems", pa.int64()), (key, pa.list_(pa.struct(list(row_schema))))])
    options = pj.ParseOptions(
        explicit_schema=envelope, unexpected_field_behavior="ignore", newlines_in_values=True
    )
    try:
        page = pj.read_json(
            io.BytesIO(content),
            parse_options=options,
            read_options=pj.ReadOptions(block_size=len(content) + 1),
        )
    except pa.ArrowInvalid as exc:
        raise AbsorbApiError(200, f"unreadable page from /{path.lstrip('/')}: {str(exc)[:200]}") from None
    if page.num_rows != 1 or page.column(key).null_count:
        raise AbsorbApiError(200, f"unexpected page shape from /{path.lstrip('/')}: no '{key}' list")
    rows = pc.list_flatten(page.column(key))
    table = pa.Table.from_batches(
        [pa.RecordBatch.from_struct_array(chunk) for chunk in rows.chunks], schema=pa.schema(list(row_schema))
    )
    return table, page.column("totalItems")[0].as_py()


def _check_page_shape(table: Any, content: bytes, row_model: type, path: str) -> None:
    """The ids may not be null, and every relied-on field must be in the page: a columnar read
    cannot tell an absent field from a null one, so a column null in every row is looked up as a
    key in the page's bytes (a renamed or dropped field is absent from all of them)."""
    from absorb_provider.schemas import AbsorbSchemaError, never_null, relied_on

    problems = [
        f"field '{name}' is missing or null in {table.column(name).null_count} of {table.num_rows} rows"
        for name in never_null(row_model)
        if name in table.column_names and table.column(name).null_count
    ]
    problems += [
        f"field '{name}' is missing from every row"
        for name in relied_on(row_model)
        if name in table.column_names
        and table.num_rows
        and table.column(name).null_count == table.num_rows
        and f'"{name}"'.encode() not in content
    ]
    if problems:
        raise AbsorbSchemaError("/" + path.lstrip("/"), problems)


def _page_rows(page: Any, key: str, path: str) -> tuple[list[dict], int | None]:
    if isinstance(page, list):  # a gateway answering with a bare array: no total to check
        return page, None
    if not isinstance(page, dict) or not isinstance(page.get(key), list):
        raise AbsorbApiError(200, f"unexpected page shape from /{path.lstrip('/')}: no '{key}' list")
    total = page.get("totalItems")
    return page[key], int(total) if total is not None else None


def _reason(exc: BaseException) -> str:
    """The innermost cause of a transport error (never includes headers or bodies)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return f"{type(exc).__name__}: {str(exc)[:160]}"


def _decode(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _mask(secret: str) -> None:
    """Registers a secret with Airflow's masker (task process and supervisor)."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover
        return
    mask_secret(secret)
