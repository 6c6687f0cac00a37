"""Jobs of ``absorb_bulk_unenrollment``: who -> which enrollments -> gate -> unenroll -> verify.

People are named by HR employee id (Absorb ``externalId``), email/username or Absorb user id,
each optionally restricted to some courses (ids or exact names). Completed enrollments are kept
unless ``include_completed``: removing them would erase compliance history. Re-running finds
nothing left to do (the targets are re-read from Absorb every time).

Run folder: ``requests.json``, ``targets.csv``, ``unresolved.csv``, ``decision.json``,
``outcomes.csv``, ``verification.csv``, ``summary.json``, ``report.html``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from absorb_sync.jobs.runtime import InputError, read_json, storage_path, write_csv, write_json

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import ObjectStoragePath

COMPLETE = 3
HANDOVER_RUN_PREFIX = "leavers__"
DONE_OUTCOMES = ("unenrolled", "already_gone")  # already_gone: another run removed it first
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TARGET_COLUMNS = [
    "person",
    "employee_id",
    "user_id",
    "enrollment_id",
    "course_id",
    "course_name",
    "status",
    "first_name",  # names and department: for the report (read from Absorb's users)
    "last_name",
    "department",
]


class UnenrollmentRefusedError(AirflowFailException):
    """The gate refused the removal; nothing was written."""


class UnenrollmentVerificationError(AirflowFailException):
    """Some enrollments are still active after the unenroll call."""


# ---------------------------------------------------------------- input


def parse_requests(people: Iterable[Any] | None) -> list[dict]:
    """Normalise ``["E000123", {"person": "a@b.c", "courses": [...]}, ...]`` into request dicts."""
    requests = []
    for position, item in enumerate(people or [], start=1):
        if isinstance(item, str) and item.strip():
            requests.append({"person": item.strip(), "courses": []})
        elif isinstance(item, Mapping) and str(item.get("person") or "").strip():
            courses = item.get("courses") or []
            if isinstance(courses, str):
                courses = [c for c in re.split(r"[;|]", courses) if c.strip()]
            requests.append(
                {"person": str(item["person"]).strip(), "courses": [str(c).strip() for c in courses]}
            )
        else:
            raise ValueError(
                f"people item {position} is {item!r}: expected a non-empty string or {{'person': ..., 'courses': [...]}}"
            )
    return requests


def read_people_file(location: str) -> list[dict]:
    """A CSV with a ``person`` (or employee_id / email / user_id) column and optional ``courses``
    (``;``-separated), a JSON list, or a plain text file with one person per line."""
    import csv
    import io
    import json

    path = storage_path(location)
    if not path.exists():
        raise FileNotFoundError(f"people_file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        return parse_requests(json.loads(text))
    if path.suffix.lower() != ".csv":
        return parse_requests(
            [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
        )
    reader = csv.DictReader(io.StringIO(text))
    header = {h.strip().lower(): h for h in reader.fieldnames or []}
    person_column = next(
        (header[c] for c in ("person", "employee_id", "email", "user_id") if c in header), None
    )
    if person_column is None:
        raise ValueError(
            f"people_file {path} needs a person, employee_id, email or user_id column; has {reader.fieldnames}"
        )
    courses_column = header.get("courses")
    items = []
    for row in reader:
        items.append(
            {
                "person": row[person_column] or "",
                "courses": (row.get(courses_column) or "") if courses_column else "",
            }
        )
    return parse_requests([i for i in items if i["person"].strip()])


def check_handover(
    handover: Mapping[str, Any] | None,
    *,
    run_id: str,
    portal: Mapping[str, Any],
    now: datetime,
    max_age_hours: float,
) -> dict | None:
    """Refuse a sync's leavers hand-over that no longer speaks for the present.

    A hand-over may wait (a paused DAG, a full pool, an outage) and run against another portal
    that shares the connection id, or after the feed changed. The whole hand-over is refused when
    it was computed against another portal, is older than ``max_age_hours`` or carries no
    provenance at all; hand-typed runs (no hand-over) are not affected.
    """
    if handover is None:
        if run_id.startswith(HANDOVER_RUN_PREFIX):
            raise UnenrollmentRefusedError(
                f"hand-over run {run_id} carries no provenance (made by an older version?): refused, "
                "nothing was written; the next sync hands its leavers over again"
            )
        return None
    if not isinstance(handover, Mapping):
        raise UnenrollmentRefusedError(f"hand-over must be an object, got {type(handover).__name__}")
    problems = []
    theirs = handover.get("portal") or {}
    if not _same_portal(theirs, portal):
        problems.append(
            f"computed against portal {theirs.get('base_url')} as {theirs.get('api_user')}, "
            f"but this run talks to {portal.get('base_url')} as {portal.get('api_user')}"
        )
    computed_at = _instant(handover.get("computed_at"))
    if computed_at is None:
        problems.append(f"no valid computed_at ({handover.get('computed_at')!r})")
    else:
        age_hours = (now - computed_at).total_seconds() / 3600
        if age_hours > max_age_hours:
            problems.append(
                f"computed {age_hours:.1f} h ago at {computed_at.isoformat()}, older than "
                f"max_handover_age_hours {max_age_hours:g}"
            )
    if problems:
        raise UnenrollmentRefusedError(
            f"hand-over from sync run {handover.get('sync_run_id')} refused, nothing was written: "
            + "; ".join(problems)
            + " (the next sync against this portal hands current leavers over again)"
        )
    return {**handover, "checked_at": now.isoformat(timespec="seconds")}


def _same_portal(theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> bool:
    def norm(value: Any) -> str:
        return str(value or "").strip().rstrip("/").lower()

    return (
        bool(norm(theirs.get("base_url")))
        and norm(theirs.get("base_url")) == norm(ours.get("base_url"))
        and norm(theirs.get("api_user")) == norm(ours.get("api_user"))
    )


def _instant(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def screen_leavers(requests: list[dict], state: Any) -> tuple[list[dict], list[dict]]:
    """Leavers named by a sync (hand-over or last leavers) who are active in the latest accepted
    feed are skipped: rehired, or a corrected typo, since the hand-over was computed."""
    accepted = state.accepted_active_people()
    if accepted is None or not requests:
        return requests, []
    feed_run, active = accepted
    active_keys = {a.lower() for a in active}
    kept, skipped = [], []
    for request in requests:
        if request["person"].lower() in active_keys:
            skipped.append(
                {
                    "person": request["person"],
                    "reason": f"active in the latest accepted HR feed (sync run {feed_run}): not a leaver now",
                }
            )
        else:
            kept.append(request)
    return kept, skipped


def collect_requests(
    *,
    people: list | None,
    people_file: str | None,
    use_last_leavers: bool,
    state: Any,
    screen_people: bool = False,
) -> tuple[list[dict], list[dict]]:
    """All requested people from the three sources, de-duplicated (courses merged per person),
    and the skipped ones with their reason. Leavers that a sync named (``use_last_leavers``, and
    ``people`` of a hand-over when ``screen_people``) are re-checked against the latest feed."""
    try:
        return _collect(people, people_file, use_last_leavers, state, screen_people)
    except (ValueError, FileNotFoundError) as error:
        raise InputError(f"people to unenroll cannot be read, nothing was done: {error}") from error


def _collect(
    people: list | None, people_file: str | None, use_last_leavers: bool, state: Any, screen_people: bool
) -> tuple[list[dict], list[dict]]:
    requests = parse_requests(people)
    skipped: list[dict] = []
    if screen_people:
        requests, skipped = screen_leavers(requests, state)
    if people_file:
        requests += read_people_file(people_file)
    if use_last_leavers:
        leavers, skipped_leavers = screen_leavers(parse_requests(state.last_leavers()), state)
        requests += leavers
        skipped += skipped_leavers
    return _merge_requests(requests), skipped


def _merge_requests(requests: list[dict]) -> list[dict]:
    merged: dict[str, dict] = {}
    for request in requests:
        key = request["person"].lower()
        entry = merged.get(key)
        if entry is None:
            merged[key] = {"person": request["person"], "courses": list(request["courses"])}
        elif entry["courses"] and request["courses"]:
            entry["courses"] = sorted(set(entry["courses"]) | set(request["courses"]))
        else:
            entry["courses"] = []  # one request names no course: all of them
    return list(merged.values())


# ---------------------------------------------------------------- resolve


def resolve_targets(
    *,
    folder: ObjectStoragePath,
    hook: Any,
    requests: list[dict],
    include_completed: bool,
    skipped: list[dict] | None = None,
    handover: Mapping[str, Any] | None = None,
) -> dict:
    """People -> users (one paged read of /users) -> their active enrollments (paged per user)."""
    import pandas as pd

    write_json(folder / "requests.json", requests)
    skipped = list(skipped or [])
    write_csv(folder / "skipped.csv", pd.DataFrame(skipped, columns=["person", "reason"]))
    users = list(hook.list_users())
    index = _user_index(users)
    active_users = sum(1 for u in users if int(u.get("activeStatus") or 0) == 0)
    course_ids = _resolve_course_refs(hook, requests)
    targets, unresolved, kept_completed = [], [], 0
    for request in requests:
        user = index.get(request["person"].lower())
        if user is None:
            unresolved.append(
                {"person": request["person"], "problem": "no Absorb user with this employee id, email or id"}
            )
            continue
        wanted = {course_ids[c] for c in request["courses"]}
        for enrollment in hook.list_user_enrollments(user["id"]):
            if not enrollment.get("isActive", True) or (wanted and enrollment["courseId"] not in wanted):
                continue
            if enrollment.get("status") == COMPLETE and not include_completed:
                kept_completed += 1
                continue
            targets.append(
                {
                    "person": request["person"],
                    "employee_id": user.get("externalId"),
                    "user_id": user["id"],
                    "enrollment_id": enrollment["id"],
                    "course_id": enrollment["courseId"],
                    "course_name": enrollment.get("courseName"),
                    "status": enrollment.get("status"),
                    "first_name": user.get("firstName"),
                    "last_name": user.get("lastName"),
                    "department": user.get("departmentId"),
                }
            )
    if any(t["department"] for t in targets):  # department names: one paged read, only when needed
        names = {d["id"]: d.get("name") for d in hook.list_departments()}
        for target in targets:
            target["department"] = names.get(target["department"])
    frame = pd.DataFrame(targets, columns=TARGET_COLUMNS).drop_duplicates("enrollment_id")
    write_csv(folder / "targets.csv", frame)
    write_csv(folder / "unresolved.csv", pd.DataFrame(unresolved, columns=["person", "problem"]))
    return {
        "people_requested": len(requests),
        "people_resolved": len(requests) - len(unresolved),
        "unresolved": [u["person"] for u in unresolved][:20],
        "targets": len(frame),
        "people_affected": int(frame["user_id"].nunique()),
        "kept_completed": kept_completed,
        "active_users": active_users,
        "skipped": skipped[:20],
        "skipped_count": len(skipped),
        "handover": dict(handover) if handover else None,
    }


def _user_index(users: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Lower-cased employee id, username, email and user id -> user (employee id wins a clash)."""
    index: dict[str, Mapping[str, Any]] = {}
    for key_field in ("id", "emailAddress", "username", "externalId"):
        for user in users:
            value = str(user.get(key_field) or "").strip().lower()
            if value:
                index[value] = user
    return index


