"""Jobs of ``absorb_hr_enrollment_sync``: feed -> gate -> people -> plan -> gate -> apply -> verify.

Each step reads its inputs from the run folder and writes its outputs there:

==========================  =====================================================================
feed_snapshot.<ext>         the raw feed, byte for byte (line numbers in rejects refer to it)
feed.parquet                the mapped feed (canonical columns + ``_line``)
feed_validation.json        the full GX validation result; ``rejects.csv`` the quarantined rows
accepted.parquet            rows that passed the row-level checks (the people the sync acts on)
users.parquet               employee_id -> Absorb user id; ``missing_people.csv``
current.parquet             enrollments of the rule courses before the change
plan.csv / plan.parquet     the plan lines with reasons; ``plan_decision.json`` the plan gate
outcomes.csv                what the API answered per line; ``verification.csv`` read-back mismatches
summary.json / report.html  the run's summary and a small page for people
==========================  =====================================================================

The accepted feed is recorded in the sync state (the baseline of the row-count drift check and
of the leavers hand-over) only after a successful apply, never on a dry run: a dry run changes
nothing in Absorb, so it must not move the baseline either.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from absorb_sync.jobs.runtime import InputError, read_frame, read_json, write_csv, write_frame, write_json

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

ENROLLMENT_COLUMNS = [
    "id",
    "userId",
    "courseId",
    "status",
    "isActive",
    "dateAdded",
    "dateDue",
    "dateCompleted",
]
ENROLL_ACTIONS = ("enroll", "re_enroll", "update_due_date")
COMPLETE = 3
DEPARTMENTS_FILE = "absorb_departments.json"  # resolve_people reads them, the user plan uses them
KEEP_EVERY_PAGE = 1 << 20  # read-ahead pages per course: the plan keeps every page anyway


class PlanRefusedError(AirflowFailException):
    """The plan gate refused the plan; nothing was written to Absorb."""


class VerificationError(AirflowFailException):
    """Absorb does not show what the run applied (or some writes failed)."""


FIRST_APPLY_HELP = (
    "or re-trigger with initial_load=true to make this plan the portal's first load "
    "(a scheduled run, or unpausing the DAG, never does that on its own)"
)


# ---------------------------------------------------------------- 1. extract


def validate_inputs(
    *, rules_path: str, column_mapping: Any, override: bool, override_reason: str | None
) -> None:
    """Every input that needs no API call, checked before the run's first step does anything.

    A malformed rules file used to surface only at planning, after users had been created.
    """
    from absorb_sync.feed import FeedError, load_mapping
    from absorb_sync.rules import RulesError, load_rules

    problems = []
    try:
        load_rules(rules_path)
    except RulesError as error:
        problems.append(str(error))
    try:
        load_mapping(column_mapping)
    except FeedError as error:
        problems.append(f"column_mapping: {error}")
    if override and not (override_reason or "").strip():
        problems.append("override_thresholds needs a non-empty override_reason")
    if problems:
        raise InputError("run inputs are invalid, nothing was done: " + "; ".join(problems))


def extract_feed(*, feed_path: str, column_mapping: Any, folder: ObjectStoragePath) -> dict:
    """Snapshot the feed into the run folder, then read and map it (FeedError on an unreadable feed)."""
    import hashlib

    from absorb_sync.feed import (
        DEFAULT_MAX_FEED_BYTES,
        MAX_BYTES_ENV,
        FeedError,
        feed_limit,
        feed_too_big,
        load_mapping,
        read_feed,
    )
    from absorb_sync.jobs.runtime import storage_path

    source = storage_path(feed_path)
    if not source.exists():
        raise FileNotFoundError(f"HR feed not found: {source}")
    snapshot = folder / f"feed_snapshot{source.suffix or '.csv'}"
    digest, copied = hashlib.sha256(), 0
    limit = feed_limit(None, MAX_BYTES_ENV, DEFAULT_MAX_FEED_BYTES)
    try:
        with source.open("rb") as reader, snapshot.open("wb") as writer:
            while chunk := reader.read(1 << 20):
                copied += len(chunk)
                if copied > limit:  # never copy (or parse) an oversized feed whole
                    raise feed_too_big(str(source), f"over {limit:,} bytes (copy stopped there)", limit)
                digest.update(chunk)
                writer.write(chunk)
        feed = read_feed(snapshot, load_mapping(column_mapping))
    except FeedError as error:  # keep the verdict next to the snapshot for whoever looks at the run
        if copied > limit and snapshot.exists():
            snapshot.unlink()
        write_json(folder / "feed_gate.json", {"passed": False, "feed_error": str(error)})
        raise
    write_frame(folder / "feed.parquet", feed.frame)
    summary = {
        "source": str(source),
        "snapshot": str(snapshot),
        "sha256": digest.hexdigest(),
        "rows": len(feed.frame),
        "encoding": feed.encoding,
        "delimiter": feed.delimiter,
    }
    write_json(folder / "feed_source.json", summary)
    return summary


# ---------------------------------------------------------------- 2. feed gate


def gate_feed(*, folder: ObjectStoragePath, state: Any, today: date, max_row_drift_pct: float) -> dict:
    """GX feed gate: rejects go to ``rejects.csv``; a table-level failure raises (nothing written)."""
    from absorb_sync.gates import validate_feed

    frame = read_frame(folder / "feed.parquet")
    previous = state.last_accepted_feed()
    result = validate_feed(
        frame,
        previous_row_count=previous["row_count"] if previous else None,
        max_row_drift_pct=max_row_drift_pct,
        today=today,
    )
    result.save(folder / "feed_validation.json")
    rejected = result.rejected if result.rejected is not None else frame.iloc[0:0]
    write_csv(folder / "rejects.csv", rejected)
    summary = {"gate": result.summary(), "rejected": len(rejected)}
    if not result.passed:
        write_json(folder / "feed_gate.json", summary)
        result.raise_if_failed()
    accepted = result.accepted
    write_frame(folder / "accepted.parquet", accepted)
    active = int((accepted["status"] == "active").sum())
    previous_active = previous.get("active_count") if previous else None
    summary.update(
        accepted=len(accepted),
        active=active,
        previous_row_count=previous["row_count"] if previous else None,
        previous_active=previous_active,
        feed_shrank_pct=_shrink_pct(previous_active, active),
    )
    write_json(folder / "feed_gate.json", summary)
    return summary


def _shrink_pct(previous: int | None, current: int) -> float | None:
    if not previous:
        return None
    return round(100.0 * (previous - current) / previous, 2)


# ---------------------------------------------------------------- 3. people


def resolve_people(
    *,
    folder: ObjectStoragePath,
    hook: Any,
    create_missing_users: bool,
    dry_run: bool,
    rules_path: str | None = None,
) -> dict:
    """Map employee ids to Absorb users with one paged read of ``/users``; the users and the
    departments are kept for the user plan (so the planner reads only enrollments).

    Users are no longer created here: a hire's ``create_user`` is a plan line, gated and applied
    with the enrollments. A short read of the users is recorded, never acted on.
    """
    import pandas as pd

    from absorb_sync.vector import in_set

    people = read_frame(folder / "accepted.parquet")
    if create_missing_users and not dry_run:
        _check_rule_courses(hook, rules_path)  # the plan's inputs hold before any user is planned
    users, incomplete = _read_users(hook)
    write_frame(folder / "absorb_users.parquet", users)
    write_json(folder / DEPARTMENTS_FILE, [_department(d) for d in hook.list_departments()])
    users_by_employee_id, duplicates = _index_users(
        {"externalId": e, "id": i}
        for e, i in zip(users["externalId"], users["id"], strict=True)
        if e is not pd.NA
    )
    del users
    wanted = people[people["status"] != "terminated"]
    missing = wanted[~in_set(wanted["employee_id"], users_by_employee_id)]
    frame = pd.DataFrame(
        {"employee_id": list(users_by_employee_id), "user_id": list(users_by_employee_id.values())},
        dtype="string",
    )
    write_frame(folder / "users.parquet", frame)
    missing_columns = ["_line", "employee_id", "first_name", "last_name", "email", "department", "status"]
    write_csv(folder / "missing_people.csv", missing.reindex(columns=missing_columns))
    write_json(folder / "users_read.json", {"complete": incomplete is None, "problem": incomplete})
    return {
        "people": len(people),
        "matched": int(in_set(people["employee_id"], users_by_employee_id).sum()),
        "missing": len(missing),
        "missing_sample": missing["employee_id"].head(10).tolist(),
        "duplicate_external_ids": duplicates[:10],
        "users_read_complete": incomplete is None,
    }


def _department(row: Mapping[str, Any]) -> dict:
    return {key: row.get(key) for key in ("id", "name", "externalId")}


def _read_users(hook: Any) -> tuple[pd.DataFrame, str | None]:
    """Every Absorb user (only the columns the plans use, read as Arrow pages), and the problem
    when the read came back short (the rows read are kept, never acted on alone)."""
    from absorb_provider.exceptions import AbsorbIncompleteReadError

    from absorb_sync.user_plan import USER_COLUMN_TYPES, users_from_arrow

    pages: list[Any] = []
    problem = None
    try:
        for page in hook.user_tables(USER_COLUMN_TYPES):
            pages.append(page)
    except AbsorbIncompleteReadError as error:
        problem = f"/users: {error}"
    return users_from_arrow(pages), problem


def _index_users(users: Iterable[Mapping[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """externalId -> user id; an external id held by two Absorb users is ambiguous and left out."""
    index: dict[str, str] = {}
    duplicates: set[str] = set()
    for user in users:
        external_id = (user.get("externalId") or "").strip()
        if not external_id:
            continue
        if external_id in index and index[external_id] != user["id"]:
            duplicates.add(external_id)
        index[external_id] = user["id"]
    for external_id in duplicates:
        index.pop(external_id, None)
    return index, sorted(duplicates)


def _check_rule_courses(hook: Any, rules_path: str | None) -> None:
    from absorb_sync.rules import RulesError, load_rules, resolve_courses

    if rules_path is None:
        return
    try:
        resolve_courses(load_rules(rules_path), hook.list_courses())
    except RulesError as error:
        raise InputError(f"rules cannot be applied to this portal, no user was created: {error}") from error


def _text(value: Any) -> str | None:
    import pandas as pd

    return None if value is None or pd.isna(value) else str(value)


# ---------------------------------------------------------------- 4-5. rules + plan


def plan_changes(
    *,
    folder: ObjectStoragePath,
    hook: Any,
    rules_path: str,
    state: Any,
    today: date,
    create_missing_users: bool = False,
) -> dict:
    """User changes, desired enrollments from the rules, current ones from paged course reads, and the diff.

    Enrollments are computed from the post-update view: the rules read the feed's attributes (what
    the user update writes), and a hire to be created is planned under a placeholder user id that
    the apply replaces once the user exists.
    """
    from concurrent.futures import ThreadPoolExecutor

    from absorb_provider.io import use_system_allocator

    from absorb_sync.journal import fold_into_state
    from absorb_sync.plan import build_plan
    from absorb_sync.rules import evaluate_rules, leavers, load_rules, resolve_courses

    use_system_allocator()  # the rule courses' pages are read and freed as the plan is built
    ruleset = load_rules(rules_path)
    catalog = list(hook.list_courses())
    course_ids = resolve_courses(ruleset, catalog)
    names = {c["id"]: c.get("name") for c in catalog if c["id"] in set(course_ids.values())}
    write_json(folder / "rule_courses.json", names)
    people = read_frame(folder / "accepted.parquet")
    with ThreadPoolExecutor(1, thread_name_prefix="rule-courses") as reader:
        # the enrollments are read (mostly waiting on Absorb) while the users and rules are planned
        reading = reader.submit(read_course_enrollments, hook, set(course_ids.values()))
        user_plan, users_problem = _plan_users(
            folder, hook, ruleset, people, state, today, create_missing_users
        )
        users_by_employee_id = user_plan.user_ids
        desired = evaluate_rules(people, ruleset, course_ids, today)
        current, incomplete = reading.result()
    _write_table(folder / "current.parquet", current)
    # Writes of earlier runs whose answers were lost (a crash mid-apply) become provenance first,
    # judged against what Absorb holds now (only when the read is complete: a partial read cannot
    # tell "not written" from "not read").
    journals = fold_into_state(state, current=None if incomplete else lambda: active_pairs(current))

    plan = build_plan(desired, people, users_by_employee_id, current, state.provenance_ids(), today)
    write_frame(folder / "plan.parquet", plan.lines)
    write_csv(folder / "plan.csv", plan.lines)
    leaver_ids = sorted(leavers(people, today)["employee_id"].astype(str))
    if users_problem:
        incomplete = [*incomplete, users_problem]
    meta = {
        "missing_people": list(plan.missing_people),
        "active_in_scope": int(plan.active_in_scope),
        "users": user_plan.summary(),
        "reads_complete": not incomplete,
        "incomplete_reads": incomplete,
        "rule_courses": len(set(course_ids.values())),
        "leavers": leaver_ids,
        "journals_folded": journals,
    }
    write_json(folder / "plan_meta.json", meta)
    return {
        "plan": plan.summary(),
        "users": user_plan.summary(),
        "reads_complete": not incomplete,
        "incomplete_reads": incomplete[:5],
        "desired": len(desired),
        "current_enrollments": current.num_rows,
        "leavers": len(leaver_ids),
    }


def _plan_users(
    folder: ObjectStoragePath,
    hook: Any,
    ruleset: Any,
    people: pd.DataFrame,
    state: Any,
    today: date,
    create_missing: bool,
) -> tuple[Any, str | None]:
    """The user plan (``user_plan.csv``, ``user_notes.csv``) and the users read's problem, if any."""
    from absorb_sync.user_plan import leaver_user_ids, plan_users, protected_keys, user_settings

    settings = user_settings(ruleset.users)
    users = read_frame(folder / "absorb_users.parquet")
    read = read_json(folder / "users_read.json")
    departments = read_json(folder / DEPARTMENTS_FILE) if settings.enabled or create_missing else []
    open_enrollments = None
    if settings.deactivate_leavers and read["complete"]:
        open_enrollments = _open_enrollments(hook, leaver_user_ids(people, users, today))
    user_plan = plan_users(
        people,
        users,
        departments,
        settings,
        today=today,
        create_missing=create_missing,
        managed=state.managed_people() if settings.deactivate_leavers else set(),
        protected=protected_keys(settings, (state.portal or {}).get("api_user")),
        open_enrollments=open_enrollments,
        users_read_complete=read["complete"],
    )
    write_frame(folder / "user_plan.parquet", user_plan.lines)
    write_csv(folder / "user_plan.csv", user_plan.lines)
    write_csv(folder / "user_notes.csv", user_plan.notes)
    return user_plan, read["problem"]


