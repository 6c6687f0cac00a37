"""Run folders -> what the report templates show: headlines, cards, named people, plain reasons, charts.

The templates (``absorb_sync/templates/*.html.j2``) only lay out what this module computes, so the
logic is here and tested here. Everything is plain Python values (and inline SVG for charts): no
matplotlib, no JS, nothing fetched when the page opens.

People are named ("Ann Lee", employee id, department) from the run's own files: the accepted HR
feed of a sync run, the Absorb users read by the unenrollment. GUIDs stay in the CSVs.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MAX_PEOPLE_ROWS = 40  # per table; the full list is in the CSV next to the report

ACTION_LABELS = {
    "enroll": "Enroll",
    "re_enroll": "Re-enroll",
    "update_due_date": "Change due date",
    "unenroll": "Remove enrollment",
    "unenroll_leaver": "Leaver: remove open enrollment",
}
ACTION_MEANING = {
    "enroll": "A rule requires the course and the person has no active enrollment in it.",
    "re_enroll": (
        "The course recurs: the person's last completion is older than the rule's recurrence "
        "period, so a new enrollment is created (the completed one stays in their history)."
    ),
    "update_due_date": "An enrollment this integration created has a due date that no longer matches its rule.",
    "unenroll": (
        "No rule assigns the course to the person any more (moved department or role); only "
        "incomplete enrollments this integration created are removed."
    ),
    "unenroll_leaver": (
        "The person left: their open enrollments are handed to the bulk unenrollment; completed "
        "courses are kept as history."
    ),
}
ACTION_COLORS = {
    "enroll": "#2e7d32",
    "re_enroll": "#1565c0",
    "update_due_date": "#ef6c00",
    "unenroll": "#c62828",
    "unenroll_leaver": "#6a1b9a",
}
STATUS_LABELS = {
    0: "Not started",
    1: "In progress",
    2: "Pending approval",
    3: "Complete",
    4: "Not complete",
    5: "Failed",
    6: "Declined",
    7: "Pending evaluation",
    8: "On waitlist",
    9: "Absent",
    10: "Not applicable",
    11: "Pending proctor",
    12: "Ready for review",
}
OUTCOME_LABELS = {
    "created": "Created",
    "unenrolled": "Removed",
    "already_gone": "Already removed",
    "updated": "Updated",
    "failed": "Failed",
    "skipped": "Skipped",
}
DECISION_LABELS = {"approved": "approved", "rejected": "rejected", "no_answer": "not answered in time"}
WORDS = {
    "id": "ID",
    "pct": "%",
    "sql": "SQL",
    "csv": "CSV",
    "utc": "UTC",
    "hr": "HR",
    "dry": "dry",
}


# ---------------------------------------------------------------- words


def label(key: Any) -> str:
    """A readable label for a key: known actions/outcomes by name, else snake_case -> "Sentence case"."""
    text = str(key)
    for table in (ACTION_LABELS, OUTCOME_LABELS):
        if text in table:
            return table[text]
    words = [WORDS.get(w.lower(), w) for w in re.split(r"[_\s]+", text.strip()) if w]
    if not words:
        return ""
    first = words[0]
    return " ".join([first[:1].upper() + first[1:], *words[1:]])


def missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, pd.NA raises
    except (TypeError, ValueError):
        return True


def human_date(value: Any, *, with_time: bool = False) -> str:
    """``2026-11-30`` / ISO timestamps -> ``30 Nov 2026`` (``30 Nov 2026, 08:07 UTC`` with time)."""
    if missing(value) or value == "":
        return "—"
    moment: datetime | date | None = value if isinstance(value, datetime | date) else None
    if moment is None:
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00")) if "T" in text else None
            moment = moment or date.fromisoformat(text[:10])
        except ValueError:
            return text
    day = f"{moment.day} {moment.strftime('%b %Y')}"
    if with_time and isinstance(moment, datetime):
        zone = "UTC" if moment.utcoffset() is not None and not moment.utcoffset() else moment.strftime("%Z")
        return f"{day}, {moment.strftime('%H:%M')}{' ' + zone if zone else ''}"
    return day


def human(value: Any) -> str:
    """A value as a person reads it: no ``None``/``False``/``nan``, dates as dates, numbers grouped."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if missing(value) or value == "":
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.1f}"
    if isinstance(value, datetime | date):
        return human_date(value, with_time=isinstance(value, datetime))
    if isinstance(value, Mapping):
        return "; ".join(f"{label(k)}: {human(v)}" for k, v in value.items()) or "—"
    if isinstance(value, list | tuple | set):
        return ", ".join(human(v) for v in value) or "—"
    text = str(value)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return human_date(text)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}.*", text):
        return human_date(text, with_time=True)
    if text in ("True", "False", "None", "nan", "NaN", "<NA>"):
        return {"True": "yes", "False": "no"}.get(text, "—")
    return text


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else many or word + 's'}"


def full_name(first: Any, last: Any) -> str | None:
    parts = [str(p).strip() for p in (first, last) if not missing(p) and str(p).strip()]
    return " ".join(parts) or None


def plain_error(error: Any) -> str:
    """Absorb's error in words (the raw text stays in outcomes.csv)."""
    if missing(error) or not str(error).strip():
        return "no error text"
    text = str(error)
    status = re.search(r"\b(4\d\d|5\d\d)\b", text)
    meanings = {
        "400": "Absorb refused the request as invalid",
        "401": "Absorb did not accept the integration's login",
        "403": "the integration's API user is not allowed to do this",
        "404": "Absorb does not know this user, course or enrollment",
        "409": "Absorb reports a conflict with an existing enrollment",
        "422": "Absorb refused the values sent (for example a due date or a course setting)",
        "429": "Absorb asked the integration to slow down (rate limit) and retries ran out",
    }
    if status:
        code = status.group(1)
        meaning = meanings.get(code) or ("Absorb had a server error" if code.startswith("5") else "")
        if meaning:
            return f"{meaning} (HTTP {code})"
    if re.search(r"timeout|timed out", text, re.IGNORECASE):
        return "Absorb did not answer in time"
    if re.search(r"connection", text, re.IGNORECASE):
        return "Absorb could not be reached"
    return text


