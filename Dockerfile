# The Airflow image for docker-compose.yaml: the official image plus this project's pinned stack,
# so the Absorb provider (and its connection type) is installed in every component.
FROM apache/airflow:3.3.2-python3.11

USER airflow
WORKDIR /opt/airflow

# Dependencies first (cached while only code changes). The editable install at the end points at
# /opt/airflow/plugins and /opt/airflow/include, which compose also mounts for live code.
COPY --chown=airflow:root requirements.txt pyproject.toml README.md /opt/airflow/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
COPY --chown=airflow:root include/ /opt/airflow/include/
COPY --chown=airflow:root scripts/bootstrap_airflow.py /opt/airflow/scripts/bootstrap_airflow.py
COPY --chown=airflow:root dags/ /opt/airflow/dags/

RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r requirements.txt

ENV GX_ANALYTICS_ENABLED=false \
    ABSORB_OUTPUT_ROOT=/opt/airflow/var/output \
    ABSORB_STATE_ROOT=/opt/airflow/var/state