def _open_enrollments(hook: Any, user_ids: list[str]) -> dict[str, int] | None:
    """Lower-case user id -> open (active, incomplete) enrollments in any course; None if a read failed."""
    from absorb_provider.exceptions import AbsorbError
    from absorb_provider.hooks.absorb import BULK_READ_USERS

    counts = dict.fromkeys((u.lower() for u in user_ids), 0)
    try:
        for start in range(0, len(user_ids), BULK_READ_USERS):
            for row in hook.list_bulk_student_courses(user_ids[start : start + BULK_READ_USERS]):
                if row.get("isActive", True) and row.get("status") != COMPLETE:
                    key = str(row.get("userId")).lower()
                    counts[key] = counts.get(key, 0) + 1
    except AbsorbError:
        return None
    return counts


def _write_table(target: ObjectStoragePath, table: pa.Table) -> None:
    """Parquet straight from Arrow (no pandas copy of the portal's enrollments)."""
    import pyarrow.parquet as pq

    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as handle:
        pq.write_table(table, handle)


def read_course_enrollments(hook: Any, course_ids: Iterable[str]) -> tuple[pa.Table, list[str]]:
    """Enrollments of some courses as one Arrow table of ``ENROLLMENT_COLUMNS`` (no dict or Python
    string per row), and the incomplete reads (a course read short is left out whole).

    Courses are read concurrently through the provider's ``tables_by_course`` (at most the
    connection's ``max_concurrency`` at once, each one page ahead, all within its rate limit);
    every page is kept, so the readers never wait for the consumer.
    """
    import pyarrow as pa
    from absorb_provider.exceptions import AbsorbIncompleteReadError
    from absorb_provider.io import COURSE_ENROLLMENT_FIELDS, raw_arrow_schema, tables_by_course

    ordered = sorted(course_ids)
    pages: dict[str, list[pa.Table]] = {}
    incomplete: dict[str, str] = {}

    def skip_short_read(course_id: str, error: BaseException) -> bool:
        if not isinstance(error, AbsorbIncompleteReadError):
            return False
        incomplete[course_id] = f"{course_id}: {error}"
        return True

    def read(course_id: str) -> Iterator[pa.Table]:
        for page in hook.course_enrollment_tables(course_id):
            yield page.select(ENROLLMENT_COLUMNS)

    workers = max(1, min(int(hook.settings.max_concurrency), len(ordered)))
    for course_id, page in tables_by_course(
        read, ordered, concurrency=workers, depth=KEEP_EVERY_PAGE, on_error=skip_short_read
    ):
        pages.setdefault(course_id, []).append(page)
    tables = [
        page for course_id in ordered if course_id not in incomplete for page in pages.get(course_id, [])
    ]
    schema = raw_arrow_schema(COURSE_ENROLLMENT_FIELDS)
    empty = pa.table({name: pa.array([], schema.field(name).type) for name in ENROLLMENT_COLUMNS})
    return pa.concat_tables([empty, *tables]), [incomplete[c] for c in ordered if c in incomplete]