_ENROLL = re.compile(r"rule '(?P<rule>[^']*)' requires this course.*?; (?P<how>due .*|no due date)$")
_RECUR = re.compile(
    r"recurs every (?P<days>\d+) days: completed (?P<done>[\d-]+), due again (?P<again>[\d-]+)"
)
_DUE_CHANGE = re.compile(r"due date (?P<current>\S+) differs")
_DUE_HOW = re.compile(
    r"due (?P<due>[\d-]+) \((?:hire (?P<hire>[\d-]+) \+ (?P<d1>\d+) days|assigned (?P<assigned>[\d-]+) \+ (?P<d2>\d+) days(?P<passed>, as hire)?)"
)
_LEAVER = re.compile(r"leaver: terminated (?P<term>[\d-]+)")


def _due_words(reason: str) -> str:
    match = _DUE_HOW.search(reason)
    if not match:
        return ""
    due = human_date(match["due"])
    if match["hire"]:
        return f"due {due}, {match['d1']} days after the hire date"
    basis = f"{match['d2']} days after it was assigned"
    if match["passed"]:
        basis += " (the hire-based date had already passed)"
    return f"due {due}, {basis}"


def plain_reason(action: str, reason: Any, rule: Any = None) -> str:
    """A plan line's reason in words a reader follows (the exact reason stays in plan.csv)."""
    text = "" if missing(reason) else str(reason)
    rule_name = rule_label(rule)
    if action == "enroll":
        words = (
            f"Required by the rule “{rule_name}”; not enrolled yet"
            if rule_name
            else "Required; not enrolled yet"
        )
        due = _due_words(text)
        return f"{words}; {due}." if due else f"{words}."
    if action == "re_enroll":
        match = _RECUR.search(text)
        if match:
            return (
                f"Must be retaken every {match['days']} days: last completed {human_date(match['done'])}, "
                f"so due again since {human_date(match['again'])}."
            )
    if action == "update_due_date":
        match = _DUE_CHANGE.search(text)
        due = _due_words(text)
        if match:
            current = "no due date" if match["current"] == "none" else f"due {human_date(match['current'])}"
            return f"Has {current}; the rule says {due.removeprefix('due ') or 'otherwise'}."
    if action == "unenroll_leaver" or text.startswith("leaver:"):
        match = _LEAVER.search(text)
        when = f" on {human_date(match['term'])}" if match else ""
        return f"Left the company{when}; the open enrollment goes, completed history stays."
    if action == "unenroll":
        return (
            "No rule assigns this course any more (moved or changed role); the enrollment was not completed."
        )
    return text or "—"


def rule_label(rule: Any) -> str | None:
    """``all-staff-compliance`` -> ``All staff compliance``."""
    if missing(rule) or not str(rule).strip():
        return None
    return label(re.sub(r"[-_]+", " ", str(rule)))


def general_reason(action: str, reason: Any, rule: Any = None) -> str:
    """The reason of a plan line without its person-specific dates: lines of one action and
    course that share it are shown together."""
    text = "" if missing(reason) else str(reason)
    rule_name = rule_label(rule)
    if action == "enroll":
        words = (
            f"Required by the rule “{rule_name}”; not enrolled yet"
            if rule_name
            else "Required; not enrolled yet"
        )
        match = _DUE_HOW.search(text)
        if match and match["hire"]:
            return f"{words}; due {match['d1']} days after the hire date."
        if match:
            return f"{words}; due {match['d2']} days after assignment."
        return f"{words}; no due date."
    if action == "re_enroll":
        match = _RECUR.search(text)
        if match:
            return (
                f"Must be retaken every {match['days']} days (rule “{rule_name}”); the last completion "
                "is older than that, so it is due again."
            )
    if action == "update_due_date":
        return f"The due date no longer matches the rule “{rule_name}”: corrected."
    if action == "unenroll_leaver" or text.startswith("leaver:"):
        return "Left the company: the open enrollment is removed, completed history stays."
    return plain_reason(action, reason, rule)


def person_text(row: Mapping[str, Any]) -> str:
    """``Ann Lee (E000123, Sales)``."""
    extra = ", ".join(v for v in (row.get("employee_id"), row.get("department")) if v and v != "—")
    return f"{row.get('name')} ({extra})" if extra else str(row.get("name"))


def _course_groups(rows: list[dict], by_course: Counter, names: int = 12) -> list[dict]:
    """One entry per course and general reason: count, the reason and the people named."""
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        grouped[(row["course"], row["why"])].append(row)
    entries = []
    for (course, why), members in grouped.items():
        members.sort(key=lambda r: r["name"])
        dues = {m["due"] for m in members if m["due"] != "—"}
        entries.append(
            {
                "course": course,
                "count": len(members),
                "why": why + (f" Due {dues.pop()}." if len(dues) == 1 else ""),
                "who": "; ".join(person_text(m) for m in members[:names]),
                "more": max(0, len(members) - names),
            }
        )
    entries.sort(key=lambda e: (-by_course[e["course"]], e["course"], -e["count"]))
    return entries


# ---------------------------------------------------------------- people


