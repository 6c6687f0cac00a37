"""Export the sandbox's people as an HR feed CSV, optionally with hires, movers and leavers mixed in.

The baseline feed is every seeded/created person with an employee id except the pre-provisioned
ones (they exist in Absorb ahead of their start date but HR has not sent them yet) and the API
user. ``changes=N`` mixes in about a third each of hires (pre-provisioned people, some starting
in the future, plus one or two people Absorb has never seen), movers (new department, job title
and location) and leavers (terminated in the recent past). The db is opened read-only, so this
works while the server runs; the same db, ``changes`` and ``seed`` give the same file.
"""

from __future__ import annotations

import csv
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from absorb_sandbox import store
from absorb_sandbox.seed import DEPARTMENTS, FIRST_NAMES, JOB_TITLES, LAST_NAMES, LOCATIONS

COLUMNS = (
    "employee_id",
    "first_name",
    "last_name",
    "email",
    "department",
    "job_title",
    "location",
    "manager_id",
    "hire_date",
    "termination_date",
    "status",
)

_PEOPLE_SQL = """
SELECT u.external_id, u.first_name, u.last_name, u.email, d.name, u.job_title, u.location,
       s.external_id, u.date_hired, u.date_terminated, u.hr_status, u.preprovisioned, u.active_status
FROM users u
LEFT JOIN departments d ON d.id = u.department_id
LEFT JOIN users s ON s.id = u.supervisor_id
WHERE u.external_id IS NOT NULL AND u.external_id != ''
ORDER BY u.external_id
"""


def _day(value: str | None) -> str:
    return value[:10] if value else ""


def _row(record: tuple) -> dict:
    external_id, first, last, email, department, title, location, manager, hired, terminated, status = record[
        :11
    ]
    return {
        "employee_id": external_id,
        "first_name": first or "",
        "last_name": last or "",
        "email": email or "",
        "department": department or "",
        "job_title": title or "",
        "location": location or "",
        "manager_id": manager or "",
        "hire_date": _day(hired),
        "termination_date": _day(terminated),
        "status": status if status in ("active", "leave", "terminated") else "active",
    }


def export_hr_feed(db_path: str | Path, out_path: str | Path, changes: int = 0, seed: int = 0) -> dict:
    """Write the feed CSV; returns a summary with the employee ids of each kind of change."""
    if changes < 0:
        raise ValueError("changes must be >= 0")
    conn = store.connect(db_path, read_only=True)
    try:
        records = conn.execute(_PEOPLE_SQL).fetchall()
    finally:
        conn.close()
    baseline = [_row(r) for r in records if not r[11]]
    preprovisioned = [_row(r) for r in records if r[11]]
    rng = random.Random(seed)
    today = datetime.now(UTC).date()
    rows = {row["employee_id"]: row for row in baseline}
    summary = {
        "path": str(out_path),
        "baseline_rows": len(baseline),
        "hires": [],
        "new_people": [],
        "movers": [],
        "leavers": [],
    }
    if changes:
        _mix_changes(rows, preprovisioned, records, changes, rng, today, summary)
    ordered = sorted(rows.values(), key=lambda r: r["employee_id"])
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_suffix(out.suffix + ".tmp")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(ordered)
    temporary.replace(out)
    summary["rows"] = len(ordered)
    return summary


def _mix_changes(
    rows: dict[str, dict],
    preprovisioned: list[dict],
    records: list[tuple],
    changes: int,
    rng: random.Random,
    today: date,
    summary: dict,
) -> None:
    hires_wanted = changes - 2 * (changes // 3)
    movers_wanted = changes // 3
    leavers_wanted = changes // 3
    new_people = min(hires_wanted, 1 if hires_wanted < 6 else 2)
    from_preprovisioned = rng.sample(preprovisioned, min(len(preprovisioned), hires_wanted - new_people))
    for person in from_preprovisioned:
        rows[person["employee_id"]] = dict(person, status="active", termination_date="")
        summary["hires"].append(person["employee_id"])
    managers = [
        r["employee_id"] for r in rows.values() if r["job_title"] == "Manager" and r["status"] == "active"
    ]
    next_number = 1 + max((int(r[0][1:]) for r in records if r[0][1:].isdigit()), default=0)
    for offset in range(hires_wanted - len(from_preprovisioned)):
        employee_id = f"E{next_number + offset:06d}"
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        department = rng.choice(DEPARTMENTS)
        rows[employee_id] = {
            "employee_id": employee_id,
            "first_name": first,
            "last_name": last,
            "email": f"{first.lower()}.{last.lower()}.{employee_id[1:]}@example.com",
            "department": department,
            "job_title": rng.choice(JOB_TITLES[department]),
            "location": rng.choice(LOCATIONS),
            "manager_id": rng.choice(managers) if managers else "",
            "hire_date": (today + timedelta(days=rng.randint(-3, 21))).isoformat(),
            "termination_date": "",
            "status": "active",
        }
        summary["hires"].append(employee_id)
        summary["new_people"].append(employee_id)
    changed = set(summary["hires"])
    candidates = sorted(
        eid
        for eid, r in rows.items()
        if r["status"] == "active" and r["job_title"] != "Manager" and eid not in changed
    )
    picked = rng.sample(candidates, min(len(candidates), movers_wanted + leavers_wanted))
    for employee_id in picked[:movers_wanted]:
        row = rows[employee_id]
        department = rng.choice([d for d in DEPARTMENTS if d != row["department"]])
        row.update(
            department=department,
            job_title=rng.choice(JOB_TITLES[department]),
            location=rng.choice([loc for loc in LOCATIONS if loc != row["location"]]),
        )
        summary["movers"].append(employee_id)
    for employee_id in picked[movers_wanted:]:
        rows[employee_id].update(
            status="terminated", termination_date=(today - timedelta(days=rng.randint(1, 14))).isoformat()
        )
        summary["leavers"].append(employee_id)