def active_pairs(current: pa.Table | pd.DataFrame) -> dict[tuple[str, str], str]:
    """(user id, course id) -> active enrollment id, lower-case (what a journal fold compares)."""
    if not hasattr(current, "iloc"):  # an Arrow table: only the columns compared
        current = current.select(["id", "userId", "courseId", "isActive"]).to_pandas()
    active = current[current["isActive"].fillna(True).astype(bool)]
    keys = zip(
        active["userId"].astype(str).str.lower(), active["courseId"].astype(str).str.lower(), strict=True
    )
    return dict(zip(keys, active["id"].astype(str), strict=True))


def load_plan(folder: ObjectStoragePath):
    """The Plan saved by ``plan_changes`` (lines + meta), for the tasks after it."""
    from absorb_sync.plan import Plan

    meta = read_json(folder / "plan_meta.json")
    return (
        Plan(
            lines=read_frame(folder / "plan.parquet"),
            missing_people=meta["missing_people"],
            active_in_scope=meta["active_in_scope"],
        ),
        meta,
    )


# ---------------------------------------------------------------- 6. plan gate


def gate_plan(
    *,
    folder: ObjectStoragePath,
    state: Any,
    run_id: str,
    feed_gate: Mapping[str, Any],
    max_removal_pct: float,
    max_additions: int | None,
    override: bool,
    override_reason: str | None,
    initial_load: bool = False,
    dry_run: bool = False,
    max_deactivation_pct: float = 5.0,
) -> dict:
    """Refuse a plan that removes too much, adds too much, rests on a short read or a shrunk feed,
    or would be the first write to a portal without ``initial_load``. A refusal writes the report
    (the plan people must look at) and names the way to go ahead."""
    from absorb_sync.plan import check_plan

    plan, meta = load_plan(folder)
    shrank = feed_gate.get("feed_shrank_pct")
    feed_shrank = shrank is not None and shrank > max_removal_pct
    first_apply = state.last_accepted_feed() is None
    holds = []
    if first_apply and not initial_load and not dry_run:
        portal = state.portal or {}
        holds.append(
            f"first apply against portal {portal.get('base_url')} as API user {portal.get('api_user')}: "
            "no feed has been accepted for this portal yet"
        )
    decision = check_plan(
        plan,
        max_removal_pct=max_removal_pct,
        max_additions=max_additions,
        reads_complete=meta["reads_complete"],
        feed_shrank=feed_shrank,
        override=override,
        override_reason=override_reason,
        holds=holds,
        users=meta.get("users"),
        max_deactivation_pct=max_deactivation_pct,
    )
    summary = {
        "allowed": decision.allowed,
        "reasons": list(decision.reasons),
        "overridden": decision.overridden,
        "override_reason": decision.override_reason,
        "max_removal_pct": max_removal_pct,
        "max_deactivation_pct": max_deactivation_pct,
        "users": meta.get("users"),
        "max_additions": max_additions,
        "feed_shrank_pct": shrank,
        "first_apply": first_apply,
        "initial_load": bool(initial_load and first_apply),
        "plan": plan.summary(),
    }
    _log_plan_checks(summary, meta, holds, feed_shrank)
    if not meta["reads_complete"]:
        summary["held"] = False
        write_json(folder / "plan_decision.json", summary)
        message = (
            f"plan refused, nothing was written: {'; '.join(decision.reasons)}. This cannot be approved "
            "or overridden: re-run once Absorb answers every read in full"
        )
        _write_report(folder, _held_summary(run_id, message, plan, summary, folder), plan.lines, None)
        raise PlanRefusedError(f"{message}; plan and report in {folder}")
    held = not decision.allowed and not dry_run
    summary["held"] = held
    if not decision.allowed and dry_run:  # a dry run writes nothing: nothing to approve
        summary["would_hold"] = list(decision.reasons)
    write_json(folder / "plan_decision.json", summary)
    if held:
        how = (
            FIRST_APPLY_HELP
            if holds
            else "or re-trigger with override_thresholds=true and an override_reason"
        )
        message = (
            f"plan held for approval, nothing written yet: {'; '.join(decision.reasons)} "
            f"(approve it at the approve_plan task, {how})"
        )
        _write_report(folder, _held_summary(run_id, message, plan, summary, folder), plan.lines, None)
    return summary


