"""An exchange answering in a shape we cannot read: `plan` and `apply` stop before any write.

A stand-in exchange (a plain HTTP server on loopback, not the sandbox: the sandbox cannot
answer wrongly) leaves `tickSize` out of a symbol spec. The run exits 1 with one line naming
the endpoint, the entity, the field, the names tried and the names present; `-v` adds the
entity's masked shape; only reads were sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cli_support import make_invoke

DESIRED = """\
version: 1
account: {user_id: u1}
symbols:
  BTC_USDT:
    position: {side: long, size: 0.3, leverage: 5}
"""
SPEC = {"symbol": "BTC_USDT", "stepSize": "0.001", "minSize": "0.001", "maxLeverage": 50}
EQUITY = "4242.4242"


class Foreign(BaseHTTPRequestHandler):
    methods: list[str]

    def _answer(self) -> None:
        self.server.methods.append(self.command)  # type: ignore[attr-defined]
        path = self.path.split("?")[0]
        data: Any = []
        if path.endswith("/market/supported-symbols"):
            data = [SPEC]
        elif path.endswith("/wallet/account-overview"):
            data = {"equity": EQUITY}
        elif path.endswith("/order/open"):
            data = {"items": [], "page": 1, "pageSize": 100, "total": 0}
        body = json.dumps({"success": True, "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up after the first unreadable answer is no server error."""


@pytest.fixture
def foreign() -> Iterator[ThreadingHTTPServer]:
    server = QuietServer(("127.0.0.1", 0), Foreign)
    server.methods = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("command", [["plan"], ["apply", "--auto-approve"]])
def test_unreadable_answer_stops_before_any_write_with_one_line(
    command: list[str],
    foreign: ThreadingHTTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEVRET_API_KEY_ID", "k1")
    monkeypatch.setenv("LEVRET_API_KEY_SECRET", "foreign-secret-77")
    monkeypatch.setenv("LEVRET_BASE_URL", f"http://127.0.0.1:{foreign.server_port}/api/v1")
    (tmp_path / "desired.yaml").write_text(DESIRED)
    invoke = make_invoke(capsys)

    result = invoke(*command, "-f", "desired.yaml")
    assert result.code == 1, result.out + result.err
    errors = [line for line in result.err.splitlines() if line.startswith("Error:")]
    assert errors == [
        "Error: GET /market/supported-symbols: symbol spec #0 (id BTC_USDT): field tickSize is "
        "missing (tried tickSize, tick_size, priceTick, price_tick, priceIncrement, "
        "price_increment as number or decimal string; present: symbol, stepSize, minSize, "
        "maxLeverage) [BAD_PAYLOAD]"
    ]
    assert set(foreign.methods) == {"GET"}  # type: ignore[attr-defined]

    caplog.clear()
    verbose = invoke("-v", *command, "-f", "desired.yaml")
    assert verbose.code == 1
    assert (
        "the entity as received, values masked: {symbol: <text>, stepSize: <decimal text>, "
        "minSize: <decimal text>, maxLeverage: <number>}" in caplog.text
    )
    for output in (result.out, result.err, verbose.out, verbose.err, caplog.text):
        assert "foreign-secret-77" not in output and EQUITY not in output
    assert set(foreign.methods) == {"GET"}  # type: ignore[attr-defined]