def _resolve_course_refs(hook: Any, requests: list[dict]) -> dict[str, str]:
    """Course ids stay; exact course names are looked up in the catalogue (one paged read)."""
    refs = {c for r in requests for c in r["courses"]}
    names = {c for c in refs if not _GUID.match(c)}
    resolved = {c: c for c in refs - names}
    if names:
        by_name: dict[str, list[str]] = {}
        for course in hook.list_courses():
            by_name.setdefault(course["name"], []).append(course["id"])
        problems = [n for n in sorted(names) if len(by_name.get(n, [])) != 1]
        if problems:
            raise InputError(f"course names not found or ambiguous in Absorb: {problems}")
        resolved.update({n: by_name[n][0] for n in names})
    return resolved


# ---------------------------------------------------------------- gate


def gate_targets(
    *,
    folder: ObjectStoragePath,
    resolved: Mapping[str, Any],
    max_count: int,
    max_share_pct: float,
    override: bool,
    override_reason: str | None,
    max_unresolved_pct: float = 50.0,
    dry_run: bool = False,
) -> dict:
    """Hold more than ``max_count`` enrollments, people over ``max_share_pct`` % of active users,
    or a people list of which more than ``max_unresolved_pct`` % match nobody (a wrong file).

    A held decision (``held: true``) waits for a person at the DAG's approval task; an override
    with a reason lets it through without waiting; a dry run writes nothing, so it never waits."""
    if override and not (override_reason or "").strip():
        raise ValueError("override_thresholds needs a non-empty override_reason")
    reasons = []
    requested = resolved["people_requested"]
    unresolved = requested - resolved["people_resolved"]
    if requested and 100.0 * unresolved / requested > max_unresolved_pct:
        names = ", ".join(resolved.get("unresolved", [])[:10])
        reasons.append(
            f"{unresolved} of {requested} people match no Absorb user "
            f"({100.0 * unresolved / requested:.0f} % > max_unresolved_pct {max_unresolved_pct:g}; "
            f"e.g. {names}): is it the right file or portal?"
        )
    if resolved["targets"] > max_count:
        reasons.append(f"{resolved['targets']} enrollments to remove > max_count {max_count}")
    share = 100.0 * resolved["people_affected"] / max(resolved["active_users"], 1)
    if share > max_share_pct:
        reasons.append(
            f"{resolved['people_affected']} people = {share:.1f} % of active users > max_share_pct {max_share_pct}"
        )
    allowed = not reasons or override
    decision = {
        "allowed": allowed,
        "held": not allowed and not dry_run,
        "reasons": reasons,
        "overridden": bool(reasons and override),
        "override_reason": override_reason if override else None,
        "share_pct": round(share, 2),
    }
    if not allowed and dry_run:
        decision["would_hold"] = list(reasons)
    write_json(folder / "decision.json", decision)
    _log_gate_checks(resolved, decision, max_count, max_share_pct, max_unresolved_pct, unresolved)
    if decision["held"]:
        import logging

        logging.getLogger(__name__).warning(
            "unenrollment held for approval, nothing written yet: %s (approve it at the approve task, "
            "or re-trigger with override_thresholds=true and an override_reason)",
            "; ".join(reasons),
        )
    return decision