def _log_plan_checks(
    summary: Mapping[str, Any], meta: Mapping[str, Any], holds: list[str], feed_shrank: bool
) -> None:
    """One log line per plan-gate check (observed vs allowed) and the verdict, for the task log."""
    import logging

    from absorb_sync.gates.logging import log_checks

    plan = summary["plan"]
    users = summary.get("users") or {}
    limit = summary["max_additions"]
    checks = [
        {
            "name": "Absorb reads complete",
            "passed": bool(meta["reads_complete"]),
            "observed": "complete"
            if meta["reads_complete"]
            else f"{len(meta['incomplete_reads'])} incomplete",
            "allowed": "complete (no override)",
        },
        {
            "name": "removals vs active enrollments in the rule courses",
            "passed": not plan["removals"] or plan["removal_pct"] <= summary["max_removal_pct"],
            "observed": f"{plan['removal_pct']}% ({plan['removals']} of {plan['active_in_scope']})",
            "allowed": f"<= {summary['max_removal_pct']:g}%",
        },
        {
            "name": "user deactivations vs active users",
            "passed": not users.get("deactivations")
            or users["deactivation_pct"] <= summary["max_deactivation_pct"],
            "observed": f"{users.get('deactivation_pct', 0.0)}% ({users.get('deactivations', 0)} of "
            f"{users.get('active_users', 0)})",
            "allowed": f"<= {summary['max_deactivation_pct']:g}%",
        },
        {
            "name": "additions",
            "passed": limit is None or plan["additions"] <= limit,
            "observed": plan["additions"],
            "allowed": "no limit" if limit is None else f"<= {limit}",
        },
        {
            "name": "active people vs the last accepted feed",
            "passed": not feed_shrank,
            "observed": "n/a"
            if summary["feed_shrank_pct"] is None
            else f"shrank {summary['feed_shrank_pct']}%",
            "allowed": f"shrink <= {summary['max_removal_pct']:g}%",
        },
        {
            "name": "first apply against this portal",
            "passed": not holds,
            "observed": "first apply" if summary["first_apply"] else "baseline exists",
            "allowed": "initial_load or an approval" if summary["first_apply"] else "-",
        },
    ]
    verdict = "passed" if not summary["reasons"] else "overridden" if summary["overridden"] else "held"
    if not meta["reads_complete"]:
        verdict = "refused"
    log_checks(logging.getLogger(__name__), "plan", checks, verdict, counts=plan["counts"])


