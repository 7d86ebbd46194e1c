"""Client settings: transport security, environment, and a secret that never shows."""

from __future__ import annotations

import logging
import ssl

import pytest
from pydantic import ValidationError

from reconciler.levret.settings import (
    DEFAULT_BASE_URL,
    ENV_API_KEY_ID,
    ENV_API_KEY_SECRET,
    ENV_BASE_URL,
    ENV_USER_ID,
    ClientSettings,
)
from reconciler.levret.transport import _tls_verification

SECRET = "zz-settings-secret-zz"


def settings(**kw: object) -> ClientSettings:
    values: dict[str, object] = {"api_key_id": "k", "api_key_secret": SECRET, "user_id": "u"}
    values.update(kw)
    return ClientSettings.model_validate(values)


@pytest.mark.parametrize(
    "url",
    ["http://api.levret.io/api/v1", "http://10.0.0.1/api/v1", "http://128.0.0.1:8000/api/v1"],
)
def test_plain_http_refused_for_non_loopback(url: str) -> None:
    with pytest.raises(ValidationError, match="plain http:// is refused"):
        settings(base_url=url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/api/v1",
        "http://127.5.6.7/api/v1",
        "http://localhost:9/api/v1",
        "http://[::1]:8000/api/v1",
        "https://api.levret.io/api/v1/",
    ],
)
def test_https_and_loopback_http_accepted(url: str) -> None:
    made = settings(base_url=url)
    assert made.base_url == url.rstrip("/")
    assert made.api_prefix == "/api/v1"


def test_other_schemes_refused() -> None:
    with pytest.raises(ValidationError):
        settings(base_url="ftp://api.levret.io/api/v1")


def test_secret_never_in_repr_str_or_dump() -> None:
    made = settings()
    for text in (repr(made), str(made), made.model_dump_json(), repr(made.model_dump())):
        assert SECRET not in text
    assert made.api_key_secret.get_secret_value() == SECRET


def test_tls_off_is_logged_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="reconciler.levret")
    settings(verify_tls=False)
    assert any(
        r.levelno == logging.WARNING and "verification is OFF" in r.getMessage()
        for r in caplog.records
    )


def test_tls_on_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="reconciler.levret")
    settings()
    assert not caplog.records


def test_a_loopback_http_client_loads_no_certificates_and_trusts_none() -> None:
    # Plain http never makes a TLS handshake; loading the system's certificates for it is
    # tens of milliseconds per client. What it gets instead would refuse any server.
    tls = _tls_verification(settings(base_url="http://127.0.0.1:8000/api/v1"))
    assert isinstance(tls, ssl.SSLContext)
    assert tls.verify_mode == ssl.CERT_REQUIRED and tls.check_hostname
    assert tls.cert_store_stats()["x509_ca"] == 0


@pytest.mark.parametrize("verify", [True, False])
def test_an_https_client_verifies_as_its_settings_say(verify: bool) -> None:
    assert _tls_verification(settings(verify_tls=verify)) is verify


def test_from_env_reads_the_documented_variables() -> None:
    env = {
        ENV_API_KEY_ID: "demo-key",
        ENV_API_KEY_SECRET: SECRET,
        ENV_USER_ID: "demo",
        ENV_BASE_URL: "http://127.0.0.1:8123/api/v1",
    }
    made = ClientSettings.from_env(env)
    assert (made.api_key_id, made.user_id, made.base_url) == (
        "demo-key",
        "demo",
        "http://127.0.0.1:8123/api/v1",
    )
    assert ClientSettings.from_env({**env, ENV_BASE_URL: ""}).base_url == DEFAULT_BASE_URL


def test_from_env_names_missing_variables_without_values() -> None:
    with pytest.raises(ValueError, match=ENV_API_KEY_SECRET) as caught:
        ClientSettings.from_env({ENV_API_KEY_ID: "k", ENV_USER_ID: "u"})
    assert SECRET not in str(caught.value)


def test_window_limit_scales_the_documented_budget_to_the_window() -> None:
    assert settings().window_limit == 1200
    small = settings(rate_limit_per_minute=600, rate_window_seconds=2)
    assert small.window_limit == 20
    assert settings().rate_reserve == 0.10
    with pytest.raises(ValueError):
        settings(rate_reserve=1.0)
