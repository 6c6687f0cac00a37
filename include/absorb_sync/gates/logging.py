"""What a gate writes to the task log: one line per check and one verdict line, nothing from GX.

``log_checks`` is shared by every gate (feed, export, plan, unenrollment), so their logs read the
same way::

    gate hr_feed: PASS   column email is present | observed: present | allowed: present
    gate hr_feed: REJECT active people have a valid email | observed: 2 of 120 rows | allowed: 0 rows (offending rows are rejected, ...)
    gate hr_feed: FAIL   row count within ±20% of the last accepted feed | observed: 160 | allowed: 80..120
    gate hr_feed: verdict FAILED - 31 checks: 29 passed, 1 failed, 1 rejecting rows | row_count=160 ...

``quiet_great_expectations`` keeps Great Expectations' INFO chatter (about 200 lines when it is
imported, registry notices on each run) and its progress bars out of task logs; warnings and errors
still get through.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

GX_LOGGERS = ("great_expectations", "great_expectations_core", "gx")
_STATUS_WIDTH = 6
_VALUE_LIMIT = 200


def quiet_great_expectations() -> None:
    """Great Expectations' loggers to WARNING (children included) and its analytics off; the
    runner's GX context turns progress bars off. Call it before GX is imported: most of its INFO
    lines come from the import itself."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    for name in GX_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, existing in list(logging.root.manager.loggerDict.items()):
        loud = isinstance(existing, logging.Logger) and existing.level < logging.WARNING
        if loud and name.startswith(GX_LOGGERS):
            existing.setLevel(logging.WARNING)


def log_checks(
    logger: logging.Logger | Any,
    gate_name: str,
    checks: Iterable[Mapping[str, Any]],
    verdict: str,
    *,
    counts: Mapping[str, Any] | None = None,
) -> None:
    """Log one line per check, then the verdict, at INFO (a failed check at WARNING).

    ``checks``: dicts with ``name`` (what was checked, in words), ``passed`` (bool), ``observed``
    and ``allowed`` (anything printable: ``"12.5% (25 of 200)"``, ``"≤ 10%"``), and optionally
    ``status`` (a word instead of PASS/FAIL, e.g. ``"REJECT"`` for rows set aside without failing
    the gate, or ``"HELD"``) and ``count`` (rows concerned). ``verdict``: ``"passed"``,
    ``"failed"``, ``"held"``... as the gate decided it. ``counts``: figures for the verdict line.
    """
    checks = list(checks)
    tally: dict[str, int] = {}
    for check in checks:
        status = str(check.get("status") or ("PASS" if check.get("passed") else "FAIL")).upper()
        tally[status] = tally.get(status, 0) + 1
        parts = [f"gate {gate_name}: {status:<{_STATUS_WIDTH}} {check.get('name', '?')}"]
        parts.append(f"observed: {_text(check.get('observed'))}")
        parts.append(f"allowed: {_text(check.get('allowed'))}")
        if check.get("count") is not None:
            parts.append(f"rows: {check['count']}")
        level = logging.INFO if check.get("passed") or status not in ("FAIL", "FAILED") else logging.WARNING
        logger.log(level, "%s", " | ".join(parts))
    words = {"PASS": "passed", "FAIL": "failed", "REJECT": "rejecting rows"}
    summary = ", ".join(f"{n} {words.get(s, s.lower())}" for s, n in tally.items())
    line = f"gate {gate_name}: verdict {verdict.upper()} - {len(checks)} checks: {summary or 'none'}"
    if counts:
        line += " | " + " ".join(f"{k}={_text(v)}" for k, v in counts.items())
    logger.log(logging.INFO if verdict.lower() in ("passed", "pass", "ok") else logging.WARNING, "%s", line)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value).replace("\n", " ")
    return text if len(text) <= _VALUE_LIMIT else text[: _VALUE_LIMIT - 1] + "…"
