"""absorb_portal_check under dag.test: a go run reads only, a no-go run fails after its report."""

from __future__ import annotations

from pathlib import Path

from dagtools import run_dag

DAG_ID = "absorb_portal_check"
RULES = Path(__file__).resolve().parents[2] / "include" / "rules" / "enrollment_rules.yaml"


def test_a_ready_portal_passes_with_a_report_and_no_write(world):
    feed, _ = world.feed("portal_check.csv")
    writes = world.writes()
    run = run_dag(DAG_ID, world.output, {"feed_path": str(feed), "rules_path": str(RULES)})
    assert run.succeeded and run.tasks == {"check_portal": "success"}
    report = run.json("readiness.json")
    assert report["verdict"] == "go" and report["figures"]["matched"] == report["figures"]["feed_people"] > 0
    assert {c["section"] for c in report["checks"]} == {"connection", "shapes", "data fit"}
    assert "Absorb portal readiness" in run.text("readiness.html")
    assert (run.folder / "first_sync_plan.csv").exists()
    assert world.writes() == writes


def test_the_readiness_report_is_served_by_the_reports_plugin(world, monkeypatch):
    """The "Absorb report" tab of a check run opens readiness.html (the plugin's own file lookup)."""
    from absorb_reports.files import RunFiles
    from absorb_sync.portal.check import DAG_ID as CHECK_DAG_ID

    feed, _ = world.feed("portal_check_plugin.csv")
    run = run_dag(DAG_ID, world.output, {"feed_path": str(feed), "rules_path": str(RULES)})
    monkeypatch.setenv("ABSORB_OUTPUT_ROOT", str(world.output))
    files = RunFiles.of(CHECK_DAG_ID, run.run_id)
    assert files.present()[:1] == ["readiness.html"]
    assert {"readiness.json", "first_sync_plan.csv"} <= set(files.present())
    assert "Absorb portal readiness" in files.file("readiness.html").read_text()


def test_a_portal_that_does_not_fit_fails_the_task_after_writing_the_report(world, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - name: everyone\n    match: {status: active}\n    courses: [{id: 00000000-0000-0000-0000-000000000000}]\n",
        encoding="utf-8",
    )
    writes = world.writes()
    run = run_dag(DAG_ID, world.output, {"feed_path": None, "rules_path": str(rules)})
    assert run.state == "failed" and run.tasks == {"check_portal": "failed"}
    report = run.json("readiness.json")
    failed = [c for c in report["checks"] if c["verdict"] == "fail"]
    assert report["verdict"] == "no-go" and [c["name"] for c in failed] == ["rule courses"]
    assert "00000000-0000-0000-0000-000000000000' is not in the Absorb catalogue" in failed[0]["message"]
    assert world.writes() == writes
