"""Prometheus metrics of the watcher, on a registry of its own, and the `/metrics` server.

A registry of its own (not prometheus-client's global one) so two watchers in one process,
as in the tests, never share or clash over series, and nothing else in the process leaks
into the scrape. The server is prometheus-client's, in a daemon thread; it reads the
registry only, so it needs no lock against the event loop.

The series (all prefixed `reconciler_`) are listed, with their labels, in docs/watch.md.
Every series carries an `account` label (the user id watched), so one Prometheus can scrape
many watchers and still tell them apart; `reconciler_build_info` says which version runs.
The server also answers `/healthz` (for a container's healthcheck or a liveness probe):
200 once the watcher has finished a cycle and is not stopping, else 503.
"""

from __future__ import annotations

import json
import platform
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any, Generic, Self, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Info,
    generate_latest,
    make_wsgi_app,
)

from reconciler import __version__

__all__ = ["Health", "MetricsServer", "WatchMetrics"]

M = TypeVar("M", Counter, Gauge)

Health = Callable[[], tuple[bool, dict[str, Any]]]
"""Whether the process is healthy now, and a few facts to show with the answer."""


class _ForAccount(Generic[M]):
    """A labelled metric with `account` already filled in: callers give only the rest."""

    def __init__(self, metric: M, account: str) -> None:
        self._metric: M = metric
        self._account = account

    def labels(self, **labels: str) -> M:
        child: M = self._metric.labels(account=self._account, **labels)
        return child


@dataclass
class WatchMetrics:
    """Every series the watcher reports; `registry` is what the server exposes."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    account: str = ""

    def __post_init__(self) -> None:
        r = self.registry
        a = self.account

        def gauge(name: str, text: str) -> Gauge:
            return Gauge(name, text, ["account"], registry=r).labels(account=a)

        def counter(name: str, text: str, labels: Iterable[str] = ()) -> Any:
            metric = Counter(name, text, ["account", *labels], registry=r)
            return _ForAccount(metric, a) if labels else metric.labels(account=a)

        build = Info("reconciler_build", "The reconciler that runs.", ["account"], registry=r)
        build.labels(account=a).info({"version": __version__, "python": platform.python_version()})
        self.drift_actions = gauge(
            "reconciler_drift_actions", "Calls the last plan needed (0: in sync)."
        )
        self.actions: _ForAccount[Counter] = counter(
            "reconciler_actions",
            "Calls made by self-heal, by action kind and outcome.",
            ["kind", "outcome"],
        )
        self.apply_failures: Counter = counter(
            "reconciler_apply_failures", "Self-heal applies that failed or did not converge."
        )
        self.cycle_errors: _ForAccount[Counter] = counter(
            "reconciler_cycle_errors", "Reconcile cycles that failed, by stage.", ["stage"]
        )
        self.cycles: _ForAccount[Counter] = counter(
            "reconciler_cycles", "Reconcile cycles by trigger and result.", ["trigger", "result"]
        )
        self.heal_held: _ForAccount[Counter] = counter(
            "reconciler_heal_held", "Drift seen but not healed, by reason.", ["reason"]
        )
        self.last_converged = gauge(
            "reconciler_last_converged_timestamp_seconds",
            "When the account last matched the desired state (Unix time).",
        )
        self.breaker_open = gauge(
            "reconciler_breaker_open", "1 while the circuit breaker holds changes."
        )
        self.breaker_trips: _ForAccount[Counter] = counter(
            "reconciler_breaker_trips", "Times the breaker opened, by reason.", ["reason"]
        )
        self.window_open = gauge(
            "reconciler_change_window_open", "1 when the change windows allow a change now."
        )
        self.stream_connected = gauge(
            "reconciler_stream_connected", "1 while the event stream is connected."
        )

    def exposition(self) -> bytes:
        """The text a scrape returns (for tests and `--metrics-port`-less debugging)."""
        return generate_latest(self.registry)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds are not news; the watcher logs what matters itself."""


def _always_healthy() -> tuple[bool, dict[str, Any]]:
    return True, {}


class MetricsServer:
    """Serve `/metrics` (and `/healthz`) on `http://host:port`; port 0 picks a free one."""

    def __init__(
        self,
        metrics: WatchMetrics,
        *,
        port: int,
        host: str = "127.0.0.1",
        health: Health = _always_healthy,
    ) -> None:
        self._metrics = metrics
        self._port = port
        self._host = host
        self._health = health
        self._server: WSGIServer | None = None
        self.port = port

    def _app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            ok, facts = self._health()
            body = json.dumps({"status": "ok" if ok else "unhealthy", **facts}).encode()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [body]
        metrics_app: Any = make_wsgi_app(self._metrics.registry)
        result: Iterable[bytes] = metrics_app(environ, start_response)
        return result

    def start(self) -> Self:
        server = make_server(
            self._host, self._port, self._app, _ThreadingServer, handler_class=_QuietHandler
        )
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        self._server = server
        self.port = int(server.server_port)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}/metrics"

    @property
    def health_url(self) -> str:
        return f"http://{self._host}:{self.port}/healthz"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
