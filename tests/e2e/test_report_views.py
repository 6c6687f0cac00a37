"""The ``absorb_reports`` plugin in a real ``airflow api-server`` (SQLite home of its own): run reports
served through the API server, the "Absorb report" tab on the DAG run page, and everything outside
the three DAGs' known run files refused. The run folders are real files written by the test."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from .harness import ROOT, VENV_BIN, free_port, tail, wait_until

pytestmark = pytest.mark.e2e

SYNC = "absorb_hr_enrollment_sync"
EXPORT = "absorb_completion_export"
RUN_ID = "manual__2026-01-05T06:00:00.123456+00:00"
RUN_KEY = "manual__2026-01-05T06_00_00.123456_00_00"  # runtime.run_key(RUN_ID)
SECRET = "NOT-FOR-THE-BROWSER-4711"
SYNC_REPORT = "<!doctype html><html><body><h1>HR sync report</h1><p>3 enrolled</p></body></html>"
EXPORT_REPORT = "<!doctype html><html><body><h1>Compliance report</h1></body></html>"
PLUGIN = "/absorb-reports"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = ROOT / "var" / "artifacts" / "screenshots"


class ApiServer:
    def __init__(self, home: Path, output: Path, **extra_env: str):
        self.home, self.output = home, output
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = home / f"api-server-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ABSORB_"))}
        self.env = (
            env
            | {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),  # empty: the entry point loads ours
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "GX_ANALYTICS_ENABLED": "false",
                "ABSORB_OUTPUT_ROOT": str(output),
                "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
            }
            | extra_env
        )
        self.process: subprocess.Popen | None = None

    def airflow(self, *args: str, timeout: float = 300) -> None:
        subprocess.run(
            [str(VENV_BIN / "airflow"), *args],
            env=self.env,
            cwd=self.home,
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def prepare(self) -> ApiServer:
        self.airflow("db", "migrate")
        self.airflow("dags", "reserialize")  # the DAGs in the metadata DB, as the dag-processor would
        return self

    def start(self) -> ApiServer:
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def up() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"api-server exited:\n{tail(self.log)}")
            return requests.get(f"{self.base_url}/api/v2/version", timeout=5).ok

        wait_until(up, 180, "the api-server")
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def raw_get(self, path: str, token: str) -> tuple[int, str]:
        """GET ``path`` exactly as written: no client normalises ``..`` or decodes ``%2F`` first."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            response = connection.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        finally:
            connection.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ApiServer]:
    work = tmp_path_factory.mktemp("report-views")
    output = work / "output"
    sync_run = output / SYNC / RUN_KEY
    sync_run.mkdir(parents=True)
    (sync_run / "report.html").write_text(SYNC_REPORT)
    (sync_run / "summary.json").write_text('{"enrolled": 3}')
    (sync_run / "plan.csv").write_text("action,employee_id,course\nenroll,E1,Safety\n")
    (sync_run / "feed.parquet").write_text(SECRET)  # in the folder but not a file the plugin serves
    (sync_run / "secret.txt").write_text(SECRET)
    export_run = output / EXPORT / RUN_KEY
    export_run.mkdir(parents=True)
    (export_run / "compliance_report.html").write_text(EXPORT_REPORT)
    other = output / "some_other_dag" / RUN_KEY
    other.mkdir(parents=True)
    (other / "report.html").write_text(SECRET)
    (output / "report.html").write_text(SECRET)
    (work / "home").mkdir()
    api = ApiServer(work / "home", output).prepare().start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture(scope="module")
def server_with_login(server) -> Iterator[ApiServer]:
    """A second api-server on the same metadata DB with login on, as on a shared cluster."""
    passwords = server.home / "passwords.json"
    passwords.write_text('{"reader": "reader-password"}')
    api = ApiServer(
        server.home,
        server.output,
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="reader:viewer",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
    ).start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture(scope="module")
def admin(server) -> requests.Session:
    session = requests.Session()
    token = session.get(f"{server.base_url}/auth/token", timeout=10).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    session.token = token  # type: ignore[attr-defined]
    return session


def _run_url(server: ApiServer, dag_id: str, run_id: str = RUN_ID, name: str = "") -> str:
    return f"{server.base_url}{PLUGIN}/runs/{dag_id}/{quote(run_id, safe='')}/{name}"


def test_the_plugin_is_registered_with_a_report_tab_on_the_run_page(server, admin):
    plugins = admin.get(f"{server.base_url}/api/v2/plugins", timeout=10).json()["plugins"]
    ours = next(p for p in plugins if p["name"] == "absorb_reports")
    assert [app["url_prefix"] for app in ours["fastapi_apps"]] == [PLUGIN]
    views = {view["name"]: view for view in ours["external_views"]}
    assert views["Absorb report"]["destination"] == "dag_run"
    assert views["Absorb report"]["href"] == PLUGIN + "/runs/{DAG_ID}/{RUN_ID}/"
    assert views["Absorb run files"]["href"] == PLUGIN + "/runs/{DAG_ID}/{RUN_ID}/files"
    assert ours["source"].startswith("airflow-provider-absorb==")  # the entry point, not a folder
    errors = admin.get(f"{server.base_url}/api/v2/plugins/importErrors", timeout=10).json()
    assert errors["total_entries"] == 0, errors


