"""The ``absorb_reports`` Airflow plugin: each Absorb run's report one click from the run in the UI.

- ``fastapi_apps``: ``absorb_reports.app`` mounted by the API server at ``/absorb-reports``; it
  reads the run folders where the API server is (any ObjectStoragePath), so it works on a cluster
  whose workers and API server share the output root, not only on the machine that ran the task.
- ``external_views``: two tabs on the DAG run page (destination ``dag_run``; the UI fills in
  ``{DAG_ID}`` and ``{RUN_ID}``): "Absorb report" and "Absorb run files".

Registered through the ``airflow.plugins`` entry point of this distribution (pyproject.toml), so it
loads wherever the project is installed, whatever the plugins folder is. Operator extra links were
the alternative: they need the run's report path at link time (XCom) and open a new tab on a URL
that must still be served by something; the plugin serves the files and shows them in the UI.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from .app import LazyApp

URL_PREFIX = "/absorb-reports"


class AbsorbReportsPlugin(AirflowPlugin):
    name = "absorb_reports"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Absorb run reports"}]
    external_views = [
        {
            "name": "Absorb report",
            "href": URL_PREFIX + "/runs/{DAG_ID}/{RUN_ID}/",
            "destination": "dag_run",
            "url_route": "absorb-report",
        },
        {
            "name": "Absorb run files",
            "href": URL_PREFIX + "/runs/{DAG_ID}/{RUN_ID}/files",
            "destination": "dag_run",
            "url_route": "absorb-run-files",
        },
    ]
