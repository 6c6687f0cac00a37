"""Connection settings: region gateways and the tunables stored in the connection's extra."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

REGION_BASE_URLS: dict[str, str] = {
    "US": "https://rest.myabsorb.com",
    "CA": "https://rest.myabsorb.ca",
    "EU": "https://rest.myabsorb.eu",
    "AU": "https://rest.myabsorb.com.au",
    "US-SANDBOX": "https://rest.sandbox.myabsorb.com",
    "CA-SANDBOX": "https://rest.sandbox.myabsorb.ca",
    "EU-SANDBOX": "https://rest.sandbox.myabsorb.eu",
    "AU-SANDBOX": "https://rest.sandbox.myabsorb.com.au",
}

DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_REQUESTS_PER_SECOND = 100.0
DEFAULT_MAX_CONCURRENCY = 8
DEFAULT_TOKEN_LIFETIME_SECONDS = 4 * 3600
DEFAULT_MAX_TOKEN_TAKEOVERS = 3  # tokens replaced by another client's login before a task fails


def _number(extra: dict[str, Any], name: str, default: float, *, minimum: float) -> float:
    raw = extra.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"connection extra '{name}' must be a number, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"connection extra '{name}' must be >= {minimum}, got {value}")
    return value


def resolve_base_url(host: str | None, region: str | None) -> str:
    """A custom ``host`` wins; otherwise the region's gateway (US when neither is set)."""
    if host:
        url = host.strip().rstrip("/")
        return url if "://" in url else f"https://{url}"
    key = (region or "US").strip().upper().replace("_", "-")
    if key not in REGION_BASE_URLS:
        raise ValueError(f"unknown Absorb region {region!r}; expected one of {', '.join(REGION_BASE_URLS)}")
    return REGION_BASE_URLS[key]


@dataclass(frozen=True)
class AbsorbSettings:
    """Everything the client needs from an Airflow connection (secrets excluded from repr)."""

    conn_id: str
    base_url: str
    username: str
    password: str = field(repr=False)
    private_key: str = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    token_lifetime: float = DEFAULT_TOKEN_LIFETIME_SECONDS
    max_token_takeovers: int = DEFAULT_MAX_TOKEN_TAKEOVERS

    @classmethod
    def from_connection(cls, conn: Any) -> AbsorbSettings:
        extra = conn.extra_dejson or {}
        private_key = extra.get("private_key") or extra.get("api_key") or ""
        missing = [
            name
            for name, value in (
                ("login", conn.login),
                ("password", conn.password),
                ("private_key", private_key),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"Absorb connection '{conn.conn_id}' lacks: {', '.join(missing)}")
        return cls(
            conn_id=conn.conn_id,
            base_url=resolve_base_url(conn.host, extra.get("region")),
            username=conn.login,
            password=conn.password,
            private_key=str(private_key),
            timeout=_number(extra, "timeout", DEFAULT_TIMEOUT_SECONDS, minimum=0.1),
            requests_per_second=_number(extra, "requests_per_second", DEFAULT_REQUESTS_PER_SECOND, minimum=0),
            max_concurrency=int(_number(extra, "max_concurrency", DEFAULT_MAX_CONCURRENCY, minimum=1)),
            token_lifetime=_number(
                extra, "token_lifetime_seconds", DEFAULT_TOKEN_LIFETIME_SECONDS, minimum=1
            ),
            max_token_takeovers=int(
                _number(extra, "max_token_takeovers", DEFAULT_MAX_TOKEN_TAKEOVERS, minimum=1)
            ),
        )

    @property
    def identity(self) -> str:
        """A stable, non-secret id of (gateway, user): tokens are per user, so they are shared per identity."""
        digest = hashlib.sha256(f"{self.base_url}\0{self.username}".encode()).hexdigest()
        return digest[:20]

    def key_material(self) -> bytes:
        """Secret material that only holders of this connection's credentials can rebuild."""
        return (
            f"absorb-token-v1\0{self.base_url}\0{self.username}\0{self.password}\0{self.private_key}".encode()
        )
