"""Run reports people read: templated HTML (Jinja2) for the sync, the unenrollment and the export.

:mod:`absorb_sync.report_data` turns a run's summary and files into headlines, cards, named people
and charts; the templates in ``absorb_sync/templates/`` lay them out as one self-contained,
print-friendly page (inline CSS, inline SVG charts, no JS, nothing fetched).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import ObjectStoragePath

TEMPLATES = Path(__file__).resolve().parent / "templates"


@cache
def environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def render(template: str, context: Mapping[str, Any]) -> str:
    """One of ``templates/*.html.j2`` with ``context`` (values escaped; charts are trusted SVG)."""
    return environment().get_template(template).render(**context)


def html_page(title: str, sections: list[str]) -> str:
    """A complete, self-contained HTML document around ready-made (trusted) HTML sections."""
    body = "\n".join(sections)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"</head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>"
    )


def summary_table(summary: Mapping[str, Any]) -> str:
    """Key/value table of a JSON-safe summary, with readable labels; nested mappings nest."""
    from absorb_sync.report_data import human, label

    rows = []
    for key, value in summary.items():
        if isinstance(value, Mapping):
            shown = summary_table(value) if value else '<span class="muted">none</span>'
        else:
            shown = html.escape(human(value))
        rows.append(f"<tr><th>{html.escape(label(key))}</th><td>{shown}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def frame_table(frame: pd.DataFrame | None, limit: int = 200) -> str:
    """An HTML table of the first ``limit`` rows (the full data lives in the CSV next to it)."""
    if frame is None or frame.empty:
        return '<p class="muted">none</p>'
    note = f'<p class="muted">first {limit} of {len(frame)} rows</p>' if len(frame) > limit else ""
    return note + frame.head(limit).to_html(index=False, na_rep="", border=0, escape=True)


def write_html(target: Any, page: str) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as handle:
        handle.write(page)
    return str(target)


def run_report(title: str, summary: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None]) -> str:
    """A readable page for any run summary: headline (outcome, held), approval, numbers as cards,
    the other values labelled, tables without GUID columns. The sync and the unenrollment have
    their own pages (:func:`sync_report`, :func:`unenrollment_report`)."""
    from absorb_sync.report_data import generic_context

    return render("generic.html.j2", {**generic_context(title, summary, tables), "dry_run": False})


# ---------------------------------------------------------------- run folders


def _csv(folder: Any, name: str) -> pd.DataFrame | None:
    import pandas as pd

    target = folder / name
    if not target.exists():
        return None
    with target.open("r", encoding="utf-8") as handle:
        try:
            return pd.read_csv(handle, dtype=str)
        except pd.errors.EmptyDataError:
            return None


def _json(folder: Any, name: str) -> Any:
    import json

    target = folder / name
    if not target.exists():
        return None
    with target.open("r", encoding="utf-8") as handle:
        return json.load(handle)


def _parquet(folder: Any, name: str, columns: list[str]) -> pd.DataFrame | None:
    import pyarrow.parquet as pq

    target = folder / name
    if not target.exists():
        return None
    with target.open("rb") as handle:
        schema = pq.read_schema(handle)
        handle.seek(0)
        wanted = [c for c in columns if c in schema.names]
        return pq.read_table(handle, columns=wanted).to_pandas()


def sync_report(
    folder: ObjectStoragePath,
    summary: Mapping[str, Any],
    lines: pd.DataFrame,
    mismatches: pd.DataFrame | None,
    *,
    now: datetime | None = None,
) -> str:
    """The sync's page from its run folder: people named from the accepted feed, courses from
    ``rule_courses.json``, rejects, missing people and Absorb's answers from the CSVs."""
    from absorb_sync.report_data import People, sync_context

    people = People.from_frames(
        _parquet(folder, "accepted.parquet", ["employee_id", "first_name", "last_name", "department"]),
        _csv(folder, "rejects.csv"),
        users=_parquet(folder, "users.parquet", ["employee_id", "user_id"]),
    )
    context = sync_context(
        summary=summary,
        lines=lines,
        course_names=_json(folder, "rule_courses.json") or {},
        people=people,
        meta=_json(folder, "plan_meta.json") or {},
        outcomes=_csv(folder, "outcomes.csv"),
        mismatches=mismatches,
        rejects=_csv(folder, "rejects.csv"),
        missing_people=_csv(folder, "missing_people.csv"),
        now=now,
        user_lines=_csv(folder, "user_plan.csv"),
        user_notes=_csv(folder, "user_notes.csv"),
        user_outcomes=_csv(folder, "user_outcomes.csv"),
    )
    return render("sync.html.j2", context)


def unenrollment_report(
    folder: ObjectStoragePath,
    summary: Mapping[str, Any],
    targets: pd.DataFrame,
    still_there: pd.DataFrame | None,
    *,
    now: datetime | None = None,
) -> str:
    """The unenrollment's page: people named from ``targets.csv`` (names read from Absorb)."""
    from absorb_sync.report_data import unenrollment_context

    context = unenrollment_context(
        summary=summary,
        targets=targets,
        still_there=still_there,
        outcomes=_csv(folder, "outcomes.csv"),
        skipped=_csv(folder, "skipped.csv"),
        unresolved=_csv(folder, "unresolved.csv"),
        now=now,
    )
    return render("unenrollment.html.j2", context)


# ---------------------------------------------------------------- the export


def compliance_tables(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Completion rate and overdue counts by course and by department (active enrollments only).

    The export itself aggregates batch by batch (:mod:`absorb_sync.export_report`); this is the
    same for a frame in hand."""
    from absorb_sync.export_report import ComplianceAggregates

    return ComplianceAggregates.of(frame).tables()


def compliance_report(frame: pd.DataFrame, *, title: str, scope: str, now: datetime) -> str:
    """HTML compliance report: overall figures, charts and tables by course and department."""
    from absorb_sync.export_report import ComplianceAggregates, compliance_html

    return compliance_html(ComplianceAggregates.of(frame), title=title, scope=scope, now=now)
