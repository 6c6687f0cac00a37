"""The provider is registered through its entry point and declares the connection form."""

from __future__ import annotations

import os
import subprocess
import sys

from absorb_provider.get_provider_info import get_provider_info


def test_providers_manager_lists_absorb_connection_type():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-absorb" in manager.providers
    hook_info = manager.hooks["absorb"]
    assert hook_info.hook_class_name == "absorb_provider.hooks.absorb.AbsorbHook"
    assert hook_info.connection_id_attribute_name == "absorb_conn_id"


def test_connection_form_fields_from_provider_info():
    from airflow.providers_manager import ProvidersManager

    widgets = ProvidersManager().connection_form_widgets
    fields = {name.rsplit("__", 1)[-1]: widget for name, widget in widgets.items() if "absorb" in name}
    assert {
        "region",
        "private_key",
        "timeout",
        "requests_per_second",
        "max_concurrency",
        "max_token_takeovers",
    } <= set(fields)
    assert not fields["max_token_takeovers"].is_sensitive
    assert fields["private_key"].is_sensitive
    assert not fields["region"].is_sensitive


def test_provider_info_form_declares_regions_and_relabels_login():
    info = get_provider_info()
    (conn_type,) = info["connection-types"]
    assert conn_type["connection-type"] == "absorb"
    regions = conn_type["conn-fields"]["region"]["schema"]["enum"]
    assert set(regions) == {"US", "CA", "EU", "AU", "US-SANDBOX", "CA-SANDBOX", "EU-SANDBOX", "AU-SANDBOX"}
    assert conn_type["conn-fields"]["private_key"]["schema"]["format"] == "password"
    assert conn_type["ui-field-behaviour"]["relabeling"]["login"] == "Username"
    takeovers = conn_type["conn-fields"]["max_token_takeovers"]["schema"]
    assert (takeovers["default"], takeovers["minimum"]) == (3, 1)
    assert info["package-name"] == "airflow-provider-absorb"


def test_airflow_cli_lists_absorb_hook(tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "hooks", "--output", "plain"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.split() and line.split()[0] == "absorb")
    assert "absorb_provider.hooks.absorb.AbsorbHook" in line
