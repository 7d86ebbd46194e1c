"""Prometheus metrics of the watcher, on a registry of its own, and the `/metrics` server.

A registry of its own (not prometheus-client's global one) so two watchers in one process,
as in the tests, never share or clash over series, and nothing else in the process leaks
into the scrape. The server is prometheus-client's, in a daemon thread; it reads the
registry only, so it needs no lock against the event loop.

The series (all prefixed `reconciler_`) are listed, with their labels, in docs/watch.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Self
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, start_http_server

__all__ = ["MetricsServer", "WatchMetrics"]


@dataclass
class WatchMetrics:
    """Every series the watcher reports; `registry` is what the server exposes."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        r = self.registry
        self.drift_actions = Gauge(
            "reconciler_drift_actions", "Calls the last plan needed (0: in sync).", registry=r
        )
        self.actions = Counter(
            "reconciler_actions",
            "Calls made by self-heal, by action kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.apply_failures = Counter(
            "reconciler_apply_failures",
            "Self-heal applies that failed or did not converge.",
            registry=r,
        )
        self.cycle_errors = Counter(
            "reconciler_cycle_errors",
            "Reconcile cycles that failed, by stage.",
            ["stage"],
            registry=r,
        )
        self.cycles = Counter(
            "reconciler_cycles",
            "Reconcile cycles by trigger and result.",
            ["trigger", "result"],
            registry=r,
        )
        self.heal_held = Counter(
            "reconciler_heal_held", "Drift seen but not healed, by reason.", ["reason"], registry=r
        )
        self.last_converged = Gauge(
            "reconciler_last_converged_timestamp_seconds",
            "When the account last matched the desired state (Unix time).",
            registry=r,
        )
        self.breaker_open = Gauge(
            "reconciler_breaker_open", "1 while the circuit breaker holds changes.", registry=r
        )
        self.breaker_trips = Counter(
            "reconciler_breaker_trips",
            "Times the breaker opened, by reason.",
            ["reason"],
            registry=r,
        )
        self.window_open = Gauge(
            "reconciler_change_window_open",
            "1 when the change windows allow a change now.",
            registry=r,
        )
        self.stream_connected = Gauge(
            "reconciler_stream_connected", "1 while the event stream is connected.", registry=r
        )

    def exposition(self) -> bytes:
        """The text a scrape returns (for tests and `--metrics-port`-less debugging)."""
        return generate_latest(self.registry)


class MetricsServer:
    """Serve `metrics.registry` on `http://host:port/metrics`; port 0 picks a free one."""

    def __init__(self, metrics: WatchMetrics, *, port: int, host: str = "127.0.0.1") -> None:
        self._metrics = metrics
        self._port = port
        self._host = host
        self._server: WSGIServer | None = None
        self.port = port

    def start(self) -> Self:
        server, _thread = start_http_server(
            self._port, addr=self._host, registry=self._metrics.registry
        )
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
