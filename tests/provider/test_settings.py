"""Connection settings: region gateways, custom hosts and validated tunables."""

from __future__ import annotations

import pytest
from absorb_provider.settings import REGION_BASE_URLS, AbsorbSettings, resolve_base_url
from airflow.sdk import Connection


def _conn(**kwargs) -> Connection:
    defaults = {"conn_id": "absorb_test", "conn_type": "absorb", "login": "api.user", "password": "pw"}
    return Connection(**(defaults | kwargs))


@pytest.mark.parametrize(
    ("region", "url"),
    [
        ("US", "https://rest.myabsorb.com"),
        ("CA", "https://rest.myabsorb.ca"),
        ("EU", "https://rest.myabsorb.eu"),
        ("AU", "https://rest.myabsorb.com.au"),
        ("eu-sandbox", "https://rest.sandbox.myabsorb.eu"),
        ("AU_SANDBOX", "https://rest.sandbox.myabsorb.com.au"),
        (None, "https://rest.myabsorb.com"),
    ],
)
def test_region_gateways(region, url):
    assert resolve_base_url(None, region) == url


def test_sandbox_gateways_prefix_rest_sandbox():
    for region in ("US", "CA", "EU", "AU"):
        assert REGION_BASE_URLS[f"{region}-SANDBOX"] == REGION_BASE_URLS[region].replace(
            "rest.", "rest.sandbox."
        )


def test_custom_host_wins_over_region():
    assert resolve_base_url("http://127.0.0.1:8765/", "EU") == "http://127.0.0.1:8765"
    assert resolve_base_url("rest.example.org", None) == "https://rest.example.org"


def test_unknown_region_is_named():
    with pytest.raises(ValueError, match="unknown Absorb region 'MARS'"):
        resolve_base_url(None, "MARS")


def test_settings_from_connection_extra():
    conn = _conn(
        extra='{"private_key": "k", "region": "CA", "timeout": "12", "requests_per_second": 5, "max_concurrency": 3}'
    )
    settings = AbsorbSettings.from_connection(conn)
    assert settings.base_url == "https://rest.myabsorb.ca"
    assert (settings.timeout, settings.requests_per_second, settings.max_concurrency) == (12.0, 5.0, 3)
    assert settings.max_token_takeovers == 3  # the default
    assert "pw" not in repr(settings) and "'k'" not in repr(settings)


def test_max_token_takeovers_from_extra():
    settings = AbsorbSettings.from_connection(_conn(extra='{"private_key": "k", "max_token_takeovers": "5"}'))
    assert settings.max_token_takeovers == 5
    with pytest.raises(ValueError, match="'max_token_takeovers' must be >= 1"):
        AbsorbSettings.from_connection(_conn(extra='{"private_key": "k", "max_token_takeovers": 0}'))


def test_missing_credentials_are_named():
    with pytest.raises(ValueError, match="lacks: password, private_key"):
        AbsorbSettings.from_connection(_conn(password=None, extra="{}"))


def test_bad_tunable_is_named():
    with pytest.raises(ValueError, match="'max_concurrency' must be >= 1"):
        AbsorbSettings.from_connection(_conn(extra='{"private_key": "k", "max_concurrency": 0}'))
    with pytest.raises(ValueError, match="'timeout' must be a number"):
        AbsorbSettings.from_connection(_conn(extra='{"private_key": "k", "timeout": "soon"}'))
