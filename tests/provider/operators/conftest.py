"""Operator tests run real DAGs with ``dag.test()`` on the session's SQLite metadata DB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TEST_DAGS = Path(__file__).with_name("dags")
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"


@pytest.fixture
def provider_dag(airflow_db, monkeypatch):
    """A DAG from this folder's bundle, ready for ``dag.test()`` (the project's own DAG folder
    stays configured as the ``dags-folder`` bundle so other tests see the same bundle list)."""
    bundles = [
        {"name": "absorb-provider-tests", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(TEST_DAGS)}},
        {"name": "dags-folder", "classpath": LOCAL_BUNDLE, "kwargs": {}},
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))

    def load(dag_id: str):
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(TEST_DAGS))
        assert not bag.import_errors, bag.import_errors
        return bag.dags[dag_id]

    return load


@pytest.fixture
def run_dag():
    """Runs a DAG with ``dag.test(run_conf=...)`` and returns (dag_run, {task_id: state})."""

    def run(dag, conf: dict):
        dag_run = dag.test(run_conf=conf)
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        return dag_run, states

    return run


@pytest.fixture
def xcom_value():
    """The return value a task pushed in a run (read from the metadata DB)."""

    def read(dag_run, task_id: str):
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            row = session.scalar(
                select(XComModel).where(
                    XComModel.dag_id == dag_run.dag_id,
                    XComModel.run_id == dag_run.run_id,
                    XComModel.task_id == task_id,
                    XComModel.key == "return_value",
                )
            )
            return None if row is None else XComModel.deserialize_value(row)

    return read
