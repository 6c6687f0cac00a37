"""Run artifacts people read: a small HTML page per run and the compliance report with charts.

Everything renders offline (no CDN, no JS): charts are matplotlib PNGs embedded as base64.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:72rem}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left} th{background:#f3f3f3}
.ok{color:#11690c}.bad{color:#b00020} .muted{color:#666;font-size:.85rem} img{max-width:100%}
"""


def html_page(title: str, sections: list[str]) -> str:
    """A complete, self-contained HTML document."""
    body = "\n".join(sections)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>"
    )


def summary_table(summary: Mapping[str, Any]) -> str:
    """Key/value table of a JSON-safe summary; nested mappings become nested tables."""
    rows = []
    for key, value in summary.items():
        if isinstance(value, Mapping):
            shown = summary_table(value) if value else '<span class="muted">none</span>'
        elif isinstance(value, list | tuple):
            shown = html.escape(", ".join(str(v) for v in value)) or '<span class="muted">none</span>'
        else:
            shown = html.escape(str(value))
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{shown}</td></tr>")
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
    """The per-run page of the sync / unenrollment: headline figures, then each table."""
    sections = [f'<p class="muted">generated {datetime.now().astimezone().isoformat(timespec="seconds")}</p>']
    sections.append("<h2>Summary</h2>" + summary_table(summary))
    for name, frame in tables.items():
        sections.append(f"<h2>{html.escape(name)}</h2>" + frame_table(frame))
    return html_page(title, sections)


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
