"""Watch as a service: the client, the signals, the log bridge and the metrics server.

`serve` is `reconciler watch`'s body: it opens the Levret client and the event stream, stops
the watcher on SIGTERM, SIGHUP or Ctrl-C (calls in flight still finish and are journaled),
sends the package's own log records to the watch log, and serves `/metrics` and `/healthz`
when asked. Whatever it changed in the process (signal handlers, logging) it undoes on the
way out.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from contextlib import ExitStack

from reconciler.levret.client import LevretClient
from reconciler.levret.settings import ClientSettings
from reconciler.levret.stream import LevretStream
from reconciler.model.desired import DesiredState
from reconciler.watch.breaker import CircuitBreaker
from reconciler.watch.config import WatchConfig
from reconciler.watch.eventlog import EventLog, LoggingBridge
from reconciler.watch.metrics import MetricsServer, WatchMetrics
from reconciler.watch.watcher import Watcher

__all__ = ["serve"]


async def serve(
    settings: ClientSettings,
    desired: Callable[[], DesiredState],
    config: WatchConfig,
    *,
    log: EventLog,
    breaker: CircuitBreaker,
    metrics: WatchMetrics | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> None:
    """Run a watcher against `settings` until SIGTERM, SIGHUP or Ctrl-C: `watch`'s body."""
    metrics = metrics if metrics is not None else WatchMetrics(account=settings.user_id)
    package_logger = logging.getLogger("reconciler")
    bridge = LoggingBridge(log)
    previous_level = package_logger.level
    package_logger.addHandler(bridge)
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    loop = asyncio.get_running_loop()
    # SIGHUP (a closed session) stops it like SIGTERM (a service stop) and Ctrl-C.
    signals = tuple(
        getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
    )
    try:
        async with LevretClient(settings) as client:
            watcher = Watcher(
                client=client,
                desired=desired,
                config=config,
                log=log,
                metrics=metrics,
                breaker=breaker,
                events=lambda: LevretStream(settings),
            )
            for signum in signals:
                loop.add_signal_handler(signum, watcher.stop, signal.Signals(signum).name)
            with ExitStack() as stack:
                if metrics_port is not None:
                    server = stack.enter_context(
                        MetricsServer(
                            metrics, port=metrics_port, host=metrics_host, health=watcher.health
                        )
                    )
                    log.info("metrics_serving", url=server.url)
                await watcher.run()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        package_logger.removeHandler(bridge)
        package_logger.setLevel(previous_level)