class People:
    """employee id -> name and department; user id -> employee id (for rows that only have a GUID)."""

    def __init__(self) -> None:
        self.by_employee: dict[str, dict] = {}
        self.employee_by_user: dict[str, str] = {}

    def add(self, employee_id: Any, *, first: Any = None, last: Any = None, department: Any = None) -> None:
        if missing(employee_id):
            return
        entry = self.by_employee.setdefault(str(employee_id), {"name": None, "department": None})
        entry["name"] = full_name(first, last) or entry["name"]
        if not missing(department) and str(department).strip():
            entry["department"] = str(department)

    def link(self, user_id: Any, employee_id: Any) -> None:
        if not missing(user_id) and not missing(employee_id):
            self.employee_by_user[str(user_id).lower()] = str(employee_id)

    def employee(self, employee_id: Any = None, user_id: Any = None) -> str | None:
        if not missing(employee_id) and str(employee_id):
            return str(employee_id)
        if not missing(user_id):
            return self.employee_by_user.get(str(user_id).lower())
        return None

    def row(self, employee_id: Any = None, user_id: Any = None, fallback: Any = None) -> dict:
        """``{"name", "employee_id", "department"}``; a GUID is never shown as a name."""
        employee = self.employee(employee_id, user_id)
        entry = self.by_employee.get(employee or "", {})
        name = entry.get("name")
        if name is None and not missing(fallback) and not GUID.match(str(fallback)):
            name = str(fallback)
        return {
            "name": name or "(name not in the feed)",
            "employee_id": employee or "—",
            "department": entry.get("department") or "—",
        }

    @classmethod
    def from_frames(cls, *frames: pd.DataFrame | None, users: pd.DataFrame | None = None) -> People:
        people = cls()
        for frame in frames:
            if frame is None or frame.empty or "employee_id" not in frame:
                continue

            def column(name: str, frame: pd.DataFrame = frame) -> Any:
                return frame[name] if name in frame else [None] * len(frame)

            for employee_id, first, last, department, user_id in zip(
                frame["employee_id"],
                column("first_name"),
                column("last_name"),
                column("department"),
                column("user_id"),
                strict=True,
            ):
                people.add(employee_id, first=first, last=last, department=department)
                people.link(user_id, employee_id)
        if users is not None and not users.empty:
            for employee_id, user_id in zip(users["employee_id"], users["user_id"], strict=True):
                people.link(user_id, employee_id)
        return people


