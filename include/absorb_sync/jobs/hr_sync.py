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

import time
from collections.abc import Iterable, Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from absorb_sync.jobs.runtime import InputError, read_frame, read_json, write_csv, write_frame, write_json

if TYPE_CHECKING:
    import pandas as pd
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
    """Map employee ids to Absorb users with one paged read of ``/users``; optionally create the missing."""
    import pandas as pd

    people = read_frame(folder / "accepted.parquet")
    if create_missing_users and not dry_run:
        _check_rule_courses(hook, rules_path)  # the plan's inputs hold before the first user is created
    users_by_employee_id, duplicates = _index_users(hook.list_users())
    wanted = people[people["status"] != "terminated"]
    missing = wanted[~wanted["employee_id"].isin(users_by_employee_id)]
    created = []
    creatable = missing[~missing["employee_id"].isin(duplicates)]  # ambiguous ids need a person
    if create_missing_users and not dry_run and not creatable.empty:
        created = _create_users(hook, creatable)
        users_by_employee_id.update(created)
        missing = missing[~missing["employee_id"].isin(users_by_employee_id)]
    users = pd.DataFrame(
        {"employee_id": list(users_by_employee_id), "user_id": list(users_by_employee_id.values())},
        dtype="string",
    )
    write_frame(folder / "users.parquet", users)
    missing_columns = ["_line", "employee_id", "first_name", "last_name", "email", "department", "status"]
    write_csv(folder / "missing_people.csv", missing.reindex(columns=missing_columns))
    return {
        "people": len(people),
        "matched": int(people["employee_id"].isin(users_by_employee_id).sum()),
        "missing": len(missing),
        "missing_sample": missing["employee_id"].head(10).tolist(),
        "created_users": len(created),
        "duplicate_external_ids": duplicates[:10],
    }


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


def _create_users(hook: Any, missing: pd.DataFrame) -> dict[str, str]:
    """Upsert each missing person (POST /users matches on username/externalId, so re-runs are safe)."""
    departments = {d["name"]: d["id"] for d in hook.list_departments()}
    created = {}
    for person in missing.to_dict("records"):
        payload = {
            "username": person["email"],
            "emailAddress": person["email"],
            "firstName": person["first_name"],
            "lastName": person["last_name"],
            "externalId": person["employee_id"],
            "employeeNumber": person["employee_id"],
            "jobTitle": _text(person.get("job_title")),
            "location": _text(person.get("location")),
            "departmentId": departments.get(person.get("department")),
            "dateHired": _text(person.get("hire_date")),
            "activeStatus": 0,
        }
        user = hook.upsert_user({k: v for k, v in payload.items() if v is not None})
        if user and user.get("id"):
            created[person["employee_id"]] = user["id"]
    return created


def _text(value: Any) -> str | None:
    import pandas as pd

    return None if value is None or pd.isna(value) else str(value)


# ---------------------------------------------------------------- 4-5. rules + plan


def plan_changes(*, folder: ObjectStoragePath, hook: Any, rules_path: str, state: Any, today: date) -> dict:
    """Desired enrollments from the rules, current ones from paged course reads, and the diff."""
    from absorb_sync.journal import fold_into_state
    from absorb_sync.plan import build_plan
    from absorb_sync.rules import evaluate_rules, leavers, load_rules, resolve_courses

    ruleset = load_rules(rules_path)
    catalog = list(hook.list_courses())
    course_ids = resolve_courses(ruleset, catalog)
    names = {c["id"]: c.get("name") for c in catalog if c["id"] in set(course_ids.values())}
    write_json(folder / "rule_courses.json", names)
    people = read_frame(folder / "accepted.parquet")
    users = read_frame(folder / "users.parquet")
    users_by_employee_id = dict(zip(users["employee_id"], users["user_id"], strict=True))
    desired = evaluate_rules(people, ruleset, course_ids, today)

    current, incomplete = read_course_enrollments(hook, set(course_ids.values()))
    write_frame(folder / "current.parquet", current)
    # Writes of earlier runs whose answers were lost (a crash mid-apply) become provenance first,
    # judged against what Absorb holds now (only when the read is complete: a partial read cannot
    # tell "not written" from "not read").
    journals = fold_into_state(state, current=None if incomplete else lambda: active_pairs(current))

    plan = build_plan(desired, people, users_by_employee_id, current, state.provenance_ids(), today)
    write_frame(folder / "plan.parquet", plan.lines)
    write_csv(folder / "plan.csv", plan.lines)
    leaver_ids = sorted(leavers(people, today)["employee_id"].astype(str))
    meta = {
        "missing_people": list(plan.missing_people),
        "active_in_scope": int(plan.active_in_scope),
        "reads_complete": not incomplete,
        "incomplete_reads": incomplete,
        "rule_courses": len(set(course_ids.values())),
        "leavers": leaver_ids,
        "journals_folded": journals,
    }
    write_json(folder / "plan_meta.json", meta)
    return {
        "plan": plan.summary(),
        "reads_complete": not incomplete,
        "incomplete_reads": incomplete[:5],
        "desired": len(desired),
        "current_enrollments": len(current),
        "leavers": len(leaver_ids),
    }


