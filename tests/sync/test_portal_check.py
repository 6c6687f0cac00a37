"""``absorb-portal check`` against the sandbox running as a real HTTP server.

Each failure mode is a sandbox set up to break one check (wrong key, a missing course, duplicate
externalIds, a renamed field, another client on the API user); every run must leave the sandbox's
``write_calls`` where it was and keep secrets out of the report.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
import requests
from absorb_provider import token_store
from absorb_sandbox.testing import SandboxServer
from absorb_sync.portal.cli import main
from absorb_sync.portal.readiness import CallRecorder, ReadOnlyViolation

RULES = Path(__file__).resolve().parents[2] / "include" / "rules" / "enrollment_rules.yaml"


@pytest.fixture(autouse=True)
def isolated_tokens(tmp_path, monkeypatch):
    monkeypatch.setenv(token_store.STATE_DIR_ENV, str(tmp_path / "token-state"))
    token_store._MANAGERS.clear()
    yield
    token_store._MANAGERS.clear()


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    """One seeded sandbox (with its db file, to export a feed from and edit) for the module."""
    root = tmp_path_factory.mktemp("portal")
    server = SandboxServer(db_path=root / "absorb.db", seed="small").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def feed(portal, tmp_path_factory) -> Path:
    from absorb_sandbox.hr_feed import export_hr_feed

    out = tmp_path_factory.mktemp("feed") / "hr_feed.csv"
    export_hr_feed(portal.db_file, out)
    return out


def use_connection(monkeypatch, server, **changes) -> None:
    data = json.loads(server.airflow_connection_json())
    extra = data.pop("extra")
    extra.update(changes.pop("extra", {}))
    data.update(changes)
    monkeypatch.setenv("AIRFLOW_CONN_ABSORB_DEFAULT", json.dumps({**data, "extra": extra}))


def check(tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    """Runs ``absorb-portal check`` through the console script's dispatcher; (exit code, json, html)."""
    out = tmp_path / "report"
    code = main(["check", "--conn-id", "absorb_default", "--output", str(out), "--sample-size", "50", *args])
    return code, json.loads((out / "readiness.json").read_text()), (out / "readiness.html").read_text()


def verdicts(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_a_ready_portal_is_go_and_the_check_writes_nothing(portal, feed, tmp_path, monkeypatch):
    use_connection(monkeypatch, portal)
    before = portal.stats()
    code, report, page = check(tmp_path, "--feed", str(feed), "--rules", str(RULES))
    after = portal.stats()

    assert after["write_calls"] == before["write_calls"]
    new_routes = {r for r, n in after["by_route"].items() if n != before["by_route"].get(r)}
    assert new_routes and all(r.startswith("GET ") or r == "POST /authenticate" for r in new_routes)
    assert code == 0 and report["verdict"] == "go", [c for c in report["checks"] if c["verdict"] == "fail"]
    assert {c["section"] for c in report["checks"]} == {"connection", "shapes", "data fit"}
    checks = verdicts(report)
    for name in ("gateway reachable", "authentication", "API version", "token ownership", "users", "courses"):
        assert checks[name]["verdict"] == "pass", checks[name]
    assert checks["rate-limit headroom"]["details"]["throttled_429"] == 0
    assert report["calls"]["total"] == after["total_requests"] - before["total_requests"]

    with feed.open(newline="", encoding="utf-8") as handle:
        people = [row for row in csv.DictReader(handle) if row["status"] != "terminated"]
    figures = report["figures"]
    assert figures["feed_people"] == len(people) and figures["matched"] == len(
        people
    )  # the feed came from it
    plan_lines = list(csv.DictReader((tmp_path / "report" / "first_sync_plan.csv").open()))
    assert figures["first_sync_plan"]["total_lines"] == len(plan_lines) > 0
    assert checks["first sync plan"]["details"]["enroll"] == sum(
        1 for r in plan_lines if r["action"] == "enroll"
    )

    assert "GO" in page and "First sync's plan" in page
    for secret in (portal.password, portal.api_key):
        assert secret not in page and secret not in json.dumps(report)


def test_wrong_key_fails_authentication_clearly(portal, tmp_path, monkeypatch):
    use_connection(monkeypatch, portal, extra={"private_key": "11111111-2222-3333-4444-555555555555"})
    before = portal.stats()["write_calls"]
    code, report, page = check(tmp_path)
    checks = verdicts(report)
    assert code == 1 and report["verdict"] == "no-go"
    assert checks["gateway reachable"]["verdict"] == "pass"
    auth = checks["authentication"]
    assert auth["verdict"] == "fail"
    assert "refused authentication for user 'airflow.integration'" in auth["message"]
    assert "private key (sent as x-api-key)" in auth["message"]
    assert not any(c["section"] in ("shapes", "data fit") for c in report["checks"])  # nothing else tried
    assert "NO-GO" in page and portal.stats()["write_calls"] == before


def test_a_missing_rule_course_fails_naming_it(portal, tmp_path, monkeypatch):
    use_connection(monkeypatch, portal)
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - name: everyone\n"
        "    match: {status: active}\n"
        "    courses: [{name: Code of Conduct}, {name: Underwater Basket Weaving}]\n",
        encoding="utf-8",
    )
    code, report, page = check(tmp_path, "--rules", str(rules))
    courses = verdicts(report)["rule courses"]
    assert code == 1 and courses["verdict"] == "fail"
    assert "course name 'Underwater Basket Weaving' is not in the Absorb catalogue" in courses["message"]
    found = {c["reference"]: c["course_id"] for c in courses["details"]["courses"]}
    assert found["name:Code of Conduct"] and found["name:Underwater Basket Weaving"] is None
    assert "Underwater Basket Weaving" in page


