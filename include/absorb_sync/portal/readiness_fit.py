"""Data fit: the feed and the rules against the portal, and the size of the first sync's plan.

Every piece is the sync's own: the feed is read and mapped by :mod:`absorb_sync.feed` and gated
by the feed gate, courses resolved by :func:`absorb_sync.rules.resolve_courses`, people matched
by the sync's ``externalId`` index, and the plan built by :func:`absorb_sync.plan.build_plan`
from the same paged reads the sync makes (GETs only), as the portal's first sync.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from absorb_sync.portal.readiness import FAIL, PASS, SKIP, WARN

if TYPE_CHECKING:
    import pandas as pd

    from absorb_sync.portal.readiness import Inputs, Readiness
    from absorb_sync.portal.readiness_connection import TokenWatch

SECTION = "data fit"
SAMPLE = 10
LOW_MATCH_PCT = 90.0


class _Stop(Exception):
    """A read the rest depends on failed (its verdict is recorded)."""


def check_data_fit(hook: Any, readiness: Readiness, inputs: Inputs, pages: dict, tokens: TokenWatch) -> None:
    today = inputs.today or datetime.now(UTC).date()
    feed, people = _feed(readiness, inputs, today)
    ruleset = _rules(readiness, inputs)
    try:
        users = _read(readiness, tokens, "users", hook.list_users)
        catalog = _read(readiness, tokens, "courses", hook.list_courses)
        departments = _read(readiness, tokens, "departments", hook.list_departments)
    except _Stop:
        return
    readiness.figures.update(absorb_users=len(users), absorb_courses=len(catalog))
    course_ids = _rule_courses(readiness, ruleset, catalog)
    _departments(readiness, feed, departments)
    index = _external_ids(readiness, users, feed, people)
    _first_plan(hook, readiness, tokens, people, ruleset, course_ids, index, today)


# ---------------------------------------------------------------- inputs


def _feed(
    readiness: Readiness, inputs: Inputs, today: Any
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(the mapped feed, the rows the feed gate accepts), or Nones when there is no usable feed."""
    from absorb_sync.feed import FeedError, load_mapping, read_feed
    from absorb_sync.jobs.runtime import storage_path

    if not inputs.feed_path:
        readiness.add(SECTION, "HR feed", SKIP, "no feed given: the checks that compare people are skipped")
        return None, None
    try:
        feed = read_feed(storage_path(inputs.feed_path), load_mapping(inputs.column_mapping)).frame
    except (FeedError, OSError) as error:
        readiness.add(SECTION, "HR feed", FAIL, f"the feed cannot be read: {error}")
        return None, None
    from absorb_sync.gates import validate_feed

    result = validate_feed(feed, previous_row_count=None, today=today)
    accepted = result.accepted if result.accepted is not None else feed.iloc[0:0]
    rejected = 0 if result.rejected is None else len(result.rejected)
    active = int((accepted["status"] == "active").sum()) if "status" in accepted else 0
    readiness.figures.update(feed_rows=len(feed), feed_rejected=rejected, feed_active=active)
    details = {"rows": len(feed), "accepted": len(accepted), "rejected": rejected, "active": active}
    if not result.passed:
        failed = [f.get("description") or f.get("expectation") for f in result.table_failures]
        readiness.add(
            SECTION,
            "HR feed",
            FAIL,
            f"the feed gate would stop the sync: {'; '.join(map(str, failed))[:600]}",
            **details,
        )
        return feed, None
    verdict = WARN if rejected else PASS
    note = f", {rejected} row(s) the feed gate rejects (the sync leaves them out)" if rejected else ""
    readiness.add(SECTION, "HR feed", verdict, f"{len(feed)} rows, {active} active{note}", **details)
    return feed, accepted


def _rules(readiness: Readiness, inputs: Inputs) -> Any:
    from absorb_sync.rules import RulesError, load_rules

    if not inputs.rules_path:
        readiness.add(SECTION, "rule courses", SKIP, "no rules file given")
        return None
    try:
        return load_rules(inputs.rules_path)
    except RulesError as error:
        readiness.add(SECTION, "rule courses", FAIL, str(error))
        return None


def _read(readiness: Readiness, tokens: TokenWatch, name: str, read: Callable[[], Any]) -> list[dict]:
    """All rows of a list through the hook (validated, paged, completeness-checked as in a sync)."""
    from absorb_provider.exceptions import AbsorbError

    try:
        return list(read())
    except AbsorbError as error:
        tokens.note(error)
        readiness.add(SECTION, f"read all {name}", FAIL, f"the sync could not read /{name}: {error}")
        raise _Stop from error


