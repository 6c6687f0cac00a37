"""Apache Airflow provider for the Absorb LMS Integration API v2 (connection type ``absorb``)."""

__version__ = "0.1.0"
