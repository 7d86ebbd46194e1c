"""`reconciler doctor` against a real sandbox in every wire style, and against broken answers.

The doctor is read-only (the sandbox's request log shows GETs only), bounded (one call per
read endpoint), says how it read each style, prints no value of the account, and exits 1 when
something the reconciler needs is not understood.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from cli_support import make_invoke
from pydantic import SecretStr

from reconciler.levret.doctor import diagnose
from reconciler.levret.settings import ClientSettings

BALANCE = "987654.321"

# What the doctor must say for each style: (endpoint, where, text expected in it).
EXPECTED: dict[str, list[tuple[str, str, str]]] = {
    "documented": [
        ("GET /order/open", "container", "list under 'items', pagination at the top"),
        ("GET /order/open", "createdAt", "epoch ms"),
        ("GET /market/supported-symbols", "container", "plain list"),
    ],
    "snake": [
        ("GET /market/supported-symbols", "container", "list under 'list'"),
        ("GET /market/supported-symbols", "tickSize", "tick_size (decimal string)"),
        ("GET /order/open", "container", "pagination in 'pagination'"),
        ("GET /order/open", "createdAt", "created_at (ISO-8601)"),
        ("GET /order/open", "id", "order_id (string)"),
        ("GET /order/open", "status", "enum 'OPEN'"),
    ],
    "seconds": [
        ("GET /order/open", "container", "list under 'rows', pagination at the top"),
        ("GET /order/open", "createdAt", "epoch seconds"),
        ("GET /order/open", "status", "enum 'new'"),
        ("GET /positions", "id", "positionId (string)"),
        ("GET /trade/user/:userId", "id", "tradeId (string)"),
    ],
    "sparse": [
        ("GET /order/open", "container", "plain list, no pagination"),
        ("GET /market/supported-symbols", "missing", "baseAsset"),
        ("GET /market/supported-symbols", "extras", "venue"),
        ("GET /trade/user/:userId", "missing", "fee"),
        ("GET /positions", "size", "decimal string"),
    ],
}


@pytest.mark.parametrize("wire_style", sorted(EXPECTED))
def test_doctor_reports_each_wire_style(
    wire_style: str,
    sandbox_factory: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    sandbox = sandbox_factory(wire_style=wire_style)
    sandbox.exchange.deposit("demo", Decimal(BALANCE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEVRET_API_KEY_ID", "demo-key")
    monkeypatch.setenv("LEVRET_API_KEY_SECRET", "demo-secret")
    monkeypatch.setenv("LEVRET_BASE_URL", sandbox.api_url)
    monkeypatch.setenv("LEVRET_USER_ID", "demo")
    invoke = make_invoke(capsys)
    sandbox.clear_requests()

    result = invoke("doctor", "--format", "json", "--stream-wait", "0")
    assert result.code == 0, result.out + result.err
    report = json.loads(result.out)
    assert report["ok"] is True
    shapes = {shape["endpoint"]: shape for shape in report["endpoints"]}
    for endpoint, where, text in EXPECTED[wire_style]:
        shape = shapes[endpoint]
        if where in ("container",):
            assert text in shape["container"], (endpoint, shape["container"])
        elif where in ("missing", "extras"):
            assert text in shape[where], (endpoint, shape[where])
        else:
            assert text in shape["found"][where], (endpoint, shape["found"])
    checks = {check["name"]: check for check in report["checks"]}
    assert {"signing", "clock", "scopes", "rate limit", "stream"} <= set(checks)
    assert "handshake ok" in checks["stream"]["detail"]
    clock_form = "epoch ms" if wire_style == "seconds" else "ISO-8601"
    assert f"envelope timestamp read as {clock_form}" in checks["clock"]["detail"]
    assert "read as epoch seconds" in checks["rate limit"]["detail"]

    sent = [(entry["method"], entry["path"].split("?")[0]) for entry in sandbox.requests()]
    assert {method for method, _ in sent} == {"GET"}  # read-only
    assert len(sent) == len(set(sent)) == len(report["endpoints"])  # one call per endpoint

    text = invoke("doctor", "--stream-wait", "0")
    assert text.code == 0
    assert "Everything the reconciler needs was understood." in text.out
    for output in (result.out, text.out, text.err):
        assert "987654" not in output and "demo-secret" not in output


def _settings() -> ClientSettings:
    return ClientSettings(api_key_id="k", api_key_secret=SecretStr("doctor-secret"), user_id="u")


def test_doctor_fails_and_names_the_field_it_cannot_read() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        data: Any = []
        if request.url.path.endswith("/wallet/account-overview"):
            data = {"walletBalance": BALANCE}
        elif request.url.path.endswith("/order/open"):
            data = {"items": [], "page": 1, "pageSize": 10, "total": 0}
        return httpx.Response(200, json={"success": True, "data": data})

    report = anyio.run(
        lambda: diagnose(_settings(), stream=False, transport=httpx.MockTransport(handler))
    )
    assert report.ok is False
    (failed,) = [shape for shape in report.endpoints if not shape.ok]
    assert failed.error is not None
    assert failed.error.startswith(
        "GET /wallet/account-overview: account overview: field equity is missing"
    )
    assert BALANCE not in json.dumps(report.as_json())
    assert {request.method for request in sent} == {"GET"}
    assert len(sent) <= 9


def test_doctor_fails_when_the_key_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/v1/market/"):
            return httpx.Response(200, json={"success": True, "data": []})
        error = {"code": "INVALID_API_KEY", "message": "unknown key"}
        return httpx.Response(401, json={"success": False, "error": error})

    report = anyio.run(
        lambda: diagnose(_settings(), stream=False, transport=httpx.MockTransport(handler))
    )
    checks = {check.name: check for check in report.checks}
    assert checks["signing"].ok is False
    assert "INVALID_API_KEY" in checks["signing"].detail
    assert report.ok is False
