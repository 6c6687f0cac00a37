"""Which run files the reports plugin may serve, and where they are.

Only the Absorb DAGs (the three pipelines and the portal readiness check), only the file names below, and only run ids that are plain names: the
folder is ``{output root}/{dag_id}/{run_key(run_id)}/{name}``, built from validated parts, never from
a path the caller wrote. The output root is the env ``ABSORB_OUTPUT_ROOT`` (else ``var/output``),
read on each request so that it works with any ObjectStoragePath (``s3://...``) the API server can
reach. Runs triggered with their own ``output_root`` Param keep their files elsewhere and are not
served.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from absorb_sync.jobs.runtime import EXPORT_DAG_ID, SYNC_DAG_ID, UNENROLL_DAG_ID, output_root, run_key

PORTAL_CHECK_DAG_ID = "absorb_portal_check"
DAG_IDS = (SYNC_DAG_ID, UNENROLL_DAG_ID, EXPORT_DAG_ID, PORTAL_CHECK_DAG_ID)

# The run's main report, per DAG: what the "Absorb report" tab opens.
REPORTS = {
    SYNC_DAG_ID: "report.html",
    UNENROLL_DAG_ID: "report.html",
    EXPORT_DAG_ID: "compliance_report.html",
    PORTAL_CHECK_DAG_ID: "readiness.html",
}

# name -> (media type, what it is). Parquet hand-over files and snapshots are not served.
KNOWN_FILES: dict[str, tuple[str, str]] = {
    "report.html": ("text/html; charset=utf-8", "the run report"),
    "compliance_report.html": ("text/html; charset=utf-8", "the compliance report"),
    "summary.json": ("application/json", "the run summary"),
    "plan.csv": ("text/csv; charset=utf-8", "the enrollment plan, line by line with reasons"),
    "plan_decision.json": ("application/json", "the plan gate's decision"),
    "decision.json": ("application/json", "the unenrollment gate's decision"),
    "feed_gate.json": ("application/json", "the feed gate's checks"),
    "export_gate.json": ("application/json", "the export gate's checks"),
    "rejects.csv": ("text/csv; charset=utf-8", "feed rows rejected by the feed gate"),
    "missing_people.csv": ("text/csv; charset=utf-8", "people of the feed not found in Absorb"),
    "outcomes.csv": ("text/csv; charset=utf-8", "the outcome of every write"),
    "verification.csv": ("text/csv; charset=utf-8", "what the read-back did not confirm"),
    "targets.csv": ("text/csv; charset=utf-8", "enrollments to remove"),
    "skipped.csv": ("text/csv; charset=utf-8", "people skipped, with the reason"),
    "unresolved.csv": ("text/csv; charset=utf-8", "people who matched no Absorb user"),
    "completions.csv": ("text/csv; charset=utf-8", "the completion export"),
    "readiness.html": ("text/html; charset=utf-8", "the portal readiness report"),
    "readiness.json": ("application/json", "the portal readiness checks, machine-readable"),
    "first_sync_plan.csv": ("text/csv; charset=utf-8", "the first sync's plan, as the check dry-ran it"),
}

# Airflow's default allowed_run_id_pattern is ^[A-Za-z0-9_.~:+-]+$; "=" is kept by run_key too.
_RUN_ID = re.compile(r"[A-Za-z0-9_.~:+=-]{1,250}")


class Refused(Exception):
    """A request outside what the plugin serves; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class RunFiles:
    dag_id: str
    run_id: str

    @classmethod
    def of(cls, dag_id: str, run_id: str) -> RunFiles:
        if dag_id not in DAG_IDS:
            raise Refused(404, f"not an Absorb DAG: {dag_id!r} (reports exist for {', '.join(DAG_IDS)})")
        if not _RUN_ID.fullmatch(run_id) or run_id.startswith("."):
            raise Refused(400, "not a valid run id")
        return cls(dag_id, run_id)

    @property
    def folder(self):
        return output_root() / self.dag_id / run_key(self.run_id)

    @property
    def report_name(self) -> str:
        return REPORTS[self.dag_id]

    def file(self, name: str):
        """The ObjectStoragePath of a known file of this run (it may not exist)."""
        if name not in KNOWN_FILES:
            raise Refused(404, f"not a run file the plugin serves: {name!r}")
        return self.folder / name

    def present(self) -> list[str]:
        """The known files this run has, report first."""
        names = [self.report_name, *sorted(n for n in KNOWN_FILES if n != self.report_name)]
        return [name for name in names if self.file(name).is_file()]
