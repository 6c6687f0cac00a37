"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

The connection form is declared here (``conn-fields`` / ``ui-field-behaviour``), which is how
Airflow 3.2+ renders custom fields without the deprecated wtforms widgets.
"""

from absorb_provider.settings import DEFAULT_MAX_TOKEN_TAKEOVERS, REGION_BASE_URLS


def get_provider_info() -> dict:
    return {
        "package-name": "airflow-provider-absorb",
        "name": "Absorb LMS",
        "description": "Absorb LMS Integration API v2: connection type, hook and bulk operators.",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "Absorb LMS",
                "external-doc-url": "https://docs.myabsorb.com/integration-api",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Absorb LMS", "python-modules": ["absorb_provider.hooks.absorb"]}],
        "operators": [
            {
                "integration-name": "Absorb LMS",
                "python-modules": [
                    "absorb_provider.operators.enrollments",
                    "absorb_provider.operators.export",
                ],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "absorb_provider.hooks.absorb.AbsorbHook",
                "hook-name": "Absorb LMS",
                "connection-type": "absorb",
                "conn-fields": {
                    "region": {
                        "label": "Region",
                        "description": "Absorb gateway; ignored when Host holds a custom base URL.",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": list(REGION_BASE_URLS),
                            "default": "US",
                        },
                    },
                    "private_key": {
                        "label": "Private API key",
                        "description": "The portal's private API key (a GUID), sent as x-api-key.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Read timeout of every request.",
                        "schema": {"type": ["number", "null"], "default": 30, "minimum": 1},
                    },
                    "requests_per_second": {
                        "label": "Requests per second",
                        "description": "Client-side rate limit shared by the hook's threads (0: none).",
                        "schema": {"type": ["number", "null"], "default": 100, "minimum": 0},
                    },
                    "max_concurrency": {
                        "label": "Maximum concurrency",
                        "description": "Requests in flight at once during bulk operations.",
                        "schema": {"type": ["integer", "null"], "default": 8, "minimum": 1, "maximum": 64},
                    },
                    "max_token_takeovers": {
                        "label": "Token take-overs before failing",
                        "description": (
                            "How many times another client logging in as the same API user may "
                            "replace the token (within 5 minutes) before tasks fail instead of "
                            "logging in again. Give each deployment its own API user."
                        ),
                        "schema": {
                            "type": ["integer", "null"],
                            "default": DEFAULT_MAX_TOKEN_TAKEOVERS,
                            "minimum": 1,
                            "maximum": 20,
                        },
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {"host": "Custom base URL (optional)", "login": "Username"},
                    "placeholders": {
                        "host": "leave empty to use the region, e.g. https://rest.myabsorb.com",
                        "login": "API admin username",
                    },
                },
            }
        ],
    }