# ---------------------------------------------------------------- checks


def _rule_courses(readiness: Readiness, ruleset: Any, catalog: list[dict]) -> dict[str, str] | None:
    """Each course reference resolved the way the sync does it; None unless all resolve."""
    from absorb_sync.rules import RulesError, RuleSet, course_ref_key, resolve_courses

    if ruleset is None:
        return None
    names = {str(c["id"]): c.get("name") for c in catalog}
    resolved, rows, problems = {}, [], []
    for rule in ruleset.rules:
        for ref in rule.courses:
            key = course_ref_key(ref)
            if key in resolved or any(r["reference"] == key for r in rows):
                continue
            try:
                found = resolve_courses(RuleSet(rules=[_rule_for(rule, ref)]), catalog)[key]
            except RulesError as error:
                problems.append(str(error).removeprefix("cannot resolve the rules' courses: "))
                rows.append({"reference": key, "rule": rule.name, "course_id": None, "problem": problems[-1]})
                continue
            resolved[key] = found
            rows.append({"reference": key, "rule": rule.name, "course_id": found, "course": names.get(found)})
    readiness.figures.update(rule_courses=len(rows), rule_courses_resolved=len(resolved))
    if problems:
        readiness.add(
            SECTION,
            "rule courses",
            FAIL,
            f"{len(problems)} of {len(rows)} course reference(s) do not resolve: {'; '.join(problems)}",
            courses=rows,
        )
        return None
    readiness.add(
        SECTION, "rule courses", PASS, f"all {len(rows)} course reference(s) of the rules found", courses=rows
    )
    return resolved


def _rule_for(rule: Any, ref: dict) -> Any:
    from dataclasses import replace

    return replace(rule, courses=[ref])


def _departments(readiness: Readiness, feed: pd.DataFrame | None, departments: list[dict]) -> None:
    names = {str(d.get("name") or "").strip().casefold() for d in departments}
    readiness.figures["absorb_departments"] = len(departments)
    if feed is None:
        readiness.add(
            SECTION, "departments", SKIP, f"{len(departments)} departments in Absorb; no feed to compare"
        )
        return
    in_feed = sorted({str(d).strip() for d in feed["department"].dropna() if str(d).strip()})
    unknown = [d for d in in_feed if d.casefold() not in names]
    details = {
        "feed_departments": len(in_feed),
        "absorb_departments": len(departments),
        "not_in_absorb": unknown,
    }
    if unknown:
        readiness.add(
            SECTION,
            "departments",
            WARN,
            f"{len(unknown)} of the feed's {len(in_feed)} departments are not in Absorb ({', '.join(unknown[:SAMPLE])}): "
            "users created for those people get no department",
            **details,
        )
        return
    readiness.add(
        SECTION, "departments", PASS, f"all {len(in_feed)} departments of the feed exist in Absorb", **details
    )


def _external_ids(
    readiness: Readiness, users: list[dict], feed: pd.DataFrame | None, people: pd.DataFrame | None
) -> dict[str, str]:
    """The sync's externalId index, its duplicates and blanks, and how the feed matches it."""
    from absorb_sync.jobs.hr_sync import _index_users

    index, duplicates = _index_users(users)
    blank = [u for u in users if not str(u.get("externalId") or "").strip()]
    readiness.figures.update(duplicate_external_ids=len(duplicates), empty_external_ids=len(blank))
    if duplicates:
        readiness.add(
            SECTION,
            "duplicate externalIds",
            FAIL,
            f"{len(duplicates)} externalId(s) are held by more than one Absorb user ({', '.join(duplicates[:SAMPLE])}): "
            "the sync cannot tell who is who and leaves these people out; merge or correct them in Absorb",
            duplicates=duplicates[:100],
        )
    else:
        readiness.add(SECTION, "duplicate externalIds", PASS, "every externalId belongs to one Absorb user")
    verdict = WARN if blank else PASS
    readiness.add(
        SECTION,
        "empty externalIds",
        verdict,
        f"{len(blank)} of {len(users)} Absorb users have no externalId: the sync can never match them to a feed row"
        if blank
        else f"all {len(users)} Absorb users have an externalId",
        count=len(blank),
    )
    if feed is None:
        readiness.add(SECTION, "feed ↔ Absorb match", SKIP, "no usable feed to match")
        return index
    _match(readiness, users, index, duplicates, feed, people)
    return index