def test_duplicate_external_ids_and_an_ambiguous_course_name_fail_naming_them(portal, tmp_path, monkeypatch):
    use_connection(monkeypatch, portal)
    _edit_sandbox(
        portal,
        "UPDATE users SET external_id = 'E000011' WHERE external_id = 'E000012'",
        "UPDATE courses SET name = 'Manager Essentials' WHERE name = 'Excel Fundamentals'",
    )
    try:
        before = portal.stats()["write_calls"]
        code, report, _ = check(tmp_path, "--rules", str(RULES))
        after = portal.stats()["write_calls"]
    finally:
        _edit_sandbox(
            portal,
            "UPDATE users SET external_id = 'E000012' WHERE rowid = "
            "(SELECT max(rowid) FROM users WHERE external_id = 'E000011')",
            "UPDATE courses SET name = 'Excel Fundamentals' WHERE rowid = "
            "(SELECT max(rowid) FROM courses WHERE name = 'Manager Essentials')",
        )
    checks = verdicts(report)
    duplicates = checks["duplicate externalIds"]
    assert code == 1 and duplicates["verdict"] == "fail"
    assert "1 externalId(s) are held by more than one Absorb user (E000011)" in duplicates["message"]
    courses = checks["rule courses"]
    assert courses["verdict"] == "fail"
    assert "course name 'Manager Essentials' is ambiguous (2 courses: use its id)" in courses["message"]
    assert "1 of 8 course reference(s) do not resolve" in courses["message"]
    assert after == before


def test_a_portal_that_throttles_shows_its_429s_and_retry_after(sandbox_factory, tmp_path, monkeypatch):
    server = sandbox_factory("throttled", seed="small", rate_limit=2)
    use_connection(monkeypatch, server)
    code, report, _ = check(tmp_path)
    headroom = verdicts(report)["rate-limit headroom"]
    assert code == 0 and headroom["verdict"] == "warn"  # go, but look: syncs will wait
    throttled = server.stats()["by_status"].get("429", 0)
    assert headroom["details"]["throttled_429"] == throttled > 0
    assert headroom["details"]["retry_after_max_s"] >= 1 and "Retry-After up to" in headroom["message"]
    assert server.stats()["write_calls"] == 0


