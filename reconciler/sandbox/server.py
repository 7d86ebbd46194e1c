"""Run the sandbox on loopback: in a background thread (tests, `--sandbox`) or in the foreground.

The listening socket is bound before uvicorn starts, so the port is known at once even when
it is ephemeral (port 0), and "ready" means uvicorn has finished its startup: `start()` waits
on an event set from inside the server's own startup, never on a timed poll.

uvicorn's own `Date` header is turned off: the app writes `Date` from the sandbox's clock, which
a fault may skew. Access logs are off by default; they are noise in test output. HTTP is parsed
by httptools (uvicorn's C parser), not h11: a fifth of the sandbox's CPU per call went to h11,
and with 16 calls arriving together the last one waits for all of the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import uvicorn

from reconciler.sandbox.app import Sandbox, SandboxSettings
from reconciler.sandbox.engine import Exchange
from reconciler.sandbox.profiles import DEFAULT_PROFILE, profile_knobs
from reconciler.sandbox.ratelimit import DEFAULT_LIMIT, DEFAULT_WINDOW_S
from reconciler.sandbox.store import Store
from reconciler.sandbox.wirestyle import DEFAULT_WIRE_STYLE, WIRE_STYLES

__all__ = ["SandboxServer"]

_STARTUP_TIMEOUT_S = 30.0


class _Uvicorn(uvicorn.Server):
    """uvicorn that reports the end of its startup (or its failure) through a callback."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        await super().startup(sockets)
        self._on_started()

    async def main_loop(self) -> None:
        """uvicorn's tick loop, but a stop request from another thread wakes it at once."""
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)

    def request_exit(self) -> None:
        """Thread-safe stop: the same flag uvicorn's signal handler sets, plus a wake-up."""
        self.should_exit = True
        if self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                self.loop.call_soon_threadsafe(self._wake.set)


class _QuietCut(logging.Filter):
    """Hide uvicorn's complaint about a connection the `drop_after_commit` fault cuts."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


class SandboxServer:
    """One sandbox: an `Exchange` on `db_path`, served by uvicorn on `host:port`.

    `db_path` None means an in-memory database (state dies with the server); a file keeps the
    state across restarts, and a new file is seeded with the demo state when `seed` is true.
    """

    def __init__(
        self,
        db_path: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: int = DEFAULT_LIMIT,
        rate_window: float = DEFAULT_WINDOW_S,
        seed: bool = True,
        access_log: bool = False,
        log_level: str = "warning",
        profile: str = DEFAULT_PROFILE,
        wire_style: str = DEFAULT_WIRE_STYLE,
    ) -> None:
        path = ":memory:" if db_path is None else str(db_path)
        if seed:
            self.exchange = Exchange.open(path)
        else:
            self.exchange = Exchange(Store(path))
        settings = SandboxSettings(
            rate_limit=rate_limit,
            rate_window_s=rate_window,
            profile=profile_name(profile),
            wire_style=wire_style_name(wire_style),
        )
        self.sandbox = Sandbox(self.exchange, settings)
        self._socket = _bind(host, port)
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self._config = uvicorn.Config(
            self.sandbox.asgi(),
            log_level=log_level,
            access_log=access_log,
            lifespan="off",
            date_header=False,
            server_header=False,
            http="httptools",
            ws="websockets-sansio",
            loop="asyncio",
            timeout_graceful_shutdown=5,
        )
        self._ready = threading.Event()
        self._server = _Uvicorn(self._config, self._ready.set)
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        _install_quiet_cut()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/v1"

    # --- background thread ---

    def start(self) -> SandboxServer:
        """Serve in a daemon thread; return once the server accepts requests."""
        if self._thread is not None:
            raise RuntimeError("the sandbox server was already started")
        self._thread = threading.Thread(
            target=self._run_in_thread, name=f"sandbox-{self.port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(_STARTUP_TIMEOUT_S) or not self._server.started:
            self.stop()
            raise RuntimeError("the sandbox server did not start") from self._failure
        return self

    def _run_in_thread(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as error:  # reported by start(); a thread cannot raise to it
            self._failure = error
        finally:
            self._ready.set()  # unblock start() if startup never finished

    def stop(self) -> None:
        """Disconnect stream clients, stop serving, wait for the thread, close the database."""
        server = self._server
        if self._thread is not None and self._thread.is_alive():
            loop = server.loop
            if loop is not None and server.started:
                future = asyncio.run_coroutine_threadsafe(self.sandbox.stream.shutdown(), loop)
                try:
                    future.result(timeout=5)
                except Exception:  # stopping anyway; a stuck client must not block the stop
                    logging.getLogger(__name__).warning("stream shutdown failed", exc_info=True)
            server.request_exit()
            self._thread.join()
        self._socket.close()
        self.exchange.store.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- foreground ---

    def serve_forever(self, on_ready: Callable[[SandboxServer], None] | None = None) -> None:
        """Serve in this thread until SIGINT/SIGTERM (uvicorn's graceful shutdown)."""

        def started() -> None:
            if on_ready is not None:
                on_ready(self)

        self._server = _Uvicorn(self._config, started)
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()
            self.exchange.store.close()


def wire_style_name(name: str) -> str:
    """`name` if it is a known wire style (`ValueError` otherwise), before anything starts."""
    if name not in WIRE_STYLES:
        raise ValueError(f"unknown wire style {name!r}; known: {', '.join(WIRE_STYLES)}")
    return name


def profile_name(name: str) -> str:
    """`name` if it is a known profile (`ValueError` otherwise), before anything starts."""
    profile_knobs(name)
    return name


_QUIET_CUT = _QuietCut()


def _install_quiet_cut() -> None:
    logger = logging.getLogger("uvicorn.error")
    if _QUIET_CUT not in logger.filters:
        logger.addFilter(_QUIET_CUT)


def _bind(host: str, port: int) -> socket.socket:
    """A bound, not yet listening, TCP socket; uvicorn's `create_server` starts listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose
    # `proto` says TCP, and accepted sockets inherit 0 from a plain `socket()`. With Nagle on,
    # every keep-alive answer waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
