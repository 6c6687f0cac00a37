"""The Airflow UI in headless Chromium: trigger the sync from its Params form, find the run, and see
the Absorb connection form. Screenshots land in var/artifacts/screenshots/."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ARTIFACTS

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = ARTIFACTS / "screenshots"
SYNC_DAG = "absorb_hr_enrollment_sync"
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="Debian chromium/chromedriver not installed (make setup installs them)",
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="e2e-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROME_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager never downloads anything.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, condition, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _css(driver, selector: str, timeout: float = 30):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    return _wait(driver, ec.element_to_be_clickable((By.CSS_SELECTOR, selector)), timeout)


def _replace_text(element, value: str) -> None:
    """React inputs ignore a programmatic clear() and can drop keys typed during a re-render:
    select all, type over it, and retype key by key until the field holds exactly ``value``."""
    from selenium.webdriver.common.keys import Keys

    for attempt in range(3):
        element.send_keys(Keys.CONTROL, "a")
        element.send_keys(Keys.DELETE)
        if attempt == 0:
            element.send_keys(value)
        else:
            for char in value:
                element.send_keys(char)
                time.sleep(0.02)
        if element.get_attribute("value") == value:
            return
    raise AssertionError(f"the input holds {element.get_attribute('value')!r}, not {value!r}")


def _shot(driver, name: str) -> Path:
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def test_trigger_sync_from_its_params_form_and_see_the_run(
    browser, cluster, airflow_api, hr_feed, e2e_sandbox
):
    from selenium.webdriver.common.by import By

    airflow_api.wait_for_dags({SYNC_DAG})
    feed, _ = hr_feed("browser_dry_run.csv")
    runs_before = {run["dag_run_id"] for run in airflow_api.runs(SYNC_DAG)}
    writes_before = e2e_sandbox.stats()["write_calls"]

    browser.get(f"{cluster.base_url}/dags/{SYNC_DAG}")
    _css(browser, '[data-testid="trigger-dag-button"]').click()
    feed_input = _css(browser, "#element_feed_path")
    assert (
        "absorb_hr_enrollment_sync" in browser.find_element(By.CSS_SELECTOR, ".chakra-dialog__content").text
    )
    _replace_text(feed_input, str(feed))
    dry_run = browser.find_element(By.CSS_SELECTOR, 'input[name="element_dry_run"]')
    if not dry_run.is_selected():
        browser.execute_script("arguments[0].click();", dry_run)
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, 'input[name="element_dry_run"]').is_selected())
    _shot(browser, "01a_sync_trigger_form_feed")
    browser.execute_script(
        "(arguments[0].closest('[role=group]') || arguments[0].parentElement)"
        ".scrollIntoView({block: 'center'});",
        dry_run,
    )
    _shot(browser, "01b_sync_trigger_form_dry_run")
    _css(browser, '[data-testid="trigger-dag-submit"]').click()

    new_run = _wait(
        browser, lambda d: [r for r in airflow_api.runs(SYNC_DAG) if r["dag_run_id"] not in runs_before], 30
    )[0]
    assert new_run["conf"]["feed_path"] == str(feed)
    assert new_run["conf"]["dry_run"] is True
    assert new_run["run_type"] == "manual"

    browser.get(f"{cluster.base_url}/dags/{SYNC_DAG}/runs")
    _wait(browser, lambda d: new_run["dag_run_id"] in d.find_element(By.TAG_NAME, "body").text, 30)
    _shot(browser, "02_sync_run_listed")

    finished = airflow_api.wait_for_run(SYNC_DAG, new_run["dag_run_id"], timeout=240)
    states = airflow_api.task_states(SYNC_DAG, new_run["dag_run_id"])
    assert finished["state"] == "success", airflow_api.explain(SYNC_DAG, new_run["dag_run_id"])
    assert states["apply_plan"] == "success"
    assert e2e_sandbox.stats()["write_calls"] == writes_before, "a dry run wrote to Absorb"
    browser.get(f"{cluster.base_url}/dags/{SYNC_DAG}/runs/{new_run['dag_run_id']}")
    _wait(browser, lambda d: "plan thresholds" in d.find_element(By.TAG_NAME, "body").text, 30)
    time.sleep(1)  # let the grid paint its colours for the artifact
    _shot(browser, "03_sync_run_detail")

    # the feed gate's task log says what was checked: one line per check and the verdict
    browser.get(f"{cluster.base_url}/dags/{SYNC_DAG}/runs/{new_run['dag_run_id']}/tasks/validate_feed")
    _wait(browser, lambda d: "gate hr_feed: verdict PASSED" in d.find_element(By.TAG_NAME, "body").text, 90)
    log_text = browser.find_element(By.TAG_NAME, "body").text
    assert "gate hr_feed: PASS" in log_text
    _shot(browser, "08_gate_log_validate_feed")


def test_absorb_connection_form_shows_its_fields(browser, cluster):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{cluster.base_url}/connections")
    add = _wait(
        browser,
        lambda d: next(
            (b for b in d.find_elements(By.TAG_NAME, "button") if b.text == "Add Connection"), None
        ),
    )
    add.click()
    combo = _css(browser, '.chakra-dialog__content input[role="combobox"]')
    combo.send_keys("Absorb")
    _wait(
        browser,
        lambda d: any(o.text == "Absorb LMS" for o in d.find_elements(By.CSS_SELECTOR, '[role="option"]')),
    )
    combo.send_keys(Keys.ENTER)
    dialog = _css(browser, ".chakra-dialog__content")
    _wait(browser, lambda d: "Custom base URL (optional)" in dialog.text)
    standard = dialog.text
    for label in ("Custom base URL (optional)", "Username", "Password"):
        assert label in standard, f"Absorb connection form lacks {label!r}:\n{standard}"
    for hidden in ("Port", "Schema", "Host", "Login"):
        assert f"\n{hidden}\n" not in f"\n{standard}\n", f"{hidden} should be hidden or relabelled"
    _shot(browser, "04_absorb_connection_standard_fields")

    next(b for b in dialog.find_elements(By.TAG_NAME, "button") if b.text == "Extra Fields").click()
    _wait(browser, lambda d: "Private API key" in dialog.text)
    extra = dialog.text
    for label in ("Region", "Private API key", "Timeout (seconds)", "Requests per second"):
        assert label in extra, f"Absorb connection extra fields lack {label!r}:\n{extra}"
    _shot(browser, "05_absorb_connection_extra_fields")


def test_approve_a_held_unenrollment_from_required_actions(browser, cluster, airflow_api, e2e_sandbox):
    """Issue 9 §1: a held run is answered from the UI's Required actions page (comment + Approve).

    The run is harmless on purpose: a people list that matches nobody is held (max_unresolved_pct),
    and approving it removes nothing."""
    from selenium.webdriver.common.by import By

    dag_id = "absorb_bulk_unenrollment"
    airflow_api.wait_for_dags({dag_id})
    airflow_api.set_paused(dag_id, False)
    try:
        writes_before = e2e_sandbox.stats()["write_calls"]
        run_id = airflow_api.trigger(dag_id, {"people": "E990001\nE990002", "reason": "browser approval"})
        pending = airflow_api.wait_for_hitl(dag_id, run_id, "approve")
        assert "match no Absorb user" in pending["body"]

        browser.get(f"{cluster.base_url}/dags/{dag_id}/runs/{run_id}/tasks/approve/required_actions")
        comment = _css(browser, "#element_comment", timeout=60)
        _replace_text(comment, "browser: checked, nobody matches, nothing to remove")
        approve = _wait(
            browser,
            lambda d: [b for b in d.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Approve"],
            30,
        )[0]
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", approve)
        time.sleep(1)
        _shot(browser, "06_approval_required_action")
        approve.click()

        answered = _wait(
            browser,
            lambda d: [h for h in airflow_api.hitl_details(dag_id, run_id) if h["response_received"]],
            60,
        )[0]
        assert answered["chosen_options"] == ["Approve"]
        assert answered["params_input"]["comment"].startswith("browser: checked")
        airflow_api.wait_for_run(dag_id, run_id, timeout=240)
        states = airflow_api.task_states(dag_id, run_id)
        assert states["approve"] == "success" and states["unenroll"] == "success", airflow_api.explain(
            dag_id, run_id
        )
        assert e2e_sandbox.stats()["write_calls"] == writes_before
        browser.get(f"{cluster.base_url}/dags/{dag_id}/runs/{run_id}")
        time.sleep(2)
        _shot(browser, "07_approved_unenrollment_run")
    finally:
        airflow_api.set_paused(dag_id, True)
