"""`reconciler watch` as a service runs it: a separate process, JSON logs, /metrics, SIGTERM.

The process is driven through what an operator sees: its log lines (read one by one; each
read is bounded by the suite's timeout, never by a sleep), its metrics endpoint, and its exit
code after SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler import __version__
from tests.conftest import RunningSandbox

DESIRED = """\
version: 1
account: {user_id: demo}
symbols:
  SOL_USDT:
    orders:
      - {side: buy, price: 90, size: 10}
      - {side: buy, price: 85, size: 10}
"""


class Service:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []

    def until(self, name: str) -> dict[str, Any]:
        """Read log lines until the event `name`; fail if the process ends first."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            self.events.append(event)
            if event["event"] == name:
                return event
        raise AssertionError(f"exited before {name!r}: {self.events}")

    def until_all(self, *names: str) -> None:
        """Read until every event in `names` was logged, in whatever order they come.

        The first cycle and the stream connect run concurrently, so either may log first.
        """
        missing = set(names) - {event["event"] for event in self.events}
        while missing:
            missing.discard(self.until(next(iter(missing)))["event"])
            missing -= {event["event"] for event in self.events}


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_watch_serves_metrics_and_stops_cleanly_on_sigterm(
    sandbox: RunningSandbox, tmp_path: Path, stop: signal.Signals
) -> None:
    (tmp_path / "desired.yaml").write_text(DESIRED)
    env = {
        **os.environ,
        "LEVRET_API_KEY_ID": "demo-key",
        "LEVRET_API_KEY_SECRET": "demo-secret",
        "LEVRET_BASE_URL": sandbox.api_url,
    }
    command = [
        sys.executable,
        "-c",
        "from reconciler.cli.root import main; main()",
        "watch",
        "-f",
        "desired.yaml",
        "--log-format",
        "json",
        "--metrics-port",
        "0",
        "--interval",
        "60s",
    ]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    service = Service(process)
    try:
        url = service.until("metrics_serving")["url"]
        service.until_all("in_sync", "stream_connected")
        scrape = httpx.get(url, timeout=10)
        assert scrape.status_code == 200
        assert 'reconciler_drift_actions{account="demo"} 0.0' in scrape.text
        assert 'reconciler_last_converged_timestamp_seconds{account="demo"}' in scrape.text
        assert 'reconciler_build_info{account="demo",python="' in scrape.text
        assert f'version="{__version__}"' in scrape.text
        health = httpx.get(url.removesuffix("/metrics") + "/healthz", timeout=10)
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "ok" and health.json()["cycles"] >= 1
        process.send_signal(stop)
        assert service.until("stopping")["reason"] == stop.name
        service.until("watch_stopped")
        assert process.wait(timeout=30) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert all(event["level"] in ("info", "debug") for event in service.events), service.events
    assert not [entry for entry in sandbox.requests() if entry["method"] == "POST"]


def test_watch_refuses_a_bad_file_before_connecting(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    (tmp_path / "desired.yaml").write_text("version: 1\nwindows: {allow: ['nope']}\n")
    result = subprocess.run(
        [sys.executable, "-c", "from reconciler.cli.root import main; main()", "watch", "-f",
         "desired.yaml", "--base-url", sandbox.api_url],
        cwd=tmp_path,
        env={**os.environ, "LEVRET_API_KEY_ID": "demo-key", "LEVRET_API_KEY_SECRET": "x"},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "desired.yaml:2:19: windows.allow[0]: 'nope' is not a cron expression" in result.stderr
    assert sandbox.requests() == []


def test_watch_refuses_a_taker_order_it_would_send_every_cycle(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    (tmp_path / "desired.yaml").write_text(
        "version: 1\n"
        "account: {user_id: demo}\n"
        "symbols:\n"
        "  SOL_USDT:\n"
        "    orders:\n"
        "      - {side: buy, price: 90, size: 10}\n"
        "      - {side: buy, price: 500, size: 1, taker: true}\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "from reconciler.cli.root import main; main()", "watch", "-f",
         "desired.yaml", "--base-url", sandbox.api_url, "--self-heal"],
        cwd=tmp_path,
        env={**os.environ, "LEVRET_API_KEY_ID": "demo-key", "LEVRET_API_KEY_SECRET": "x"},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "desired.yaml:7:" in result.stderr
    assert "symbols.SOL_USDT.orders[1].taker: a taker order fills at once" in result.stderr
    assert sandbox.requests() == []