def _log_gate_checks(
    resolved: Mapping[str, Any],
    decision: Mapping[str, Any],
    max_count: int,
    max_share_pct: float,
    max_unresolved_pct: float,
    unresolved: int,
) -> None:
    """One log line per unenrollment-gate check (observed vs allowed) and the verdict."""
    import logging

    from absorb_sync.gates.logging import log_checks

    requested = resolved["people_requested"]
    unresolved_pct = 100.0 * unresolved / requested if requested else 0.0
    checks = [
        {
            "name": "people matching an Absorb user",
            "passed": unresolved_pct <= max_unresolved_pct,
            "observed": f"{unresolved} of {requested} unmatched ({unresolved_pct:.0f}%)",
            "allowed": f"unmatched <= {max_unresolved_pct:g}%",
        },
        {
            "name": "enrollments to remove",
            "passed": resolved["targets"] <= max_count,
            "observed": resolved["targets"],
            "allowed": f"<= {max_count}",
        },
        {
            "name": "people affected vs active users",
            "passed": decision["share_pct"] <= max_share_pct,
            "observed": f"{decision['share_pct']}% ({resolved['people_affected']} of {resolved['active_users']})",
            "allowed": f"<= {max_share_pct:g}%",
        },
    ]
    verdict = "passed" if not decision["reasons"] else "overridden" if decision["overridden"] else "held"
    counts = {"targets": resolved["targets"], "skipped": resolved.get("skipped_count", 0)}
    log_checks(logging.getLogger(__name__), "unenrollment", checks, verdict, counts=counts)