def _match(
    readiness: Readiness,
    users: list[dict],
    index: dict[str, str],
    duplicates: list[str],
    feed: pd.DataFrame,
    people: pd.DataFrame | None,
) -> None:
    rows = people if people is not None else feed
    wanted = rows[rows["status"] != "terminated"]["employee_id"].dropna().astype(str)
    matched = int(wanted.isin(set(index)).sum())
    pct = round(100.0 * matched / len(wanted), 1) if len(wanted) else 0.0
    unmatched = sorted(set(wanted) - set(index) - set(duplicates))
    feed_ids = set(feed["employee_id"].dropna().astype(str))
    absent = sorted(
        str(u["externalId"]).strip()
        for u in users
        if str(u.get("externalId") or "").strip()
        and str(u["externalId"]).strip() not in feed_ids
        and int(u.get("activeStatus") or 0) == 0
    )
    readiness.figures.update(
        feed_people=len(wanted),
        matched=matched,
        match_pct=pct,
        feed_people_not_in_absorb=len(unmatched),
        absorb_users_without_feed_row=len(absent),
    )
    details = {"feed_people": len(wanted), "matched": matched, "unmatched_sample": unmatched[:SAMPLE]}
    if not matched:
        verdict, what = (
            FAIL,
            "none of them matches: wrong portal, or the feed's employee id is not Absorb's externalId",
        )
    elif pct < LOW_MATCH_PCT:
        verdict, what = WARN, f"{len(unmatched)} have no Absorb user (sample {', '.join(unmatched[:SAMPLE])})"
    else:
        verdict, what = (
            PASS,
            f"{len(unmatched)} have no Absorb user yet" if unmatched else "all of them match",
        )
    readiness.add(
        SECTION,
        "feed ↔ Absorb match",
        verdict,
        f"{matched} of {len(wanted)} feed people ({pct}%) match an Absorb externalId; {what}",
        **details,
    )
    readiness.add(
        SECTION,
        "Absorb users without a feed row",
        WARN if absent else PASS,
        f"{len(absent)} active Absorb users have an externalId the feed does not list (sample "
        f"{', '.join(absent[:SAMPLE])}): the sync leaves them alone; check they are not missing from the feed"
        if absent
        else "every active Absorb user with an externalId has a feed row",
        count=len(absent),
        sample=absent[:SAMPLE],
    )


def _first_plan(
    hook: Any,
    readiness: Readiness,
    tokens: TokenWatch,
    people: pd.DataFrame | None,
    ruleset: Any,
    course_ids: dict[str, str] | None,
    index: dict[str, str],
    today: Any,
) -> None:
    """The planner on the check's reads, as the portal's first sync (no provenance yet)."""
    from absorb_provider.exceptions import AbsorbError

    from absorb_sync.jobs.hr_sync import read_course_enrollments
    from absorb_sync.plan import build_plan
    from absorb_sync.rules import evaluate_rules

    if people is None or ruleset is None or course_ids is None:
        readiness.add(
            SECTION, "first sync plan", SKIP, "needs a usable feed and rules whose courses all resolve"
        )
        return
    try:
        current, incomplete = read_course_enrollments(hook, set(course_ids.values()))
    except AbsorbError as error:
        tokens.note(error)
        readiness.add(
            SECTION, "first sync plan", FAIL, f"the rule courses' enrollments cannot be read: {error}"
        )
        return
    desired = evaluate_rules(people, ruleset, course_ids, today)
    plan = build_plan(desired, people, index, current, set(), today)
    summary = plan.summary()
    readiness.plan_lines = plan.lines
    readiness.figures["first_sync_plan"] = {k: v for k, v in summary.items() if k != "counts"}
    if incomplete:
        readiness.add(
            SECTION,
            "first sync plan",
            FAIL,
            f"incomplete reads of {len(incomplete)} rule course(s) ({'; '.join(incomplete[:3])}): the sync would refuse its plan",
            **summary,
        )
        return
    missing = summary["missing_people"]
    readiness.add(
        SECTION,
        "first sync plan",
        WARN if missing else PASS,
        f"the first sync would enroll {summary['enroll']}, re-enroll {summary['re_enroll']}, change "
        f"{summary['update_due_date']} due dates and hand {summary['unenroll_leavers']} leavers' enrollments "
        f"to the unenrollment ({len(current)} current enrollments in the {len(course_ids)} rule course(s))"
        + (f"; {missing} people the rules want have no Absorb user (create_missing_users)" if missing else "")
        + ". It waits for approval as the portal's first load unless triggered with initial_load",
        **summary,
        current_enrollments=len(current),
    )