def test_reports_and_run_files_are_served(server, admin):
    response = admin.get(_run_url(server, SYNC), timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == SYNC_REPORT
    assert "sandbox" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"

    export = admin.get(_run_url(server, EXPORT), timeout=10)
    assert export.status_code == 200 and export.text == EXPORT_REPORT

    assert admin.get(_run_url(server, SYNC, name="summary.json"), timeout=10).json() == {"enrolled": 3}
    plan = admin.get(_run_url(server, SYNC, name="plan.csv"), timeout=10)
    assert plan.status_code == 200 and plan.text.startswith("action,employee_id,course")
    assert plan.headers["content-type"].startswith("text/plain")
    download = admin.get(_run_url(server, SYNC, name="plan.csv") + "?download=1", timeout=10)
    assert download.headers["content-type"].startswith("text/csv")
    assert "attachment" in download.headers["content-disposition"]

    listing = admin.get(_run_url(server, SYNC, name="files"), timeout=10)
    assert listing.status_code == 200
    for name in ("report.html", "summary.json", "plan.csv"):
        assert f"href='{name}'" in listing.text
    assert "feed.parquet" not in listing.text and "secret.txt" not in listing.text

    # a run without a report yet: a page that says so (404), listing what the run has
    missing = admin.get(_run_url(server, SYNC, run_id="manual__2026-01-06T06:00:00+00:00"), timeout=10)
    assert missing.status_code == 404 and "No report for this run yet" in missing.text


def test_with_login_on_only_signed_in_readers_get_reports(server_with_login):
    server = server_with_login
    anonymous = requests.get(_run_url(server, SYNC), timeout=10)
    assert anonymous.status_code == 401
    assert SYNC_REPORT not in anonymous.text
    forged = requests.get(_run_url(server, SYNC), headers={"Authorization": "Bearer x.y.z"}, timeout=10)
    assert forged.status_code in (401, 403) and SYNC_REPORT not in forged.text

    login = requests.post(
        f"{server.base_url}/auth/token",
        json={"username": "reader", "password": "reader-password"},
        timeout=10,
    )
    assert login.status_code in (200, 201), login.text
    token = login.json()["access_token"]
    as_bearer = requests.get(_run_url(server, SYNC), headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert as_bearer.status_code == 200 and as_bearer.text == SYNC_REPORT
    # the UI's session cookie is what the report tab's frame sends
    as_cookie = requests.get(_run_url(server, SYNC), cookies={"_token": token}, timeout=10)
    assert as_cookie.status_code == 200 and as_cookie.text == SYNC_REPORT


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        (f"/runs/{SYNC}/../report.html", {400}),  # run id ".."
        (f"/runs/{SYNC}/%2E%2E/report.html", {400}),
        (f"/runs/{SYNC}/..%2F..%2Fsome_other_dag%2F{RUN_KEY}/report.html", {404}),  # encoded slashes
        (f"/runs/{SYNC}/{RUN_KEY}/..%2F..%2F..%2Freport.html", {404}),
        (f"/runs/{SYNC}/{RUN_KEY}/%2Fetc%2Fpasswd", {404}),  # absolute path as the file name
        (f"/runs/{SYNC}/%2Ftmp/report.html", {404}),  # absolute path as the run id
        (f"/runs/{SYNC}/a%5C..%5Cb/report.html", {400}),  # backslashes
        (f"/runs/{SYNC}/{RUN_KEY}/secret.txt", {404}),  # a file in the folder, not a run file
        (f"/runs/{SYNC}/{RUN_KEY}/feed.parquet", {404}),
        (f"/runs/some_other_dag/{RUN_KEY}/report.html", {404}),  # another DAG's folder
        (f"/runs/some_other_dag/{RUN_KEY}/", {404}),
        (f"/runs/..%2Fsome_other_dag/{RUN_KEY}/report.html", {404}),
        (f"/runs/%2E%2E/{SYNC}/report.html", {404}),
    ],
)
def test_traversal_and_other_dags_are_refused(server, admin, path, statuses):
    status, body = server.raw_get(PLUGIN + path, admin.token)
    assert status in statuses, (path, status, body[:300])
    assert SECRET not in body


@pytest.mark.browser
@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="Debian chromium/chromedriver not installed (make setup installs them)",
)
def test_the_report_opens_from_the_run_page_in_the_ui(server, admin):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    created = admin.post(
        f"{server.base_url}/api/v2/dags/{SYNC}/dagRuns", json={"logical_date": None}, timeout=30
    )
    assert created.status_code == 200, created.text
    run_id = created.json()["dag_run_id"]
    from absorb_sync.jobs.runtime import run_key

    folder = server.output / SYNC / run_key(run_id)
    folder.mkdir(parents=True)
    (folder / "report.html").write_text(SYNC_REPORT.replace("3 enrolled", f"report of {run_id}"))

    profile = tempfile.mkdtemp(prefix="report-views-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(f"{server.base_url}/dags/{SYNC}/runs/{quote(run_id, safe='')}")
        tab = WebDriverWait(driver, 60).until(
            lambda d: next(
                (
                    e
                    for e in d.find_elements(By.XPATH, "//a[contains(., 'Absorb report')]")
                    if e.is_displayed()
                ),
                None,
            )
        )
        tab.click()
        frame = WebDriverWait(driver, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, "iframe"))
        assert f"{PLUGIN}/runs/{SYNC}/" in frame.get_attribute("src")
        driver.switch_to.frame(frame)
        WebDriverWait(driver, 30).until(
            lambda d: f"report of {run_id}" in d.find_element(By.TAG_NAME, "body").text
        )
        driver.switch_to.default_content()
        time.sleep(1)
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / "report_tab_on_the_run_page.png"))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
