#!/usr/bin/env python
"""Creates (or repairs) the ``absorb_default`` connection and the ``absorb_api`` pool.

Idempotent: a second run with the same settings changes nothing, a run with new settings updates
them in place. Used by ``make airflow``, the demo, the compose init service and the e2e harness.

Settings come from the environment, so secrets never appear on a command line or in the output:

    ABSORB_BASE_URL      the REST gateway, e.g. https://rest.myabsorb.com, or the sandbox's URL
    ABSORB_REGION        instead of a URL: US, CA, EU, AU (or US-SANDBOX...), stored in the extra
    ABSORB_SANDBOX_URL   used when neither is set (default http://127.0.0.1:8765, `make sandbox`)
    ABSORB_USERNAME      the API admin user          (default: the sandbox's)
    ABSORB_PASSWORD      its password                (default: the sandbox's)
    ABSORB_PRIVATE_KEY   the portal's private API key (default: the sandbox's)
    ABSORB_CONN_ID       default absorb_default
    ABSORB_POOL_SLOTS    default 4; caps concurrent Absorb API tasks

If ``AIRFLOW_CONN_<ID>`` is set, the environment already provides the connection and only the pool
is created (Airflow reads environment connections before the database).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from urllib.parse import urlsplit

POOL_NAME = "absorb_api"
POOL_DESCRIPTION = "Concurrent Absorb API tasks (the portal allows one live token and rate-limits)"
# The offline sandbox's well-known credentials (absorb_sandbox.testing); not secrets.
DEFAULT_SANDBOX_URL = "http://127.0.0.1:8765"
SANDBOX_DEFAULTS = {
    "ABSORB_USERNAME": "airflow.integration",
    "ABSORB_PASSWORD": "sandbox-password",
    "ABSORB_PRIVATE_KEY": "0b5f4a8e-2c3d-4e5f-8a9b-1c2d3e4f5a6b",
}


def setting(name: str) -> str:
    return os.environ.get(name) or SANDBOX_DEFAULTS[name]


def desired_connection(conn_id: str) -> dict:
    """The connection's fields from the environment (sandbox defaults where unset)."""
    region = os.environ.get("ABSORB_REGION", "").strip()
    base_url = os.environ.get("ABSORB_BASE_URL", "").strip().rstrip("/") or None
    if base_url is None and not region:
        base_url = (os.environ.get("ABSORB_SANDBOX_URL") or DEFAULT_SANDBOX_URL).rstrip("/")
    if base_url and urlsplit(base_url).scheme not in ("http", "https"):
        raise SystemExit(f"ABSORB_BASE_URL must start with http:// or https:// (got {base_url!r})")
    extra = {"private_key": setting("ABSORB_PRIVATE_KEY")}
    if region:
        extra["region"] = region
    return {
        "conn_id": conn_id,
        "conn_type": "absorb",
        "description": "Absorb LMS Integration API v2",
        "host": base_url,
        "login": setting("ABSORB_USERNAME"),
        "password": setting("ABSORB_PASSWORD"),
        "extra": json.dumps(extra, sort_keys=True),
    }


def ensure_connection(conn_id: str) -> str:
    """Creates or updates the connection; returns what happened (never the secret values)."""
    from airflow.models import Connection
    from airflow.utils.session import create_session

    wanted = desired_connection(conn_id)
    with create_session() as session:
        existing = session.query(Connection).filter(Connection.conn_id == conn_id).one_or_none()
        if existing is None:
            session.add(Connection(**wanted))
            return "created"
        current = {
            "conn_type": existing.conn_type,
            "description": existing.description,
            "host": existing.host,
            "login": existing.login,
            "password": existing.password,
            "extra": existing.extra,
        }
        if all(current[key] == wanted[key] for key in current):
            return "unchanged"
        for key, value in wanted.items():
            if key != "conn_id":
                setattr(existing, key, value)
        return "updated"


def ensure_pool(slots: int) -> str:
    from airflow.models import Pool

    pool = Pool.get_pool(POOL_NAME)
    if pool is not None and pool.slots == slots:
        return "unchanged"
    Pool.create_or_update_pool(POOL_NAME, slots, POOL_DESCRIPTION, include_deferred=False)
    return "created" if pool is None else "updated"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool-only", action="store_true", help="create the pool, not the connection")
    args = parser.parse_args(argv)
    conn_id = os.environ.get("ABSORB_CONN_ID", "absorb_default")
    slots = int(os.environ.get("ABSORB_POOL_SLOTS", "4"))
    if slots < 1:
        raise SystemExit(f"ABSORB_POOL_SLOTS must be at least 1 (got {slots})")

    env_connection = f"AIRFLOW_CONN_{conn_id.upper()}"
    if args.pool_only or os.environ.get(env_connection):
        reason = "--pool-only" if args.pool_only else f"{env_connection} is set"
        print(f"connection {conn_id}: skipped ({reason})")
    else:
        wanted = desired_connection(conn_id)
        target = (
            urlsplit(wanted["host"]).netloc if wanted["host"] else f"region {os.environ['ABSORB_REGION']}"
        )
        print(f"connection {conn_id}: {ensure_connection(conn_id)} ({target})")
    print(f"pool {POOL_NAME}: {ensure_pool(slots)} ({slots} slots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