# ---------------------------------------------------------------- charts (inline SVG)


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def svg_stacked_bars(
    rows: list[tuple[str, Mapping[str, int]]],
    series: Mapping[str, tuple[str, str]],
    *,
    title: str,
    width: int = 760,
) -> str:
    """Horizontal stacked bars, one row per label; ``series``: key -> (legend label, colour)."""
    if not rows:
        return ""
    label_w, bar_h, gap, top = 230, 18, 8, 34
    plot_w = width - label_w - 60
    biggest = max(sum(values.values()) for _, values in rows) or 1
    height = top + len(rows) * (bar_h + gap) + 10
    parts = [
        f'<svg class="chart" role="img" aria-label="{_esc(title)}" viewBox="0 0 {width} {height}" '
        f'width="100%" xmlns="http://www.w3.org/2000/svg" font-family="system-ui,sans-serif" font-size="12">',
        f"<title>{_esc(title)}</title>",
    ]
    x = label_w
    for key, (name, colour) in series.items():  # legend
        if not any(values.get(key) for _, values in rows):
            continue
        parts.append(f'<rect x="{x}" y="6" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{x + 16}" y="16">{_esc(name)}</text>')
        x += 24 + 7 * len(name)
    for index, (name, values) in enumerate(rows):
        y = top + index * (bar_h + gap)
        shown = name if len(name) <= 34 else name[:33] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + bar_h - 5}" text-anchor="end"><title>{_esc(name)}</title>{_esc(shown)}</text>'
        )
        x = float(label_w)
        for key, (_, colour) in series.items():
            count = int(values.get(key) or 0)
            if not count:
                continue
            w = max(1.0, plot_w * count / biggest)
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}">'
                f"<title>{_esc(series[key][0])}: {count}</title></rect>"
            )
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + bar_h - 5}">{sum(values.values()):,}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_lines(
    series: Mapping[str, list[float | None]], x_labels: list[str], *, title: str, unit: str = "%"
) -> str:
    """A small line chart (0-100 %), one line per series, for values over runs."""
    if not series or len(x_labels) < 2:
        return ""
    palette = ["#1565c0", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037", "#ad1457"]
    width, height, left, right, top, bottom = 760, 300, 44, 190, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / (len(x_labels) - 1)
    parts = [
        f'<svg class="chart" role="img" aria-label="{_esc(title)}" viewBox="0 0 {width} {height}" '
        f'width="100%" xmlns="http://www.w3.org/2000/svg" font-family="system-ui,sans-serif" font-size="12">',
        f"<title>{_esc(title)}</title>",
    ]
    for tick in (0, 25, 50, 75, 100):
        y = top + plot_h * (1 - tick / 100)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}{unit}</text>')
    every = max(1, math.ceil(len(x_labels) / 8))
    for index, text in enumerate(x_labels):
        if index % every == 0 or index == len(x_labels) - 1:
            x = left + index * step
            parts.append(f'<text x="{x:.1f}" y="{height - 18}" text-anchor="middle">{_esc(text)}</text>')
    for number, (name, values) in enumerate(series.items()):
        colour = palette[number % len(palette)]
        points = [
            (left + i * step, top + plot_h * (1 - v / 100)) for i, v in enumerate(values) if v is not None
        ]
        if not points:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y in points:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
        ly = top + 14 + number * 16
        parts.append(f'<rect x="{width - right + 12}" y="{ly - 10}" width="12" height="3" fill="{colour}"/>')
        parts.append(f'<text x="{width - right + 28}" y="{ly - 5}">{_esc(name[:24])}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------- shared blocks


def approval_block(approval: Mapping[str, Any] | None) -> dict | None:
    """``{"decision","by","at","comment"}`` -> a sentence and its tone (None when no one was asked)."""
    if not approval:
        return None
    decision = str(approval.get("decision") or "")
    by = approval.get("by") or "nobody"
    when = human_date(approval.get("at"), with_time=True) if approval.get("at") else None
    if decision == "no_answer":
        sentence = "Nobody answered the approval request in time: the plan was not applied."
    else:
        sentence = (
            f"Plan {DECISION_LABELS.get(decision, decision)} by {by}" + (f" on {when}" if when else "") + "."
        )
    return {
        "decision": DECISION_LABELS.get(decision, decision or "—"),
        "sentence": sentence,
        "by": by,
        "at": when or "—",
        "comment": approval.get("comment") or "—",
        "tone": "ok" if decision == "approved" else "bad",
    }


def card(label_text: str, value: Any, *, key: str = "", note: str = "", tone: str = "") -> dict:
    if not tone and value in (0, "0"):
        tone = "zero"
    return {"label": label_text, "value": human(value), "key": key, "note": note, "tone": tone}


def limited(rows: list[dict], limit: int = MAX_PEOPLE_ROWS) -> dict:
    return {"rows": rows[:limit], "more": max(0, len(rows) - limit), "total": len(rows)}


def generated_at(now: datetime | None = None) -> str:
    return human_date((now or datetime.now().astimezone()), with_time=True)


def records(frame: pd.DataFrame | None) -> list[dict]:
    if frame is None or frame.empty:
        return []
    return frame.astype("object").where(frame.notna(), None).to_dict("records")


# ---------------------------------------------------------------- the sync


def sync_context(
    *,
    summary: Mapping[str, Any],
    lines: pd.DataFrame,
    course_names: Mapping[str, str],
    people: People,
    meta: Mapping[str, Any] | None = None,
    outcomes: pd.DataFrame | None = None,
    mismatches: pd.DataFrame | None = None,
    rejects: pd.DataFrame | None = None,
    missing_people: pd.DataFrame | None = None,
    now: datetime | None = None,
    user_lines: pd.DataFrame | None = None,
    user_notes: pd.DataFrame | None = None,
    user_outcomes: pd.DataFrame | None = None,
) -> dict:
    """What the sync report shows, from the run's summary and files (see ``templates/sync.html.j2``)."""
    meta = meta or {}
    plan = summary.get("plan") or {}
    counts = plan.get("counts") or {}
    gate = summary.get("plan_gate") or {}
    held = summary.get("held")
    dry_run = bool(summary.get("dry_run"))
    outcome_counts = summary.get("outcomes") or {}
    failed = int(summary.get("failed_writes") or outcome_counts.get("failed", 0) or 0)
    mismatch_count = int(summary.get("verification_mismatches") or 0)
    approval = approval_block(summary.get("approval"))

    line_rows = []
    for line in records(lines):
        kind = "unenroll_leaver" if line.get("handled_by") not in (None, "sync") else line["action"]
        course = course_names.get(str(line.get("course_id"))) or "(course not in the rules)"
        line_rows.append(
            {
                "kind": kind,
                "action": ACTION_LABELS.get(kind, label(kind)),
                "course": course,
                **people.row(line.get("employee_id"), line.get("user_id")),
                "reason": plain_reason(kind, line.get("reason"), line.get("rule")),
                "why": general_reason(kind, line.get("reason"), line.get("rule")),
                "due": human_date(line.get("due_date")),
            }
        )
    order = list(ACTION_LABELS)
    groups = []
    for kind in order:
        rows = [r for r in line_rows if r["kind"] == kind]
        if not rows:
            continue
        by_course = Counter(r["course"] for r in rows)
        departments = Counter(r["department"] for r in rows)
        groups.append(
            {
                "kind": kind,
                "action": ACTION_LABELS[kind],
                "meaning": ACTION_MEANING[kind],
                "count": len(rows),
                "people": len({r["employee_id"] for r in rows}),
                "departments": ", ".join(f"{d} ({n})" for d, n in departments.most_common(5)),
                "courses": _course_groups(rows, by_course),
            }
        )
    per_course: dict[str, dict[str, int]] = defaultdict(dict)
    for row in line_rows:
        per_course[row["course"]][row["kind"]] = per_course[row["course"]].get(row["kind"], 0) + 1
    chart = svg_stacked_bars(
        sorted(per_course.items(), key=lambda item: (-sum(item[1].values()), item[0])),
        {k: (ACTION_LABELS[k], ACTION_COLORS[k]) for k in order},
        title="Planned changes per course",
    )

    handed = list(summary.get("leavers_handed_over") or [])
    leavers_in_feed = list(meta.get("leavers") or [])
    leaver_rows = [r for r in line_rows if r["kind"] == "unenroll_leaver"]
    with_open = sorted({r["employee_id"] for r in leaver_rows})
    applied = not dry_run and not held and bool(outcome_counts)

    headline, tone = _sync_headline(
        summary, counts, plan, held, dry_run, failed, mismatch_count, approval, applied, handed
    )
    explanations = _sync_explanations(
        counts, handed, leavers_in_feed, with_open, leaver_rows, summary, dry_run, line_rows
    )
    cards = [
        card("Enroll", counts.get("enroll", 0), key="enroll", tone="add" if counts.get("enroll") else ""),
        card("Re-enroll", counts.get("re_enroll", 0), key="re_enroll", note="recurring courses due again"),
        card("Due dates changed", counts.get("update_due_date", 0), key="update_due_date"),
        card(
            "Removed by the sync",
            plan.get("unenroll_by_sync", 0),
            key="unenroll_by_sync",
            note="people who moved or changed role",
        ),
        card(
            "Leavers' open enrollments",
            plan.get("unenroll_leavers", 0),
            key="unenroll_leavers",
            note="removed by the bulk unenrollment",
        ),
        card(
            "Leavers handed over",
            len(handed),
            key="leavers_handed_over",
            note="people sent to the bulk unenrollment",
        ),
        card(
            "Rejected feed rows",
            summary.get("rejected_rows", 0),
            key="rejected_rows",
            tone="warn" if summary.get("rejected_rows") else "",
        ),
        card(
            "People missing in Absorb",
            summary.get("missing_people", 0),
            key="missing_people",
            tone="warn" if summary.get("missing_people") else "",
        ),
        card("Failed writes", failed, key="failed_writes", tone="bad" if failed else ""),
        card(
            "Not visible in Absorb after the run",
            mismatch_count,
            key="verification_mismatches",
            tone="bad" if mismatch_count else "",
        ),
    ]

    user_changes, left_alone = user_rows(user_lines, user_notes, user_outcomes)
    user_counts = Counter(r["kind"] for r in user_changes)
    cards[:0] = [
        card(USER_ACTION_LABELS[k], user_counts[k], key=k, tone="warn" if k == "deactivate_user" else "")
        for k in USER_ACTION_LABELS
        if user_counts[k]
    ]
    failures = []
    for row in records(outcomes):
        if row.get("outcome") != "failed":
            continue
        kind = row.get("action") or ""
        failures.append(
            {
                **people.row(row.get("employee_id"), row.get("user_id")),
                "action": ACTION_LABELS.get(kind, label(kind)),
                "course": course_names.get(str(row.get("course_id"))) or "—",
                "error": plain_error(row.get("error")),
            }
        )
    not_visible = [
        {
            **people.row(row.get("employee_id")),
            "action": ACTION_LABELS.get(row.get("action") or "", label(row.get("action") or "")),
            "course": course_names.get(str(row.get("course_id"))) or "—",
            "problem": str(row.get("problem") or "—").capitalize(),
        }
        for row in records(mismatches)
    ]
    rejected = [
        {
            "line": human(row.get("_line")),
            "employee_id": human(row.get("employee_id")),
            "name": full_name(row.get("first_name"), row.get("last_name")) or "—",
            "department": human(row.get("department")),
            "reason": _sentence(row.get("reject_reason")),
        }
        for row in records(rejects)
    ]
    not_in_absorb = [
        {
            "line": human(row.get("_line")),
            "employee_id": human(row.get("employee_id")),
            "name": full_name(row.get("first_name"), row.get("last_name")) or "—",
            "department": human(row.get("department")),
            "status": label(row.get("status")) if row.get("status") else "—",
        }
        for row in records(missing_people)
    ]
    open_by_leaver = Counter(r["employee_id"] for r in leaver_rows)
    handed_rows = sorted(
        ({**people.row(e), "open": open_by_leaver[e]} for e in handed),
        key=lambda r: r["name"],
    )
    return {
        "kind": "sync",
        "title": "HR enrollment sync",
        "run_id": summary.get("run_id"),
        "generated": generated_at(now),
        "tone": tone,
        "headline": headline,
        "held": held,
        "gate": _gate_block(gate),
        "approval": approval,
        "cards": cards,
        "explanations": explanations,
        "chart": chart,
        "groups": groups,
        "failures": limited(failures),
        "not_visible": limited(not_visible),
        "rejected": limited(rejected),
        "missing": limited(not_in_absorb),
        "handed_over": limited(handed_rows),
        "user_changes": limited(user_changes),
        "users_left_alone": limited(left_alone),
        "dry_run": dry_run,
        "files": [
            ("user_plan.csv", "every user change with the fields from/to and the reason"),
            ("user_notes.csv", "people whose Absorb user the sync left alone, and why"),
            ("plan.csv", "every plan line with ids and the exact reason"),
            ("outcomes.csv", "Absorb's answer per write"),
            ("rejects.csv", "rejected feed rows with their line numbers"),
            ("missing_people.csv", "people in the feed with no Absorb user"),
            ("summary.json", "the numbers of this page, for tools"),
        ],
    }


USER_ACTION_LABELS = {
    "create_user": "Users created",
    "reactivate_user": "Users reactivated",
    "update_user": "Users updated",
    "deactivate_user": "Users deactivated",
}
USER_ACTION_WORDS = {
    "create_user": "Create",
    "reactivate_user": "Reactivate (rehire)",
    "update_user": "Update",
    "deactivate_user": "Deactivate (leaver)",
}
USER_NOTE_WORDS = {
    "quarantined": "Quarantined",
    "protected": "Protected user",
    "not_managed": "Not managed by the sync",
    "waiting_handover": "Waits for the hand-over",
    "not_deactivated": "Kept active",
    "ambiguous": "Ambiguous employee id",
}
FIELD_WORDS = {
    "departmentId": "department",
    "jobTitle": "job title",
    "supervisorId": "manager",
    "firstName": "first name",
    "lastName": "last name",
    "emailAddress": "email",
    "location": "location",
    "activeStatus": "active",
}


def user_rows(
    lines: pd.DataFrame | None, notes: pd.DataFrame | None, outcomes: pd.DataFrame | None
) -> tuple[list[dict], list[dict]]:
    """User changes by name (what changes, why, Absorb's answer) and the people left alone."""
    import json

    answers = {(r.get("action"), r.get("employee_id")): r for r in records(outcomes)}
    changes = []
    for line in records(lines):
        fields = json.loads(line.get("changes") or "{}")
        shown = [k for k in fields if k in FIELD_WORDS and k != "activeStatus"]
        answer = answers.get((line.get("action"), line.get("employee_id"))) or {}
        changes.append(
            {
                "kind": line["action"],
                "action": USER_ACTION_WORDS.get(line["action"], label(line["action"])),
                "name": human(line.get("name")),
                "employee_id": human(line.get("employee_id")),
                "what": ", ".join(
                    f"{FIELD_WORDS[k]}: {human(fields[k][0])} → {human(fields[k][1])}"
                    if line["action"] == "update_user"
                    else f"{FIELD_WORDS[k]} {human(fields[k][1])}"
                    for k in shown
                )
                or "—",
                "reason": _sentence(line.get("reason")),
                "outcome": label(answer["outcome"]) if answer.get("outcome") else "—",
            }
        )
    left = [
        {
            "name": human(note.get("name")),
            "employee_id": human(note.get("employee_id")),
            "note": USER_NOTE_WORDS.get(note.get("note"), label(note.get("note"))),
            "detail": _sentence(note.get("detail")),
        }
        for note in records(notes)
    ]
    return changes, left


def _sentence(text: Any) -> str:
    if missing(text) or not str(text).strip():
        return "—"
    value = str(text).strip()
    return value[:1].upper() + value[1:]


def _gate_block(gate: Mapping[str, Any]) -> dict | None:
    if not gate:
        return None
    thresholds = []
    if gate.get("max_removal_pct") is not None:
        thresholds.append(
            f"remove at most {human(gate['max_removal_pct'])}% of the active enrollments in scope"
        )
    if gate.get("max_deactivation_pct") is not None:
        thresholds.append(f"deactivate at most {human(gate['max_deactivation_pct'])}% of the active users")
    if gate.get("max_additions") is not None:
        thresholds.append(f"add at most {human(gate['max_additions'])} enrollments")
    return {
        "reasons": [_sentence(r) for r in gate.get("reasons") or []],
        "would_hold": [_sentence(r) for r in gate.get("would_hold") or []],
        "overridden": bool(gate.get("overridden")),
        "override_reason": gate.get("override_reason"),
        "thresholds": thresholds,
        "first_apply": bool(gate.get("first_apply")),
        "initial_load": bool(gate.get("initial_load")),
    }


def _sync_headline(
    summary: Mapping[str, Any],
    counts: Mapping[str, int],
    plan: Mapping[str, Any],
    held: Any,
    dry_run: bool,
    failed: int,
    mismatches: int,
    approval: dict | None,
    applied: bool,
    handed: list,
) -> tuple[list[str], str]:
    changes = []
    for key, word in (
        ("enroll", "new enrollment"),
        ("re_enroll", "re-enrollment"),
        ("update_due_date", "due-date change"),
    ):
        if counts.get(key):
            changes.append(plural(int(counts[key]), word))
    if plan.get("unenroll_by_sync"):
        changes.append(plural(int(plan["unenroll_by_sync"]), "removal") + " (people who moved)")
    what = ", ".join(changes) or "no change to Absorb"
    lines: list[str] = []
    if summary.get("outcome"):
        lines.append(_sentence(summary["outcome"]))
    if held:
        lines.append(f"Held: nothing was written to Absorb. The plan has {what}.")
        tone = "held"
    elif dry_run:
        lines.append(f"This was a dry run: nothing was written. Applied, it would make {what}.")
        tone = "dry"
    elif failed or mismatches:
        lines.append(
            f"Applied with problems: {plural(failed, 'write')} failed and "
            f"{plural(mismatches, 'change')} not visible in Absorb afterwards (a re-run repairs them)."
        )
        tone = "bad"
    else:
        lines.append(
            f"Done: {what}." if changes else "Done: Absorb already matched the HR feed, nothing to change."
        )
        tone = "ok"
    if approval and not summary.get("outcome"):
        lines.append(approval["sentence"])
    if handed and not held and not dry_run:
        lines.append(
            f"{plural(len(handed), 'leaver')} handed to the bulk unenrollment "
            f"({plural(int(plan.get('unenroll_leavers') or 0), 'open enrollment')} to remove)."
        )
    if summary.get("rejected_rows"):
        lines.append(f"{plural(int(summary['rejected_rows']), 'feed row')} rejected: see below.")
    return lines, tone


def _sync_explanations(
    counts: Mapping[str, int],
    handed: list,
    leavers_in_feed: list,
    with_open: list,
    leaver_rows: list[dict],
    summary: Mapping[str, Any],
    dry_run: bool,
    line_rows: list[dict],
) -> list[dict]:
    notes = []
    re_enrolls = [r for r in line_rows if r["kind"] == "re_enroll"]
    if re_enrolls:
        courses = Counter(r["course"] for r in re_enrolls)
        notes.append(
            {
                "title": f"Why {plural(len(re_enrolls), 're-enrollment')}?",
                "text": (
                    "Some rule courses must be retaken periodically (the rule's recurrence, e.g. every "
                    "365 days). A person whose last completion is older than that is due again, so the "
                    "sync creates a new enrollment, also on a first sync: these people completed the "
                    "course before, but their completion has expired. Their completed enrollment stays in "
                    "their history. Most affected: "
                    + ", ".join(f"{c} ({n})" for c, n in courses.most_common(3))
                    + "."
                ),
            }
        )
    if handed and not dry_run:
        new_ish = len(set(handed) - set(with_open))
        notes.append(
            {
                "title": f"Why {plural(len(handed), 'leaver')} handed over?",
                "text": (
                    f"This feed marks {plural(len(leavers_in_feed), 'person', 'people')} as leavers "
                    "(terminated, or past their termination date), not only the ones who left since the "
                    "last feed. The hand-over names everyone who left since the last accepted feed, plus "
                    "anyone who left earlier but still has open enrollments to remove: here "
                    f"{plural(len(with_open), 'person', 'people')} still "
                    f"{'has' if len(with_open) == 1 else 'have'} "
                    f"{plural(len(leaver_rows), 'open enrollment')}"
                    + (
                        f", and {plural(new_ish, 'new leaver')} without open enrollments "
                        "(the unenrollment checks them and finds nothing to remove)"
                        if new_ish
                        else ""
                    )
                    + ". A leaver stays on the hand-over until their open enrollments are gone."
                ),
            }
        )
    return notes


# ---------------------------------------------------------------- the unenrollment


def unenrollment_context(
    *,
    summary: Mapping[str, Any],
    targets: pd.DataFrame,
    still_there: pd.DataFrame | None = None,
    outcomes: pd.DataFrame | None = None,
    skipped: pd.DataFrame | None = None,
    unresolved: pd.DataFrame | None = None,
    now: datetime | None = None,
) -> dict:
    """What the unenrollment report shows (see ``templates/unenrollment.html.j2``)."""
    resolved = summary.get("resolved") or {}
    gate = summary.get("gate") or {}
    dry_run = bool(summary.get("dry_run"))
    held = summary.get("held")
    outcome_counts = summary.get("outcomes") or {}
    failed = int(outcome_counts.get("failed", 0) or 0)
    still = len(still_there) if still_there is not None else int(summary.get("still_enrolled") or 0)
    removed = int(outcome_counts.get("unenrolled", 0) or 0) + int(outcome_counts.get("already_gone", 0) or 0)
    people = People.from_frames(targets)
    answer_by_enrollment = {
        str(r.get("enrollment_id")): r for r in records(outcomes) if not missing(r.get("enrollment_id"))
    }
    rows = []
    for target in records(targets):
        outcome = answer_by_enrollment.get(str(target.get("enrollment_id")), {})
        status = target.get("status")
        try:
            status_label = STATUS_LABELS.get(int(float(status)), "—") if not missing(status) else "—"
        except (TypeError, ValueError):
            status_label = str(status)
        rows.append(
            {
                **people.row(target.get("employee_id"), target.get("user_id"), fallback=target.get("person")),
                "course": target.get("course_name") or "(course name unknown)",
                "status": status_label,
                "outcome": OUTCOME_LABELS.get(str(outcome.get("outcome")), "—")
                if outcome
                else ("Not removed (dry run)" if dry_run else "Not removed (held)" if held else "—"),
                "error": plain_error(outcome.get("error")) if outcome.get("outcome") == "failed" else "",
            }
        )
    rows.sort(key=lambda r: (r["name"], r["course"]))
    per_course = Counter(r["course"] for r in rows)
    chart = svg_stacked_bars(
        [(c, {"n": n}) for c, n in sorted(per_course.items(), key=lambda i: (-i[1], i[0]))],
        {"n": ("Enrollments to remove" if dry_run or held else "Enrollments removed", "#6a1b9a")},
        title="Enrollments per course",
    )
    by_person: dict[str, dict] = {}
    for row in rows:
        entry = by_person.setdefault(
            row["employee_id"] + row["name"],
            {**{k: row[k] for k in ("name", "employee_id", "department")}, "courses": []},
        )
        entry["courses"].append(row["course"])
    person_rows = [
        {**entry, "count": len(entry["courses"]), "courses": ", ".join(sorted(entry["courses"]))}
        for entry in sorted(by_person.values(), key=lambda e: e["name"])
    ]
    still_rows = [
        {
            **people.row(r.get("employee_id"), r.get("user_id"), fallback=r.get("person")),
            "course": r.get("course_name") or "—",
        }
        for r in records(still_there)
    ]
    failures = [r for r in rows if r["outcome"] == "Failed"]
    skipped_rows = [
        {
            "person": human(r.get("person")),
            **_named(people, r.get("person")),
            "reason": _sentence(r.get("reason")),
        }
        for r in records(skipped)
    ]
    unresolved_rows = [
        {"person": human(r.get("person")), "problem": _sentence(r.get("problem"))}
        for r in records(unresolved)
    ]
    approval = approval_block(summary.get("approval"))
    targets_count = int(resolved.get("targets", len(rows)) or 0)
    affected = int(resolved.get("people_affected", len(person_rows)) or 0)
    headline: list[str] = []
    if summary.get("outcome"):
        headline.append(_sentence(summary["outcome"]))
    what = f"{plural(targets_count, 'open enrollment')} of {plural(affected, 'person', 'people')}"
    if held:
        headline.append(f"Held: nothing was removed. The request covers {what}.")
        tone = "held"
    elif dry_run:
        headline.append(f"This was a dry run: nothing was removed. Run for real, it would remove {what}.")
        tone = "dry"
    elif failed or still:
        headline.append(
            f"Finished with problems: {plural(failed, 'removal')} failed and "
            f"{plural(still, 'enrollment')} still active in Absorb afterwards."
        )
        tone = "bad"
    else:
        headline.append(
            f"Done: removed {plural(removed, 'open enrollment')} of {plural(affected, 'person', 'people')}."
            if removed
            else "Done: nothing left to remove."
        )
        tone = "ok"
    if approval and not summary.get("outcome"):
        headline.append(approval["sentence"])
    kept = int(resolved.get("kept_completed") or 0)
    if kept:
        headline.append(f"{plural(kept, 'completed enrollment')} kept as compliance history.")
    if resolved.get("skipped_count"):
        headline.append(f"{plural(int(resolved['skipped_count']), 'person', 'people')} skipped: see below.")
    if resolved.get("unresolved"):
        headline.append(f"{plural(len(resolved['unresolved']), 'person', 'people')} not found in Absorb.")
    handover = resolved.get("handover")
    cards = [
        card("People requested", resolved.get("people_requested", 0), key="people_requested"),
        card("People found in Absorb", resolved.get("people_resolved", 0), key="people_resolved"),
        card(
            "Enrollments to remove" if dry_run or held else "Enrollments removed",
            targets_count if dry_run or held else removed,
            key="targets",
            note=f"of {plural(affected, 'person', 'people')}",
        ),
        card("Completed kept", kept, key="kept_completed", note="history is never removed"),
        card(
            "Skipped people",
            resolved.get("skipped_count", 0),
            key="skipped_count",
            tone="warn" if resolved.get("skipped_count") else "",
        ),
        card("Not found", len(unresolved_rows), key="unresolved", tone="warn" if unresolved_rows else ""),
        card("Failed", failed, key="failed", tone="bad" if failed else ""),
        card("Still enrolled", still, key="still_enrolled", tone="bad" if still else ""),
    ]
    gate_block = None
    if gate:
        gate_block = {
            "reasons": [_sentence(r) for r in gate.get("reasons") or []],
            "would_hold": [_sentence(r) for r in gate.get("would_hold") or []],
            "overridden": bool(gate.get("overridden")),
            "override_reason": gate.get("override_reason"),
            "share": human(gate.get("share_pct")),
            "thresholds": [],  # the unenrollment's limits are in its reasons; the macro expects the key
        }
    return {
        "kind": "unenrollment",
        "title": "Bulk unenrollment",
        "run_id": summary.get("run_id"),
        "generated": generated_at(now),
        "tone": tone,
        "headline": headline,
        "held": held,
        "reason": summary.get("reason"),
        "handover": {
            "sync_run_id": handover.get("sync_run_id"),
            "computed_at": human_date(handover.get("computed_at"), with_time=True),
            "checked_at": human_date(handover.get("checked_at"), with_time=True),
        }
        if handover
        else None,
        "gate": gate_block,
        "approval": approval,
        "cards": cards,
        "chart": chart,
        "people": limited(person_rows),
        "enrollments": limited(rows),
        "enrollments_title": "Enrollments to remove" if dry_run or held else "Removed enrollments",
        "failures": limited(failures),
        "still": limited(still_rows),
        "skipped": limited(skipped_rows),
        "unresolved": limited(unresolved_rows),
        "dry_run": dry_run,
        "files": [
            ("targets.csv", "every enrollment with its ids"),
            ("outcomes.csv", "Absorb's answer per enrollment"),
            ("skipped.csv", "people skipped and why"),
            ("unresolved.csv", "people not found in Absorb"),
            ("summary.json", "the numbers of this page, for tools"),
        ],
    }


def _named(people: People, person: Any) -> dict:
    row = people.row(person)
    return {"name": row["name"] if row["employee_id"] in people.by_employee else "—"}


# ---------------------------------------------------------------- generic (held/rejected pages, other callers)


def generic_context(
    title: str,
    summary: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame | None],
    now: datetime | None = None,
) -> dict:
    """A readable page for any summary: headline (outcome, held), approval, cards of the numbers,
    the other values as labelled rows, tables without id columns (ids stay in the CSVs)."""
    headline = [
        _sentence(summary[k]) for k in ("outcome", "held") if summary.get(k) and isinstance(summary[k], str)
    ]
    cards, facts = [], []
    for key, value in summary.items():
        if key in ("outcome", "held", "approval", "folder", "run_id"):
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            cards.append(card(label(key), value, key=key))
        elif isinstance(value, Mapping):
            for inner, inner_value in value.items():
                facts.append(
                    {
                        "label": f"{label(key)}: {label(inner)}",
                        "value": human(inner_value),
                        "key": f"{key}.{inner}",
                    }
                )
        else:
            facts.append({"label": label(key), "value": human(value), "key": key})
    shown_tables = []
    for name, frame in tables.items():
        shown_tables.append({"name": name, **_plain_table(frame)})
    return {
        "kind": "generic",
        "title": title,
        "run_id": summary.get("run_id"),
        "generated": generated_at(now),
        "tone": "held" if summary.get("held") else "ok",
        "headline": headline,
        "approval": approval_block(
            summary.get("approval") if isinstance(summary.get("approval"), Mapping) else None
        ),
        "cards": cards,
        "facts": facts,
        "tables": shown_tables,
    }