def _held_summary(run_id: str, message: str, plan: Any, gate: Mapping[str, Any], folder: Any) -> dict:
    return {
        "run_id": run_id,
        "dry_run": False,
        "held": message,
        "plan": plan.summary(),
        "plan_gate": {k: v for k, v in gate.items() if k != "plan"},
        "folder": str(folder),
    }


# ---------------------------------------------------------------- 7. apply


def apply_plan(*, folder: ObjectStoragePath, hook: Any, state: Any, run_id: str, dry_run: bool) -> dict:
    """Users first (create, reactivate, update), then bulk enrollments and the sync's own removals,
    then the leavers' deactivations; every write journalled as it happens.

    The intents are durable before the first write and each answer as it arrives, then the
    journal is folded into provenance, so a crash at any point loses no ownership (see
    :mod:`absorb_sync.journal`). User writes are idempotent (upsert on the employee id, PUT of
    the same fields), so a re-run after a crash re-plans them from Absorb and converges.
    """
    import pandas as pd

    from absorb_sync.jobs.runtime import run_key
    from absorb_sync.journal import WriteJournal, fold_into_state

    if dry_run:
        return {"dry_run": True, "applied": False, "counts": {}}
    plan, _ = load_plan(folder)
    lines = plan.lines.reset_index(drop=True)
    user_lines = _user_lines(folder)
    ours = lines[lines["handled_by"] == "sync"]
    enroll_lines = ours[ours["action"].isin(ENROLL_ACTIONS)]
    removals = ours[ours["action"] == "unenroll"].dropna(subset=["enrollment_id"])
    journal = WriteJournal(state.location / "journal", run_key(run_id))
    journal.begin(run_id)
    journal.intents([*_user_intents(user_lines, run_id), *_intents(enroll_lines, removals, run_id)])
    outcomes: list[dict] = []
    user_outcomes: list[dict] = []
    try:
        user_outcomes += _apply_user_writes(hook, journal, user_lines, before_enrollments=True)
        created = _created_ids(user_outcomes)
        write_json(folder / "created_users.json", created)
        enroll_lines, unresolved = _resolve_new_users(enroll_lines, created)
        outcomes += unresolved
        journal.outcomes(unresolved)
        outcomes += _apply_writes(hook, journal, enroll_lines, removals)
        user_outcomes += _apply_user_writes(hook, journal, user_lines, before_enrollments=False)
    finally:
        journal.flush()
        done = ("created", *USER_DONE_WORDS.values())
        state.record_user_changes([{**o, "run_id": run_id} for o in user_outcomes if o["outcome"] in done])
    folded = fold_into_state(state, run_key(run_id))
    table = _outcome_table(lines, outcomes)
    write_csv(folder / "outcomes.csv", table)
    user_table = pd.DataFrame(user_outcomes, columns=USER_OUTCOME_COLUMNS).astype(object)
    user_table["fields"] = user_table["fields"].map(lambda f: ", ".join(f or []))
    write_csv(folder / "user_outcomes.csv", user_table)
    write_frame(folder / "user_outcomes.parquet", user_table)
    counts = {str(k): int(v) for k, v in pd.Series([o["outcome"] for o in outcomes]).value_counts().items()}
    user_counts = {
        str(k): int(v) for k, v in pd.Series([o["outcome"] for o in user_outcomes]).value_counts().items()
    }
    return {
        "dry_run": False,
        "applied": True,
        "counts": counts,
        "user_counts": user_counts,
        "failed": counts.get("failed", 0) + user_counts.get("failed", 0),
        "provenance": {"recorded": folded["created"], "adopted": folded["adopted"]},
    }


USER_OUTCOME_COLUMNS = ["key", "action", "employee_id", "user_id", "name", "outcome", "fields", "error"]
USER_WRITES_FIRST = ("create_user", "reactivate_user", "update_user")


def _user_lines(folder: ObjectStoragePath) -> pd.DataFrame:
    import pandas as pd

    from absorb_sync.user_plan import USER_LINE_COLUMNS

    path = folder / "user_plan.parquet"
    return read_frame(path) if path.exists() else pd.DataFrame(columns=USER_LINE_COLUMNS)


def _user_key(line: Mapping[str, Any]) -> str:
    return f"user:{line['action']}:{line['employee_id']}"


def _user_intents(user_lines: pd.DataFrame, run_id: str) -> list[dict]:
    return [
        {
            "key": _user_key(line),
            "action": line["action"],
            "employee_id": line["employee_id"],
            "user_id": line["user_id"],
            "fields": sorted(json.loads(line["payload"])),
            "run_id": run_id,
        }
        for line in user_lines.to_dict("records")
    ]


