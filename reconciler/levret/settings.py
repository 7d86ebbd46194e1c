"""Settings of the Levret client: credentials, endpoint, pacing, timeouts.

Validation happens here, once, so the client can trust its settings: plain `http://` is
refused unless the host is loopback (a secret must never cross a network in clear), and
turning TLS verification off is logged as a warning every time settings are built with it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_API_KEY_ID",
    "ENV_API_KEY_SECRET",
    "ENV_BASE_URL",
    "ENV_USER_ID",
    "ClientSettings",
    "InsecureURLError",
    "is_loopback_host",
]

log = logging.getLogger("reconciler.levret")

DEFAULT_BASE_URL = "https://api.levret.io/api/v1"
ENV_API_KEY_ID = "LEVRET_API_KEY_ID"
ENV_API_KEY_SECRET = "LEVRET_API_KEY_SECRET"
ENV_BASE_URL = "LEVRET_BASE_URL"
ENV_USER_ID = "LEVRET_USER_ID"

MAX_EXP_MS = 60_000


class InsecureURLError(ValueError):
    """The base URL would send the secret in clear, or is not a usable URL."""


def is_loopback_host(host: str) -> bool:
    """True for `localhost`, 127.0.0.0/8 and ::1: traffic that never leaves the machine."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ClientSettings(BaseModel):
    """Everything the client needs; `repr` shows the secret as `**********`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key_id: str = Field(min_length=1)
    api_key_secret: SecretStr
    user_id: str = Field(min_length=1)
    base_url: str = DEFAULT_BASE_URL
    send_secret_header: bool = True
    """The documentation lists `X-API-KEY-SECRET`; the signature alone authenticates."""
    rate_limit_per_minute: int = Field(default=1200, gt=0)
    rate_window_seconds: float = Field(default=60.0, gt=0)
    """Length of the exchange's rolling window; the budget is scaled to it."""
    rate_reserve: float = Field(default=0.10, ge=0, lt=1)
    """Fraction of the key's window never spent: room for its other clients (`--rate-reserve`)."""
    exp_ms: int = Field(default=MAX_EXP_MS, gt=0, le=MAX_EXP_MS)
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=15.0, gt=0)
    write_timeout: float = Field(default=15.0, gt=0)
    pool_timeout: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=4, ge=1, le=20)
    """Sends per call for the classes that retry (the first one included)."""
    backoff_initial: float = Field(default=0.25, ge=0)
    backoff_max: float = Field(default=8.0, ge=0)
    verify_tls: bool = True

    @field_validator("base_url")
    @classmethod
    def _secure_base_url(cls, value: str) -> str:
        value = value.rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise InsecureURLError(f"base_url must be an https:// URL, got {value!r}")
        if parts.query or parts.fragment:
            raise InsecureURLError("base_url must not carry a query or a fragment")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise InsecureURLError(
                f"plain http:// is refused for non-loopback host {parts.hostname!r}: "
                "the API secret would cross the network in clear; use https://"
            )
        return value

    @model_validator(mode="after")
    def _warn_insecure_tls(self) -> ClientSettings:
        if not self.verify_tls:
            log.warning(
                "TLS certificate verification is OFF for %s: anyone on the path can read "
                "and change requests",
                self.base_url,
            )
        return self

    @property
    def api_prefix(self) -> str:
        """The path part of the base URL, e.g. `/api/v1`: it is part of what is signed."""
        return urlsplit(self.base_url).path.rstrip("/")

    @property
    def origin(self) -> str:
        """`scheme://host[:port]` of the base URL: where the Socket.IO stream connects."""
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def window_limit(self) -> int:
        """The documented requests per rolling window, until the exchange's headers say more."""
        per_window = self.rate_limit_per_minute * self.rate_window_seconds / 60.0
        return max(1, int(per_window))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> ClientSettings:
        """Build settings from `LEVRET_*` variables; keyword overrides win over them."""
        env = os.environ if environ is None else environ
        missing = [
            name for name in (ENV_API_KEY_ID, ENV_API_KEY_SECRET, ENV_USER_ID) if not env.get(name)
        ]
        missing = [m for m in missing if _field_for(m) not in overrides]
        if missing:
            raise ValueError("missing environment variables: " + ", ".join(missing))
        values: dict[str, object] = {
            "api_key_id": env.get(ENV_API_KEY_ID, ""),
            "api_key_secret": env.get(ENV_API_KEY_SECRET, ""),
            "user_id": env.get(ENV_USER_ID, ""),
        }
        if env.get(ENV_BASE_URL):
            values["base_url"] = env[ENV_BASE_URL]
        values.update(overrides)
        return cls.model_validate(values)


def _field_for(env_name: str) -> str:
    return {
        ENV_API_KEY_ID: "api_key_id",
        ENV_API_KEY_SECRET: "api_key_secret",
        ENV_USER_ID: "user_id",
    }[env_name]
