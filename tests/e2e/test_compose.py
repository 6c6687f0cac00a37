"""docker-compose.yaml is valid for docker-compose and keeps the cluster's contract (no engine here:
validation and the resolved model only)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from .harness import ROOT

COMPOSE = shutil.which("docker-compose")
pytestmark = pytest.mark.skipif(COMPOSE is None, reason="docker-compose binary not installed")


def _compose(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [COMPOSE, "-f", str(ROOT / "docker-compose.yaml"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def resolved() -> dict:
    result = _compose("config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_validates():
    result = _compose("config", "-q")
    assert result.returncode == 0, f"docker-compose config -q failed:\n{result.stderr}"


def test_cluster_has_every_component(resolved):
    expected = {
        "postgres",
        "redis",
        "absorb-sandbox",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-init",
    }
    assert expected <= set(resolved["services"]), sorted(resolved["services"])


def test_airflow_services_share_executor_execution_api_and_mounts(resolved):
    airflow_services = [name for name in resolved["services"] if name.startswith("airflow-")]
    for name in airflow_services:
        service = resolved["services"][name]
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", (
            name
        )
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"], f"{name}: components must share a JWT secret"
        targets = {
            volume["target"] if isinstance(volume, dict) else volume.split(":")[1]
            for volume in service["volumes"]
        }
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"} <= targets, name
        assert service["build"], f"{name} must use the project image (provider installed)"


def test_init_migrates_and_bootstraps_before_the_others_start(resolved):
    services = resolved["services"]
    init_script = " ".join(services["airflow-init"]["command"])
    assert "airflow db migrate" in init_script and "bootstrap_airflow.py" in init_script
    for name in (
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    ):
        assert (
            services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        ), name
    assert services["airflow-init"]["environment"]["ABSORB_SANDBOX_URL"] == "http://absorb-sandbox:8765"


def test_image_is_built_from_the_pinned_airflow_and_requirements():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2-python3.11" in dockerfile
    assert "-r requirements.txt" in dockerfile
    pins = (ROOT / "requirements.txt").read_text()
    assert "apache-airflow==3.3.2" in pins and "-e ." in pins