# ---------------------------------------------------------------- apply + verify


def unenroll_targets(*, folder: ObjectStoragePath, hook: Any, state: Any, dry_run: bool) -> dict:
    """``bulk_unenroll`` in batches; the ids leave the provenance record too."""
    import pandas as pd

    targets = _read_targets(folder)
    if dry_run or targets.empty:
        return {"dry_run": dry_run, "counts": {}, "failed": 0}
    result = hook.bulk_unenroll(targets["enrollment_id"].tolist())
    outcomes = pd.DataFrame(result.outcomes).reindex(columns=["enrollment_id", "outcome", "error"])
    write_csv(folder / "outcomes.csv", targets.merge(outcomes, on="enrollment_id", how="left"))
    state.forget(outcomes.loc[outcomes["outcome"].isin(DONE_OUTCOMES), "enrollment_id"].tolist())
    counts = {str(k): int(v) for k, v in outcomes["outcome"].value_counts().items()}
    return {"dry_run": False, "counts": counts, "failed": counts.get("failed", 0)}


def verify_and_report(
    *, folder: ObjectStoragePath, hook: Any, run_id: str, dry_run: bool, summaries: Mapping[str, Any]
) -> dict:
    """Read each affected user's enrollments back: every target must be gone. Then report."""
    import pandas as pd

    from absorb_sync.report import unenrollment_report, write_html

    targets = _read_targets(folder)
    still_there = pd.DataFrame(columns=TARGET_COLUMNS)
    if not dry_run and not targets.empty:
        remaining = set()
        for user_id in sorted(set(targets["user_id"])):
            remaining |= {e["id"] for e in hook.list_user_enrollments(user_id) if e.get("isActive", True)}
        still_there = targets[targets["enrollment_id"].isin(remaining)]
        write_csv(folder / "verification.csv", still_there)
    applied = summaries.get("unenroll", {})
    summary = {
        "run_id": run_id,
        "dry_run": dry_run,
        "reason": summaries.get("reason"),
        "resolved": summaries.get("resolve", {}),
        "gate": summaries.get("gate", {}),
        "approval": summaries.get("approval"),
        "outcomes": applied.get("counts", {}),
        "still_enrolled": len(still_there),
        "folder": str(folder),
    }
    write_json(folder / "summary.json", summary)
    write_html(folder / "report.html", unenrollment_report(folder, summary, targets, still_there))
    if len(still_there) or applied.get("failed"):
        raise UnenrollmentVerificationError(
            f"{len(still_there)} enrollment(s) still active, {applied.get('failed', 0)} failed; see {folder}"
        )
    return summary


def _read_targets(folder: ObjectStoragePath) -> pd.DataFrame:
    import pandas as pd

    with (folder / "targets.csv").open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle, dtype={c: "string" for c in TARGET_COLUMNS if c != "status"})


def load_requests(folder: ObjectStoragePath) -> list[dict]:
    return read_json(folder / "requests.json")