def read_course_enrollments(hook: Any, course_ids: Iterable[str]) -> tuple[pd.DataFrame, list[str]]:
    """Enrollments of some courses with only the columns the plan needs, and the incomplete reads.

    Courses are read concurrently (at most the connection's ``max_concurrency`` at once, all
    within its rate limit), each as Arrow pages with one page read ahead: no dict per row.
    """
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd
    import pyarrow as pa
    from absorb_provider.exceptions import AbsorbIncompleteReadError

    def read(course_id: str) -> tuple[list[pa.Table], str | None]:
        try:
            return [t.select(ENROLLMENT_COLUMNS) for t in hook.course_enrollment_tables(course_id)], None
        except AbsorbIncompleteReadError as error:
            return [], f"{course_id}: {error}"

    ordered = sorted(course_ids)
    workers = max(1, min(int(hook.settings.max_concurrency), len(ordered)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="absorb-read") as pool:
        results = list(pool.map(read, ordered))
    tables = [t for pages, _ in results for t in pages]
    incomplete = [problem for _, problem in results if problem]
    if not tables:
        return pd.DataFrame(columns=ENROLLMENT_COLUMNS).astype(
            {"id": "string", "userId": "string"}
        ), incomplete
    frame = pa.concat_tables(tables).to_pandas()
    return frame.astype({"id": "string", "userId": "string"}), incomplete


def active_pairs(current: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(user id, course id) -> active enrollment id, lower-case (what a journal fold compares)."""
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
    )
    summary = {
        "allowed": decision.allowed,
        "reasons": list(decision.reasons),
        "overridden": decision.overridden,
        "override_reason": decision.override_reason,
        "max_removal_pct": max_removal_pct,
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
    """Bulk-enroll, bulk-unenroll the sync's own removals; every write journalled as it happens.

    The intents are durable before the first write and each answer as it arrives, then the
    journal is folded into provenance, so a crash at any point loses no ownership (see
    :mod:`absorb_sync.journal`).
    """
    import pandas as pd

    from absorb_sync.jobs.runtime import run_key
    from absorb_sync.journal import WriteJournal, fold_into_state

    if dry_run:
        return {"dry_run": True, "applied": False, "counts": {}}
    plan, _ = load_plan(folder)
    lines = plan.lines.reset_index(drop=True)
    ours = lines[lines["handled_by"] == "sync"]
    enroll_lines = ours[ours["action"].isin(ENROLL_ACTIONS)]
    removals = ours[ours["action"] == "unenroll"].dropna(subset=["enrollment_id"])
    journal = WriteJournal(state.location / "journal", run_key(run_id))
    journal.begin(run_id)
    journal.intents(_intents(enroll_lines, removals, run_id))
    outcomes: list[dict] = []
    try:
        outcomes += _apply_writes(hook, journal, enroll_lines, removals)
    finally:
        journal.flush()
    folded = fold_into_state(state, run_key(run_id))
    table = _outcome_table(lines, outcomes)
    write_csv(folder / "outcomes.csv", table)
    counts = {str(k): int(v) for k, v in pd.Series([o["outcome"] for o in outcomes]).value_counts().items()}
    return {
        "dry_run": False,
        "applied": True,
        "counts": counts,
        "failed": counts.get("failed", 0),
        "provenance": {"recorded": folded["created"], "adopted": folded["adopted"]},
    }


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
    if not dry_run and not lines.empty:
        mismatches, read_back = _read_back(hook, lines, read_frame(folder / "current.parquet"))
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
    return summary


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
        frame, incomplete = read_course_enrollments(hook, courses)
        if incomplete:
            raise VerificationError(f"cannot verify: read-back of courses incomplete: {incomplete[:3]}")
        return frame, "course pages", course_calls
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