def _apply_user_writes(
    hook: Any, journal: Any, user_lines: pd.DataFrame, *, before_enrollments: bool
) -> list[dict]:
    """Creations, reactivations and updates (before the enrollments), or deactivations (after).

    Reactivations, updates and deactivations go through the hook's bulk user writes (each user
    read first: a change already in place is ``unchanged`` and sends nothing).
    """
    from absorb_sync.user_plan import payload_of

    lines = user_lines.to_dict("records")
    if not before_enrollments:
        return _deactivate(hook, journal, [line for line in lines if line["action"] == "deactivate_user"])
    outcomes = [_create_user(hook, journal, line) for line in lines if line["action"] == "create_user"]
    created = _created_ids(outcomes)
    rehires = [line for line in lines if line["action"] == "reactivate_user"]
    outcomes += _bulk_user_writes(
        journal,
        rehires,
        lambda on: hook.reactivate_users([line["user_id"] for line in rehires], on_outcomes=on),
    )
    movers = [line for line in lines if line["action"] == "update_user"]
    outcomes += _bulk_user_writes(
        journal,
        movers,
        lambda on: hook.bulk_update_users(
            [(line["user_id"], payload_of(line, created)) for line in movers], on_outcomes=on
        ),
    )
    return outcomes


def _deactivate(hook: Any, journal: Any, leavers: list[dict]) -> list[dict]:
    """Deactivations, each re-checked first: a leaver with an open enrollment again is skipped."""
    from absorb_sync.user_plan import payload_of

    if not leavers:
        return []
    still_open = _open_enrollments(hook, [line["user_id"] for line in leavers])
    ready, skipped = [], []
    for line in leavers:
        left = None if still_open is None else still_open.get(str(line["user_id"]).lower(), 0)
        if left == 0:
            ready.append(line)
            continue
        problem = "enrollments unreadable" if left is None else f"{left} open enrollment(s)"
        skipped.append(_user_outcome(line, "skipped", error=f"not deactivated at apply time: {problem}"))
    journal.outcomes(skipped)
    return skipped + _bulk_user_writes(
        journal,
        ready,
        lambda on: hook.deactivate_users(
            [(line["user_id"], payload_of(line).get("dateTerminated")) for line in ready], on_outcomes=on
        ),
    )


def _create_user(hook: Any, journal: Any, line: Mapping[str, Any]) -> dict:
    """``POST /users`` upserts on the employee id / username: a repeated create finds the user."""
    from absorb_provider.exceptions import AbsorbError

    from absorb_sync.user_plan import payload_of

    try:
        user = hook.upsert_user(payload_of(line))
        outcome = _user_outcome(line, "created", user_id=(user or {}).get("id"))
    except (AbsorbError, ValueError) as error:
        outcome = _user_outcome(line, "failed", error=str(error)[:300])
    journal.outcomes([outcome])
    return outcome


USER_DONE_WORDS = {
    "reactivate_user": "reactivated",
    "update_user": "updated",
    "deactivate_user": "deactivated",
}


def _bulk_user_writes(journal: Any, lines: list[dict], write: Any) -> list[dict]:
    """Run one bulk user write; its answers (keyed by user id) become this plan's outcome rows."""
    if not lines:
        return []
    by_user = {str(line["user_id"]).lower(): line for line in lines}

    def ours(rows: list[dict]) -> list[dict]:
        result = []
        for row in rows:
            line = by_user[str(row.get("user_id")).lower()]
            word = USER_DONE_WORDS[line["action"]] if row["outcome"] == "updated" else row["outcome"]
            result.append(_user_outcome(line, word, error=row.get("error"), changed=row.get("changed")))
        return result

    answers = write(lambda rows: journal.outcomes(ours(rows)))
    return ours(answers.outcomes)


def _user_outcome(line: Mapping[str, Any], outcome: str, **extra: Any) -> dict:
    from absorb_sync.user_plan import payload_of

    changed = extra.pop("changed", None)
    return {
        "key": _user_key(line),
        "action": line["action"],
        "employee_id": line["employee_id"],
        "user_id": extra.pop("user_id", line["user_id"]),
        "name": line["name"],
        "outcome": outcome,
        "fields": sorted(changed if changed is not None else payload_of(line)),
        "error": extra.pop("error", None),
    }


def _created_ids(outcomes: list[dict]) -> dict[str, str]:
    return {o["employee_id"]: o["user_id"] for o in outcomes if o["outcome"] == "created" and o["user_id"]}


def _resolve_new_users(
    enroll_lines: pd.DataFrame, created: Mapping[str, str]
) -> tuple[pd.DataFrame, list[dict]]:
    """Enrollment lines of hires get their new user id; lines of a hire not created fail, unsent."""
    from absorb_sync.user_plan import PLACEHOLDER, is_placeholder

    new = enroll_lines["user_id"].map(is_placeholder).astype(bool)
    if not new.any():
        return enroll_lines, []
    ids = enroll_lines.loc[new, "user_id"].map(lambda u: created.get(u[len(PLACEHOLDER) :]))
    lines = enroll_lines.copy()
    lines.loc[new, "user_id"] = ids
    missing = lines[new & lines["user_id"].isna()]
    unresolved = [
        {"key": int(key), "outcome": "failed", "enrollment_id": None, "error": "the user was not created"}
        for key in missing.index
    ]
    return lines.drop(index=missing.index), unresolved


def _apply_writes(hook: Any, journal: Any, enroll_lines: pd.DataFrame, removals: pd.DataFrame) -> list[dict]:
    """The bulk enrollments, then the sync's own removals; every answer goes to the journal as it comes."""
    outcomes: list[dict] = []
    if not enroll_lines.empty:
        items = [_enroll_item(key, line) for key, line in enroll_lines.iterrows()]
        outcomes += hook.bulk_enroll(items, on_outcomes=journal.outcomes).outcomes
    if not removals.empty:
        result = hook.bulk_unenroll(
            removals["enrollment_id"].astype(str).tolist(), on_outcomes=journal.outcomes
        )
        key_by_id = {str(eid): key for key, eid in removals["enrollment_id"].items()}
        outcomes += [
            {**o, "key": key_by_id.get(str(o.get("enrollment_id")), o.get("key"))} for o in result.outcomes
        ]
    return outcomes