def _plain_table(frame: pd.DataFrame | None) -> dict:
    if frame is None or frame.empty:
        return {"columns": [], "rows": [], "more": 0, "total": 0}
    columns = [c for c in frame.columns if not _guid_column(frame[c]) and not str(c).startswith("_")]
    rows = [[human(row.get(c)) for c in columns] for row in records(frame[columns].head(MAX_PEOPLE_ROWS))]
    return {
        "columns": [label(c) for c in columns],
        "rows": rows,
        "more": max(0, len(frame) - MAX_PEOPLE_ROWS),
        "total": len(frame),
    }


def _guid_column(series: Any) -> bool:
    sample = [str(v) for v in series.dropna().head(20)]
    return bool(sample) and all(GUID.match(v) for v in sample)


# ---------------------------------------------------------------- the export


def export_context(
    aggregates: Any,
    *,
    scope: str,
    now: datetime,
    charts: Mapping[str, str] | None = None,
    history: Iterable[tuple[datetime, Any]] = (),
) -> dict:
    """What the compliance report shows, from :class:`ComplianceAggregates` (never rows)."""
    rate = round(100 * aggregates.active_completed / aggregates.active, 1) if aggregates.active else None
    history_rows = inactive = aggregates.rows - aggregates.active
    cards = [
        card("Active enrollments", aggregates.active, key="active"),
        card("Completed", aggregates.active_completed, key="active_completed"),
        card("Completion rate", f"{rate:g}%" if rate is not None else "—", key="completion_rate_pct"),
        card(
            "Overdue",
            aggregates.active_overdue,
            key="active_overdue",
            tone="bad" if aggregates.active_overdue else "",
        ),
        card("Rows in the export", aggregates.rows, key="rows", note="active + history"),
    ]
    explanations = []
    if inactive:
        explanations.append(
            {
                "title": f"Why {aggregates.rows:,} rows but {aggregates.active:,} active enrollments?",
                "text": (
                    f"The export files hold every enrollment Absorb returned, {plural(history_rows, 'row')} "
                    "of them inactive history: earlier attempts replaced by a re-enrollment, and "
                    "enrollments removed from leavers or movers. This report counts only the "
                    f"{aggregates.active:,} active enrollments, one per person and course. Across all rows, "
                    f"{aggregates.completed:,} are completed ({aggregates.active_completed:,} of them active)."
                ),
            }
        )
    groups = []
    for label_key, table in aggregates.tables().items():
        rows = [
            {
                "name": r[label_key],
                "enrollments": human(int(r["enrollments"])),
                "completed": human(int(r["completed"])),
                "rate": f"{r['completion_rate_pct']:.1f}%"
                if r["completion_rate_pct"] == r["completion_rate_pct"]
                else "—",
                "rate_value": float(r["completion_rate_pct"])
                if r["completion_rate_pct"] == r["completion_rate_pct"]
                else 0.0,
                "overdue": human(int(r["overdue"])),
            }
            for r in records(table.sort_values("completion_rate_pct", ascending=True))
        ]
        groups.append(
            {
                "label": "course" if label_key == "course" else "department",
                "title": f"By {label_key}",
                "rows": rows,
                "charts": [c for k, c in (charts or {}).items() if k.startswith(label_key)],
            }
        )
    history = sorted(history, key=lambda item: item[0])
    trend = ""
    if len(history) >= 2:
        departments = sorted({d for _, a in history for d in a.groups.get("department", {})})
        series = {
            d: [
                round(100 * a.groups["department"][d][1] / a.groups["department"][d][0], 1)
                if a.groups["department"].get(d) and a.groups["department"][d][0]
                else None
                for _, a in history
            ]
            for d in departments
        }
        trend = svg_lines(
            series,
            [human_date(when) for when, _ in history],
            title="Completion rate by department, export by export",
        )
    headline = [
        f"{rate:g}% of {aggregates.active:,} active enrollments are completed; "
        f"{plural(aggregates.active_overdue, 'enrollment')} overdue."
        if rate is not None
        else "No active enrollments in this export."
    ]
    worst = (
        min(groups[1]["rows"], key=lambda r: r["rate_value"])
        if len(groups) > 1 and groups[1]["rows"]
        else None
    )
    if worst:
        headline.append(f"Lowest completion: {worst['name']} ({worst['rate']}).")
    return {
        "kind": "export",
        "scope": scope,
        "as_of": human_date(now, with_time=True),
        "headline": headline,
        "tone": "ok",
        "cards": cards,
        "explanations": explanations,
        "groups": groups,
        "trend": trend,
        "trend_points": len(history),
    }
