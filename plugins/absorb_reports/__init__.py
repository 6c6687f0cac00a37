"""Run reports in the Airflow UI: an Airflow plugin that serves each run folder's reports and files
through the API server, and a tab on the DAG run page that opens them (see ``plugin.py``)."""