def test_a_renamed_field_fails_the_shapes_and_the_reads(portal, tmp_path, monkeypatch):
    use_connection(monkeypatch, portal)
    portal.set_faults({"rename": ["externalId:employeeKey"]})
    try:
        before = portal.stats()["write_calls"]
        code, report, page = check(tmp_path, "--rules", str(RULES))
        after = portal.stats()
    finally:
        portal.set_faults("off")
    checks = verdicts(report)
    users = checks["users"]
    assert code == 1 and users["verdict"] == "fail"
    assert users["details"]["missing_fields"] == ["externalId"]
    assert "employeeKey" in users["details"]["unknown_fields"]
    assert "missing field(s) externalId the provider relies on" in users["message"]
    assert checks["read all users"]["verdict"] == "fail"
    assert "field 'externalId' is missing" in checks["read all users"]["message"]
    assert checks["courses"]["verdict"] == "pass"  # only what was renamed fails
    assert after["write_calls"] == before and after["injected"].get("rename")
    assert "employeeKey" in page  # the fields table shows what the portal served instead


def test_a_token_taken_over_by_another_client_is_reported(portal, tmp_path, monkeypatch):
    from absorb_provider.hooks.absorb import AbsorbHook

    use_connection(monkeypatch, portal)
    AbsorbHook().authenticate()  # this host's shared token, then another client logs in as the same user
    body = {"username": portal.username, "password": portal.password, "privateKey": portal.api_key}
    answer = requests.post(f"{portal.base_url}/authenticate", json=body, headers=portal.headers(), timeout=10)
    assert answer.status_code == 200
    code, report, _ = check(tmp_path)
    token = verdicts(report)["token ownership"]
    assert code == 1 and token["verdict"] == "fail"
    assert "another client logged in as API user 'airflow.integration' during the check" in token["message"]
    assert token["details"]["takeovers"] == 1


def test_the_check_refuses_to_send_a_write(portal, monkeypatch):
    """The guard itself: a write attempted through a guarded hook never reaches Absorb."""
    from absorb_provider.hooks.absorb import AbsorbHook

    use_connection(monkeypatch, portal)
    hook = AbsorbHook()
    recorder = CallRecorder(hook.client.session, hook.settings.base_url)
    before = portal.stats()["write_calls"]
    with pytest.raises(ReadOnlyViolation, match="never sends POST /users"):
        hook.upsert_user({"username": "guard.test@example.com", "externalId": "GUARD1"})
    assert recorder.refused == ["POST /users"] and portal.stats()["write_calls"] == before
    assert [c.route for c in recorder.calls] == ["/authenticate"]  # the login went through, nothing else


def _edit_sandbox(server: SandboxServer, *statements: str) -> None:
    """Change the sandbox's data behind the API (stopped, SQLite edited, restarted on its port)."""
    server.stop()
    with sqlite3.connect(server.db_file) as connection:
        for statement in statements:
            assert connection.execute(statement).rowcount == 1, statement
    server.start()


def test_a_connection_kept_in_the_metadata_database_works_from_a_shell(
    portal, tmp_path, monkeypatch, airflow_db
):
    """No task, no scheduler: the command reads the connection from Airflow's database itself."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    monkeypatch.delenv("AIRFLOW_CONN_ABSORB_DEFAULT", raising=False)
    data = json.loads(portal.airflow_connection_json())
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == "absorb_portal_db").delete()
        session.add(
            Connection(
                conn_id="absorb_portal_db",
                conn_type="absorb",
                host=data["host"],
                login=data["login"],
                password=data["password"],
                extra=json.dumps(data["extra"]),
            )
        )
    out = tmp_path / "report"
    assert main(["check", "--conn-id", "absorb_portal_db", "--output", str(out), "--sample-size", "5"]) == 0
    report = json.loads((out / "readiness.json").read_text())
    assert (
        report["portal"]["conn_id"] == "absorb_portal_db" and report["portal"]["base_url"] == portal.base_url
    )
    assert {c["name"]: c["verdict"] for c in report["checks"]}["authentication"] == "pass"
