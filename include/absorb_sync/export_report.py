"""The completion export's compliance report, built from aggregates instead of rows.

:class:`ComplianceAggregates` is filled batch by batch while the export is extracted (totals,
and enrollments / completed / overdue of the active enrollments by course and by department)
and saved as a small JSON file next to the export; the report task reads that file, never the
rows. :func:`compliance_html` renders the page: overall figures, then a chart (inline SVG, no
plotting library) and a table per grouping.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

GROUPINGS = (("course", "course_name"), ("department", "department"))
UNKNOWN = "(unknown)"


class ComplianceAggregates:
    """Exact counts of an export, accumulated over Arrow batches (memory: one entry per group)."""

    def __init__(self) -> None:
        self.rows = 0
        self.completed = 0
        self.overdue = 0
        self.active = 0
        self.active_completed = 0
        self.active_overdue = 0
        # label -> group -> [enrollments, completed, overdue] over active enrollments
        self.groups: dict[str, dict[str, list[int]]] = {label: {} for label, _ in GROUPINGS}

    @classmethod
    def of(cls, data: Any) -> ComplianceAggregates:
        """Aggregates of a pandas frame, an Arrow table or an iterable of Arrow batches."""
        import pyarrow as pa

        aggregates = cls()
        if hasattr(data, "iloc"):  # pandas
            data = pa.Table.from_pandas(
                data[["is_active", "is_completed", "is_overdue", "course_name", "department"]]
            )
        for batch in [data] if isinstance(data, pa.Table | pa.RecordBatch) else data:
            aggregates.add(batch)
        return aggregates

    def add(self, batch: Any) -> None:
        """Count one batch (an Arrow table or record batch in the export columns)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        completed = pc.fill_null(pc.cast(table.column("is_completed"), pa.bool_()), False)
        overdue = pc.fill_null(pc.cast(table.column("is_overdue"), pa.bool_()), False)
        active = pc.fill_null(pc.cast(table.column("is_active"), pa.bool_()), True)
        self.rows += table.num_rows
        self.completed += _true_count(completed)
        self.overdue += _true_count(overdue)
        self.active += _true_count(active)
        flags = pa.table(
            {"completed": pc.cast(completed, pa.int64()), "overdue": pc.cast(overdue, pa.int64())}
        )
        flags = flags.filter(active)
        self.active_completed += int(pc.sum(flags.column("completed")).as_py() or 0)
        self.active_overdue += int(pc.sum(flags.column("overdue")).as_py() or 0)
        for label, column in GROUPINGS:
            keys = pc.fill_null(pc.cast(table.column(column), pa.string()), UNKNOWN).filter(active)
            grouped = (
                flags.append_column("group", keys)
                .group_by("group", use_threads=False)
                .aggregate([([], "count_all"), ("completed", "sum"), ("overdue", "sum")])
            )
            counts = self.groups[label]
            for group, count, done, late in zip(
                *(
                    grouped.column(c).to_pylist()
                    for c in ("group", "count_all", "completed_sum", "overdue_sum")
                ),
                strict=True,
            ):
                entry = counts.setdefault(group, [0, 0, 0])
                entry[0] += count
                entry[1] += done or 0
                entry[2] += late or 0

    def to_json(self) -> dict:
        return {
            "rows": self.rows,
            "completed": self.completed,
            "overdue": self.overdue,
            "active": self.active,
            "active_completed": self.active_completed,
            "active_overdue": self.active_overdue,
            "groups": {label: {k: list(v) for k, v in sorted(g.items())} for label, g in self.groups.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> ComplianceAggregates:
        aggregates = cls()
        for name in ("rows", "completed", "overdue", "active", "active_completed", "active_overdue"):
            setattr(aggregates, name, int(data[name]))
        aggregates.groups = {
            label: {k: list(v) for k, v in groups.items()} for label, groups in data["groups"].items()
        }
        return aggregates

    def tables(self) -> dict[str, pd.DataFrame]:
        """Completion rate and overdue counts by course and by department (active enrollments only)."""
        import pandas as pd

        tables = {}
        for label, _ in GROUPINGS:
            groups = sorted(self.groups[label].items())
            table = pd.DataFrame(
                {
                    label: pd.Series([g for g, _ in groups], dtype="string"),
                    "enrollments": pd.Series([v[0] for _, v in groups], dtype="Int64"),
                    "completed": pd.Series([v[1] for _, v in groups], dtype="int64"),
                    "overdue": pd.Series([v[2] for _, v in groups], dtype="int64"),
                }
            )
            table["completion_rate_pct"] = (100 * table["completed"] / table["enrollments"]).round(1)
            tables[label] = table
        return tables

    def overall(self, scope: str, now: datetime) -> dict:
        return {
            "scope": scope,
            "as of (UTC)": now.isoformat(timespec="seconds"),
            "active enrollments": self.active,
            "completed": self.active_completed,
            "completion rate %": round(100 * self.active_completed / self.active, 1) if self.active else None,
            "overdue": self.active_overdue,
        }


def _true_count(mask: Any) -> int:
    import pyarrow.compute as pc

    return int(pc.sum(pc.cast(mask, "int64")).as_py() or 0)


def aggregate_batches(batches: Iterable[Any]) -> ComplianceAggregates:
    return ComplianceAggregates.of(batches)


def bar_chart(table: pd.DataFrame, label: str, value: str, title: str, color: str) -> str:
    """A horizontal bar chart as inline SVG (no plotting library: the report task stays light,
    and the page needs nothing fetched or run when it opens). Bars sorted ascending by value."""
    data = table.sort_values([value, label], ascending=[True, False])
    names = [str(v) for v in data[label]]
    values = [float(v) if v == v else 0.0 for v in data[value]]  # NaN (no enrollments) -> 0
    percent = value.endswith("_pct")
    label_w, bar_h, gap, top, width = 230, 14, 4, 30, 560
    plot_w = width - label_w - 56
    biggest = 100.0 if percent else (max(values, default=0.0) or 1.0)
    height = top + len(names) * (bar_h + gap) + 34
    axis = AXIS_LABELS.get(value, value.replace("_", " "))
    parts = [
        f'<svg class="chart" role="img" aria-label="{_esc(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" font-family="system-ui,sans-serif" '
        'font-size="10">',
        f"<title>{_esc(title)}</title>",
        f'<text x="4" y="16" font-size="13">{_esc(title)}</text>',
    ]
    for index, (name, number) in enumerate(zip(names, values, strict=True)):
        y = top + index * (bar_h + gap)
        shown = name if len(name) <= 38 else name[:37] + "\u2026"
        text = f"{number:.0f}%" if percent else f"{number:,.0f}"
        bar = plot_w * min(number, biggest) / biggest
        parts.append(
            f'<text x="{label_w - 6}" y="{y + bar_h - 3}" text-anchor="end">{_esc(shown)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{bar:.1f}" height="{bar_h}" fill="{color}">'
            f"<title>{_esc(name)}: {text}</title></rect>"
            f'<text x="{label_w + bar + 3:.1f}" y="{y + bar_h - 3}">{text}</text>'
        )
    bottom = top + len(names) * (bar_h + gap)
    parts.append(
        f'<line x1="{label_w}" x2="{label_w + plot_w}" y1="{bottom}" y2="{bottom}" stroke="#999"/>'
        f'<text x="{label_w + plot_w / 2:.0f}" y="{bottom + 22}" text-anchor="middle">{_esc(axis)}</text>'
        "</svg>"
    )
    return "".join(parts)


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


AXIS_LABELS = {"completion_rate_pct": "completion rate (%)", "overdue": "overdue enrollments"}


def load_history(folder: Any, limit: int = 24) -> list[tuple[datetime, ComplianceAggregates]]:
    """The aggregates of this DAG's earlier *full* exports next to ``folder`` (and its own), oldest
    first, for the completion-over-time chart: one point per run, aggregates only, never rows."""
    import json

    points = []
    try:
        siblings = list(folder.parent.iterdir())
    except (FileNotFoundError, NotADirectoryError, OSError):
        return []
    for run in siblings:
        try:
            with (run / "summary.json").open("r", encoding="utf-8") as handle:
                summary = json.load(handle)
            if not summary.get("full"):
                continue  # an incremental export counts only what changed: not comparable
            with (run / "export_aggregates.json").open("r", encoding="utf-8") as handle:
                aggregates = ComplianceAggregates.from_json(json.load(handle))
            when = datetime.fromisoformat(str(summary.get("until")))
        except (FileNotFoundError, NotADirectoryError, KeyError, ValueError, OSError):
            continue
        points.append((when, aggregates))
    points.sort(key=lambda item: item[0])
    return points[-limit:]


def compliance_html(
    aggregates: ComplianceAggregates,
    *,
    title: str,
    scope: str,
    now: datetime,
    history: Iterable[tuple[datetime, ComplianceAggregates]] = (),
) -> str:
    """HTML compliance report: headline and cards, why rows and active differ, completion over
    time (from earlier runs' aggregates), then a chart and a table per course and department."""
    from absorb_sync.report import render
    from absorb_sync.report_data import export_context, generated_at

    points = list(history)
    if not any(when == now for when, _ in points):
        points.append((now, aggregates))
    charts = {}
    if aggregates.active:
        for label, table in aggregates.tables().items():
            charts[f"{label}:rate"] = bar_chart(
                table, label, "completion_rate_pct", f"Completion rate by {label}", "#2e7d32"
            )
            if table["overdue"].any():
                charts[f"{label}:overdue"] = bar_chart(
                    table, label, "overdue", f"Overdue enrollments by {label}", "#c62828"
                )
    context = export_context(aggregates, scope=scope, now=now, charts=charts, history=points)
    context.update(title=title, run_id=None, generated=generated_at(), dry_run=False)
    return render("export.html.j2", context)
