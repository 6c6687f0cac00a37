"""The FastAPI app the API server mounts at ``/absorb-reports``: run reports and files, read-only.

Routes (``{dag_id}``: one of the three Absorb DAGs; ``{run_id}``: the Airflow run id):

- ``GET /runs/{dag_id}/{run_id}/`` the run's report (``report.html``; ``compliance_report.html``
  for the export), or a page listing the run's files when it has no report (404);
- ``GET /runs/{dag_id}/{run_id}/files`` the run's files present in its folder;
- ``GET /runs/{dag_id}/{run_id}/{name}`` one of them (``?download=1``: as an attachment).

Every route needs the caller to be allowed to read the DAG's runs (Airflow's auth manager: the
UI's session cookie or a Bearer token), like the REST API. HTML is served with a sandboxing
Content-Security-Policy: a report never runs as the Airflow origin.
"""

from __future__ import annotations

import html
from collections.abc import Iterator

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from .files import KNOWN_FILES, Refused, RunFiles

HTML_POLICY = (
    "sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
    "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; font-src data:"
)
_CHUNK = 1 << 16


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    text = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}"
        "table{border-collapse:collapse}td{padding:.25rem .75rem;border-bottom:1px solid #ddd}"
        "</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(text, status_code=status, headers=_headers("x.html"))


def _headers(name: str) -> dict[str, str]:
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
    if name.endswith(".html"):
        headers["Content-Security-Policy"] = HTML_POLICY
    return headers


def _stream(path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _file_response(run: RunFiles, name: str, download: bool = False) -> Response:
    path = run.file(name)
    if not path.is_file():
        raise Refused(404, f"{name} is not in the folder of run {run.run_id} (yet)")
    media_type, _ = KNOWN_FILES[name]
    headers = _headers(name)
    if name.endswith(".csv") and not download:
        media_type = "text/plain; charset=utf-8"  # readable in the UI's frame, which blocks downloads
    if download:
        headers["Content-Disposition"] = f'attachment; filename="{run.dag_id}__{run.run_id}__{name}"'
    return StreamingResponse(_stream(path), media_type=media_type, headers=headers)


def _file_list(run: RunFiles, names: list[str]) -> str:
    if not names:
        return "<p>No files yet: the run has not written any of its reports.</p>"
    rows = "".join(
        f"<tr><td><a href='{html.escape(n)}'>{html.escape(n)}</a></td>"
        f"<td>{html.escape(KNOWN_FILES[n][1])}</td>"
        f"<td><a href='{html.escape(n)}?download=1'>download</a></td></tr>"
        for n in names
    )
    return f"<table>{rows}</table>"


def _run(dag_id: str, run_id: str) -> RunFiles:
    return RunFiles.of(dag_id, run_id)


def create_app() -> FastAPI:
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    app = FastAPI(
        title="Absorb run reports",
        description="Reports and files of the Absorb DAGs' runs, read from their run folders.",
        dependencies=[Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.RUN))],
    )

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> HTMLResponse:
        return _page("Not available", f"<p>{html.escape(error.message)}</p>", error.status)

    @app.get("/runs/{dag_id}/{run_id}/", response_class=HTMLResponse)
    def report(dag_id: str, run_id: str) -> Response:
        run = _run(dag_id, run_id)
        if run.file(run.report_name).is_file():
            return _file_response(run, run.report_name)
        body = (
            f"<p>Run <b>{html.escape(run_id)}</b> of <b>{html.escape(dag_id)}</b> has no "
            f"{html.escape(run.report_name)}: it is still running, stopped before writing it, or was "
            "triggered with its own <code>output_root</code>.</p>" + _file_list(run, run.present())
        )
        return _page("No report for this run yet", body, 404)

    @app.get("/runs/{dag_id}/{run_id}/files", response_class=HTMLResponse)
    def files(dag_id: str, run_id: str) -> Response:
        run = _run(dag_id, run_id)
        return _page(f"Files of {run_id}", _file_list(run, run.present()))

    @app.get("/runs/{dag_id}/{run_id}/{name}")
    def run_file(dag_id: str, run_id: str, name: str, download: bool = False) -> Response:
        return _file_response(_run(dag_id, run_id), name, download)

    return app


class LazyApp:
    """An ASGI app that builds the real one on its first request.

    The plugin module is imported by every Airflow component that loads plugins (scheduler,
    workers...); only the API server ever calls the app, so the FastAPI/auth imports wait for it.
    """

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    async def __call__(self, scope, receive, send) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return "absorb_reports.app:create_app()"
