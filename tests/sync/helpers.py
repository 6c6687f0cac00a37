"""Plain helpers for the absorb_sync tests: canonical feed rows, frames and CSV text."""

from __future__ import annotations

from datetime import date

import pandas as pd

TODAY = date(2026, 6, 15)
HEADER = (
    "employee_id,first_name,last_name,email,department,job_title,location,manager_id,"
    "hire_date,termination_date,status"
)


def person(employee_id: str, **fields) -> dict:
    """One canonical feed row with sensible defaults (active, hired years ago, managed by E000001)."""
    number = employee_id[1:]
    row = {
        "employee_id": employee_id,
        "first_name": "Ann",
        "last_name": f"Lee{number}",
        "email": f"ann.lee.{number}@example.com",
        "department": "Engineering",
        "job_title": "Software Engineer",
        "location": "London",
        "manager_id": "E000001" if employee_id != "E000001" else None,
        "hire_date": "2020-01-06",
        "termination_date": None,
        "status": "active",
    }
    row.update(fields)
    return row


def people_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame = frame.astype({c: "str" for c in frame.columns})
    frame["_line"] = range(2, len(frame) + 2)
    return frame


def csv_text(rows: list[dict], delimiter: str = ",") -> str:
    header = HEADER.replace(",", delimiter)
    lines = [header]
    for row in rows:
        values = ["" if row[c] is None else str(row[c]) for c in HEADER.split(",")]
        lines.append(delimiter.join(values))
    return "\n".join(lines) + "\n"
