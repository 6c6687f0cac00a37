"""The readiness report: ``readiness.json`` (for machines), ``readiness.html`` (for people, the
look of the run reports) and ``first_sync_plan.csv``. Secrets are scrubbed from all of them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from absorb_sync.portal.readiness import FAIL, PASS, SECTIONS, SKIP, WARN, Readiness

JSON_NAME, HTML_NAME, PLAN_NAME = "readiness.json", "readiness.html", "first_sync_plan.csv"
VERDICT_LABELS = {PASS: "pass", WARN: "look", FAIL: "FAIL", SKIP: "skipped"}
CARD_FIGURES = (
    ("feed_people", "Feed people", ""),
    ("matched", "Match an Absorb user", "add"),
    ("match_pct", "Match rate %", ""),
    ("duplicate_external_ids", "Duplicated externalIds", "bad"),
    ("empty_external_ids", "Absorb users without externalId", "warn"),
    ("absorb_users_without_feed_row", "Absorb users not in the feed", "warn"),
    ("rule_courses_resolved", "Rule courses found", ""),
    ("throttled_429", "429 answers", "warn"),
    ("latency_p95_ms", "p95 latency (ms)", ""),
)
SCRUBBED = "***"


def write_report(readiness: Readiness, folder: Any, secrets: Iterable[str] = ()) -> dict[str, str]:
    """Writes the report files into ``folder`` (a local path or ObjectStoragePath); returns their paths."""
    from absorb_sync.jobs.runtime import write_csv
    from absorb_sync.report import write_html

    hidden = [s for s in secrets if s and len(s) >= 4]
    files = {"json": str(folder / JSON_NAME), "html": str(folder / HTML_NAME)}
    plan = readiness.plan_lines
    if plan is not None:
        files["plan"] = write_csv(folder / PLAN_NAME, plan)
    data = json.dumps(readiness.to_json(), indent=2, sort_keys=True, default=str)
    _write_text(folder / JSON_NAME, scrub(data, hidden))
    write_html(folder / HTML_NAME, scrub(render_html(readiness, files), hidden))
    return files


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (password, private key, token) replaced: defence in depth."""
    for secret in secrets:
        text = text.replace(secret, SCRUBBED)
    return text


def _write_text(target: Any, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as handle:
        handle.write(text)


def render_html(readiness: Readiness, files: dict[str, str]) -> str:
    from absorb_sync.report import render

    return render("portal_check.html.j2", html_context(readiness, files))


def html_context(readiness: Readiness, files: dict[str, str]) -> dict:
    from absorb_sync.report_data import human

    failed = readiness.failed()
    warned = [c for c in readiness.checks if c.verdict == WARN]
    if failed:
        headline = [f"NO-GO: {len(failed)} check(s) failed", *[f"{c.name}: {c.message}" for c in failed[:5]]]
        tone = "bad"
    else:
        headline = [
            f"GO: no check failed; {len(warned)} to look at before the first sync"
            if warned
            else "GO: every check passed"
        ]
        tone = "held" if warned else "ok"
    figures = readiness.figures
    cards = [
        {
            "key": key,
            "label": label,
            "value": human(figures[key]),
            "note": "",
            "tone": tone_ if figures[key] else "zero",
        }
        for key, label, tone_ in CARD_FIGURES
        if figures.get(key) is not None
    ]
    plan = figures.get("first_sync_plan") or {}
    plan_rows = [
        {"action": label, "count": human(plan.get(key))}
        for key, label in (
            ("enroll", "Enroll"),
            ("re_enroll", "Re-enroll"),
            ("update_due_date", "Change due date"),
            ("unenroll_leavers", "Leavers' enrollments handed to the unenrollment"),
            ("missing_people", "People without an Absorb user"),
        )
        if key in plan
    ]
    calls = readiness.calls or {}
    return {
        "title": "Absorb portal readiness",
        "run_id": None,
        "dry_run": False,
        "generated": readiness.finished_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "portal": {k: readiness.portal.get(k, "—") for k in ("base_url", "api_user", "conn_id")},
        "headline": headline,
        "tone": tone,
        "cards": cards,
        "calls_line": _calls_line(calls),
        "sections": [
            {
                "title": section[:1].upper() + section[1:],
                "checks": [
                    {**vars(c), "verdict_label": VERDICT_LABELS.get(c.verdict, c.verdict)}
                    for c in readiness.checks
                    if c.section == section
                ],
            }
            for section in SECTIONS
            if any(c.section == section for c in readiness.checks)
        ],
        "shapes": _block(_shape_rows(readiness)),
        "courses": _block(_course_rows(readiness)),
        "plan": _block(plan_rows if plan else []),
        "routes": _block([{"route": r, **_human_all(v)} for r, v in (calls.get("by_route") or {}).items()]),
        "files": [(name, what) for name, what in _file_notes(files)],
    }


def _calls_line(calls: dict) -> str:
    if not calls:
        return "no call was answered"
    methods = ", ".join(calls.get("methods") or [])
    return f"{calls.get('total', 0)} calls in {calls.get('seconds', 0)} s ({methods})"


def _shape_rows(readiness: Readiness) -> list[dict]:
    rows = []
    for check in readiness.checks:
        if check.section != "shapes" or "path" not in check.details:
            continue
        d = check.details
        rows.append(
            {
                "name": check.name,
                "path": d["path"],
                "rows_read": d.get("rows_read"),
                "missing": ", ".join(d.get("missing_fields") or []) or "—",
                "unknown": ", ".join(d.get("unknown_fields") or []) or "—",
                "optional": ", ".join(d.get("missing_optional_fields") or []) or "—",
            }
        )
    return rows


def _course_rows(readiness: Readiness) -> list[dict]:
    for check in readiness.checks:
        if check.name == "rule courses" and check.details.get("courses"):
            return [
                {
                    "reference": c["reference"],
                    "rule": c.get("rule") or "",
                    "course": c.get("course") or "—",
                    "course_id": c.get("course_id") or "—",
                    "problem": c.get("problem") or "",
                }
                for c in check.details["courses"]
            ]
    return []


def _human_all(values: dict) -> dict:
    from absorb_sync.report_data import human

    return {k: human(v) for k, v in values.items()}


def _block(rows: list[dict], limit: int = 200) -> dict:
    return {"rows": rows[:limit], "total": len(rows), "more": len(rows) > limit}


def _file_notes(files: dict[str, str]) -> list[tuple[str, str]]:
    notes = {
        "json": "every verdict and figure, for scripts",
        "html": "this page",
        "plan": "the first sync's plan lines",
    }
    return [(path.rsplit("/", 1)[-1], notes[key]) for key, path in files.items()]