def _intents(enroll_lines: pd.DataFrame, removals: pd.DataFrame, run_id: str) -> list[dict]:
    """Journal rows for the writes about to be sent (keys match the outcomes' keys)."""
    rows = [
        {
            "key": int(key),
            "action": line["action"],
            "user_id": line["user_id"],
            "course_id": line["course_id"],
            "enrollment_id": _text(line.get("enrollment_id")),
            "rule": _text(line.get("rule")),
            "run_id": run_id,
        }
        for key, line in enroll_lines.iterrows()
    ]
    rows += [
        {
            "key": str(line["enrollment_id"]),
            "action": "unenroll",
            "user_id": line["user_id"],
            "course_id": line["course_id"],
            "enrollment_id": str(line["enrollment_id"]),
            "rule": None,
            "run_id": run_id,
        }
        for _, line in removals.iterrows()
    ]
    return rows


def _enroll_item(key: Any, line: pd.Series) -> dict:
    due = line.get("due_date")
    return {
        "user_id": line["user_id"],
        "course_id": line["course_id"],
        "due_date": None if due is None or due != due else str(due),
        "re_enroll": line["action"] == "re_enroll",
        "key": int(key),
    }


def _outcome_table(lines: pd.DataFrame, outcomes: list[dict]) -> pd.DataFrame:
    import pandas as pd

    columns = ["key", "outcome", "enrollment_id", "error"]
    answered = (
        pd.DataFrame(outcomes)
        .reindex(columns=columns)
        .rename(columns={"enrollment_id": "result_enrollment_id"})
    )
    if answered.empty:
        return answered
    context = lines[
        ["action", "employee_id", "user_id", "course_id", "enrollment_id", "rule", "reason", "due_date"]
    ]
    return answered.merge(context, left_on="key", right_index=True, how="left")


# ---------------------------------------------------------------- 7b. verify + report


def verify_and_report(
    *,
    folder: ObjectStoragePath,
    hook: Any,
    state: Any,
    run_id: str,
    dry_run: bool,
    summaries: Mapping[str, Any],
) -> dict:
    """Read the rule courses back, compare with the plan, write the report; raise on any miss.

    On success (and not a dry run) the feed becomes the accepted baseline, and the leavers that
    are new since the last accepted feed are named for the unenrollment hand-over.
    """
    import pandas as pd

    plan, meta = load_plan(folder)
    lines = plan.lines
    applied = summaries.get("apply", {})
    mismatches, read_back = pd.DataFrame(), None
    if not dry_run and applied.get("applied"):
        created = read_json(folder / "created_users.json") if (folder / "created_users.json").exists() else {}
        checked = _with_created_users(lines, created)
        if not checked.empty:
            mismatches, read_back = _read_back(hook, checked, read_frame(folder / "current.parquet"))
        user_problems = _read_back_users(hook, folder, created)
        mismatches = pd.concat([m for m in (mismatches, user_problems) if not m.empty] or [mismatches])
        write_csv(folder / "verification.csv", mismatches)
    failed = int(applied.get("failed", 0) or 0)
    new_leavers = sorted(set(meta["leavers"]) - set(state.last_leavers()))
    leaver_lines = lines[lines["handled_by"] != "sync"]
    handover = sorted(set(new_leavers) | set(leaver_lines["employee_id"].dropna().astype(str)))
    source = read_json(folder / "feed_source.json") if (folder / "feed_source.json").exists() else {}
    summary = {
        "run_id": run_id,
        "dry_run": dry_run,
        "plan": plan.summary(),
        "users": {**meta.get("users", {}), "outcomes": applied.get("user_counts", {})},
        "outcomes": applied.get("counts", {}),
        "failed_writes": failed,
        "verification_mismatches": len(mismatches),
        "read_back": read_back,
        "rejected_rows": summaries.get("feed_gate", {}).get("rejected", 0),
        "missing_people": len(meta["missing_people"]),
        "leavers_handed_over": [] if dry_run else handover,
        "handover": None if dry_run or not handover else handover_provenance(state, run_id, source),
        "plan_gate": {k: v for k, v in summaries.get("plan_gate", {}).items() if k != "plan"},
        "approval": summaries.get("approval"),
        "folder": str(folder),
    }
    write_json(folder / "summary.json", summary)
    _write_report(folder, summary, lines, mismatches)
    if failed or len(mismatches):
        raise VerificationError(
            f"{failed} write(s) failed and {len(mismatches)} plan line(s) are not visible in Absorb; "
            f"see {folder / 'outcomes.csv'} and {folder / 'verification.csv'} (a re-run repairs them)"
        )
    if not dry_run:
        people = read_frame(folder / "accepted.parquet")
        state.record_accepted_feed(
            row_count=len(read_frame(folder / "feed.parquet")),
            active_count=int((people["status"] == "active").sum()),
            run_id=run_id,
            leavers=meta["leavers"],
            active_ids=sorted(set(people["employee_id"].astype(str)) - set(meta["leavers"])),
            feed_sha256=source.get("sha256"),
        )
        state.record_managed_people(
            people.loc[people["status"] == "active", "employee_id"].astype(str), run_id
        )
    return summary


def _with_created_users(lines: pd.DataFrame, created: Mapping[str, str]) -> pd.DataFrame:
    """Plan lines with the hires' placeholder user ids replaced (lines of hires not created dropped)."""
    from absorb_sync.user_plan import PLACEHOLDER, is_placeholder

    new = lines["user_id"].map(is_placeholder).astype(bool)
    if not new.any():
        return lines
    lines = lines.copy()
    lines.loc[new, "user_id"] = lines.loc[new, "user_id"].map(lambda u: created.get(u[len(PLACEHOLDER) :]))
    return lines[lines["user_id"].notna()]


