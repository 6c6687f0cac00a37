"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""


def get_provider_info() -> dict:
    return {
        "package-name": "airflow-provider-absorb",
        "name": "Absorb LMS",
        "description": "Absorb LMS Integration API v2: connection type, hook and bulk operators.",
        "versions": ["0.1.0"],
        "connection-types": [],
    }