def _read_back_users(hook: Any, folder: ObjectStoragePath, created: Mapping[str, str]) -> pd.DataFrame:
    """User lines Absorb does not reflect: each written user read back (``GET /users/{id}``)."""
    import pandas as pd

    from absorb_sync.user_plan import payload_of, same_value

    columns = ["action", "employee_id", "course_id", "enrollment_id", "problem"]
    path = folder / "user_outcomes.parquet"
    if not path.exists():
        return pd.DataFrame(columns=columns)
    outcomes = read_frame(path)
    lines = _user_lines(folder)
    done = outcomes[outcomes["outcome"].isin(["created", "reactivated", "updated", "deactivated"])]
    payloads = {_user_key(line): payload_of(line, created) for line in lines.to_dict("records")}
    problems = []
    for outcome in done.to_dict("records"):
        user = hook.get_user(outcome["user_id"])
        wrong = [
            f"{k} {user.get(k)!r} != {v!r}"
            for k, v in payloads.get(outcome["key"], {}).items()
            if k != "username" and not same_value(k, user.get(k), v)
        ]
        if wrong:
            problems.append(
                {
                    "action": outcome["action"],
                    "employee_id": outcome["employee_id"],
                    "problem": "; ".join(wrong),
                }
            )
    return pd.DataFrame(problems, columns=columns)


def handover_provenance(state: Any, run_id: str, source: Mapping[str, Any]) -> dict:
    """What a leavers hand-over was computed from, for the unenrollment to re-check when it runs."""
    from datetime import UTC, datetime

    portal = state.portal or {}
    return {
        "sync_run_id": run_id,
        "feed_sha256": source.get("sha256"),
        "portal": {"base_url": portal.get("base_url"), "api_user": portal.get("api_user")},
        "computed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _read_back(
    hook: Any, lines: pd.DataFrame, current: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, dict]:
    """Plan lines of the sync that Absorb does not reflect.

    Only what the apply touched is read again, the cheaper way: the touched users through
    ``/bulk/studentcourses`` (100 users a call), or the touched courses page by page (their
    size known from the plan's own read of them). Returns the mismatches and what the reads cost.
    """
    import pandas as pd

    ours = lines[lines["handled_by"] == "sync"]
    users = sorted(set(ours["user_id"].dropna().astype(str)))
    courses = sorted(set(ours["course_id"].dropna().astype(str)))
    started = time.monotonic()
    seen, mode, calls = _touched_enrollments(hook, users, courses, current)
    cost = {"mode": mode, "calls": calls, "seconds": round(time.monotonic() - started, 2)}
    seen = seen[seen["isActive"].fillna(True).astype(bool)]
    seen = seen[seen["userId"].astype(str).str.lower().isin({u.lower() for u in users})]
    active = {
        (str(r["userId"]).lower(), str(r["courseId"]).lower()): r
        for r in seen[["id", "userId", "courseId", "dateDue"]].to_dict("records")
    }
    active_ids = {str(i) for i in seen["id"]}
    problems = []
    for line in ours.to_dict("records"):
        found = active.get((str(line["user_id"]).lower(), str(line["course_id"]).lower()))
        problem = _line_problem(line, found, active_ids)
        if problem:
            problems.append(
                {
                    **{k: line.get(k) for k in ("action", "employee_id", "course_id", "enrollment_id")},
                    "problem": problem,
                }
            )
    columns = ["action", "employee_id", "course_id", "enrollment_id", "problem"]
    return pd.DataFrame(problems, columns=columns), cost


def _touched_enrollments(
    hook: Any, users: list[str], courses: list[str], current: pd.DataFrame | None
) -> tuple[pd.DataFrame, str, int]:
    """Enrollments of ``users`` in ``courses``, by bulk user reads or by course pages: fewer calls wins."""
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd
    from absorb_provider.hooks.absorb import BULK_READ_USERS

    user_calls = -(-len(users) // BULK_READ_USERS)
    sizes = current["courseId"].astype(str).value_counts() if current is not None else pd.Series(dtype=int)
    course_calls = sum(1 + int(sizes.get(c, 0)) // 1000 for c in courses)
    if course_calls < user_calls:
        table, incomplete = read_course_enrollments(hook, courses)
        if incomplete:
            raise VerificationError(f"cannot verify: read-back of courses incomplete: {incomplete[:3]}")
        return table.to_pandas(), "course pages", course_calls
    chunks = [users[i : i + BULK_READ_USERS] for i in range(0, len(users), BULK_READ_USERS)]
    workers = max(1, min(int(hook.settings.max_concurrency), len(chunks)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="absorb-verify") as pool:
        pages = list(pool.map(lambda chunk: hook.list_bulk_student_courses(chunk, courses), chunks))
    rows = [row for page in pages for row in page]
    return pd.DataFrame(rows).reindex(columns=ENROLLMENT_COLUMNS), "bulk user reads", user_calls


def _line_problem(
    line: Mapping[str, Any], found: Mapping[str, Any] | None, active_ids: set[str]
) -> str | None:
    action = line["action"]
    if action == "unenroll":
        return "still enrolled" if line.get("enrollment_id") in active_ids else None
    if found is None:
        return "no active enrollment"
    if action == "re_enroll" and found["id"] == line.get("enrollment_id"):
        return "old enrollment still the active one"
    due = line.get("due_date")
    if action in ENROLL_ACTIONS and due and due == due and str(found.get("dateDue") or "")[:10] != str(due):
        return f"due date {str(found.get('dateDue'))[:10]} != {due}"
    return None


def _write_report(
    folder: ObjectStoragePath,
    summary: Mapping[str, Any],
    lines: pd.DataFrame,
    mismatches: pd.DataFrame | None,
) -> None:
    """``report.html`` for people (templated; names from the accepted feed, ids stay in the CSVs)."""
    from absorb_sync.report import sync_report, write_html

    write_html(folder / "report.html", sync_report(folder, summary, lines, mismatches))
