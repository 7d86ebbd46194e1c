"""The client's HTTP connections: httpx's own transport, with a pool that does less per call.

httpcore's connection pool runs one pass over its connections whenever a request starts or an
answer ends. Three things in that pass cost an apply a sixth of its client CPU:

- it asks each idle connection whether the server closed it (`has_expired`, a readability
  poll of its socket); over anyio each ask first rebuilt the stream's whole table of typed
  attributes with a `getpeername` call, only to take the raw socket from it; and it asks
  all of them on every pass, though only the one handed out next must be fit to use;
- it counts the idle connections once per idle connection (quadratic);
- it hands the *same* idle connection to every request queued at that moment: all but one
  then fail to start on it (`ConnectionNotAvailable`) and go round the pass again; with
  16 requests going out together that was one extra pass per request on average. (Upstream:
  encode/httpcore#1035 and #1110, open.)

`ReusedSocketBackend` is httpcore's own anyio backend whose streams remember their raw
socket, so the ask is one poll, as httpcore means it to be. `DistinctAssignmentPool` is
httpcore's pool with that one pass done in one sweep: each queued request gets a connection
no other request holds, a connection a request holds is never closed as surplus, and an idle
connection is asked only when it is handed out, or in a sweep of them all once a second
(so one the server closed, or past its keep-alive, is closed then at the latest).

Everything else (connecting, reading, writing, timeouts, TLS, and the mapping of failures to
`httpx.ConnectError`, `httpx.ReadTimeout`, ... on which the client's never-twice rule
depends) stays httpcore's and httpx's. httpx's transport takes no pool or network backend,
so `http_transport` puts both on the pool httpx built; if a later httpx or httpcore builds
it otherwise, the transport is left as it is (correct, only without the saving), and a test
says so.
"""

# httpcore's stream and backend interface passes `timeout` to each call.
# ruff: noqa: ASYNC109

from __future__ import annotations

import logging
import math
import select
import socket
import ssl
import time
import typing

import anyio
import httpcore
import httpx

__all__ = ["DistinctAssignmentPool", "ReusedSocketBackend", "http_transport"]

log = logging.getLogger("reconciler.levret")


def _readable(sock: socket.socket | None) -> bool:
    """Whether a read would not block: for an idle connection, that the server closed it (or
    sent what no request asked for; either way it cannot be reused). No socket, or a closed
    one, counts as readable, as in httpcore."""
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _SocketRememberingStream(httpcore.AsyncNetworkStream):
    """An anyio stream of httpcore's that answers `is_readable` from its remembered socket."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: typing.Any = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        wrapped = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _SocketRememberingStream(wrapped)

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":
            if self._socket is None:
                self._socket = self._inner.get_extra_info("socket")
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


class ReusedSocketBackend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend, with streams that remember their raw socket."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return _SocketRememberingStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return _SocketRememberingStream(stream)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class DistinctAssignmentPool(httpcore.AsyncConnectionPool):
    """httpcore's pool (HTTP/1.1, as this client speaks it), its assignment pass in one sweep.

    What the pass does is httpcore's: drop closed connections, close expired ones, keep at
    most `max_keepalive_connections` idle, then give each queued request, in order, an
    available connection to its origin, or a new one below `max_connections`, or a new one
    in place of an idle connection to another origin. What differs: the idle ones are
    counted once; a connection a request already holds (queued on it, or running) is neither
    handed to a second request nor closed to make room; an idle connection is asked whether
    it expired when it is about to be handed out, and all of them only every `SWEEP_S`.
    """

    SWEEP_S = 1.0
    _clock: typing.Callable[[], float] = staticmethod(time.monotonic)
    _swept_at = -math.inf  # set on the instance by the first pass (the class adds no more)

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        held = {id(r.connection) for r in self._requests if r.connection is not None}
        closing: list[httpcore.AsyncConnectionInterface] = []
        kept: list[httpcore.AsyncConnectionInterface] = []
        now = self._clock()
        sweep = now - self._swept_at >= self.SWEEP_S
        if sweep:
            self._swept_at = now
        for existing in self._connections:
            if existing.is_closed():
                continue
            if (sweep or not existing.is_idle()) and existing.has_expired():
                closing.append(existing)
                continue
            kept.append(existing)
        idle = [c for c in kept if c.is_idle() and id(c) not in held]
        surplus = sum(1 for c in kept if c.is_idle()) - self._max_keepalive_connections
        for surplus_idle in idle[: max(surplus, 0)]:
            kept.remove(surplus_idle)
            closing.append(surplus_idle)
        free = [c for c in kept if c.is_available() and id(c) not in held]
        for pool_request in [r for r in self._requests if r.is_queued()]:
            origin = pool_request.request.url.origin
            connection = self._fit_to_use(free, origin, kept, closing, checked=sweep)
            if connection is not None:
                free.remove(connection)
            elif len(kept) < self._max_connections:
                connection = self.create_connection(origin)
                kept.append(connection)
            else:
                spare = next((c for c in free if c.is_idle()), None)
                if spare is None:
                    continue  # stays queued until a connection is released
                free.remove(spare)
                kept.remove(spare)
                closing.append(spare)
                connection = self.create_connection(origin)
                kept.append(connection)
            pool_request.assign_to_connection(connection)
            held.add(id(connection))
        self._connections[:] = kept
        return closing

    @staticmethod
    def _fit_to_use(
        free: list[httpcore.AsyncConnectionInterface],
        origin: httpcore.Origin,
        kept: list[httpcore.AsyncConnectionInterface],
        closing: list[httpcore.AsyncConnectionInterface],
        *,
        checked: bool,
    ) -> httpcore.AsyncConnectionInterface | None:
        """The first free connection to `origin` that has not expired (unless this pass has
        `checked` them all already); an expired one found on the way is closed."""
        for candidate in list(free):
            if not candidate.can_handle_request(origin):
                continue
            if not checked and candidate.has_expired():
                free.remove(candidate)
                kept.remove(candidate)
                closing.append(candidate)
                continue
            return candidate
        return None


def http_transport(verify: ssl.SSLContext | str | bool) -> httpx.AsyncHTTPTransport:
    """httpx's transport with its defaults, its pool a `DistinctAssignmentPool` on
    `ReusedSocketBackend`, where httpx's pool is the plain httpcore one it is made from."""
    transport = httpx.AsyncHTTPTransport(verify=verify)
    pool = getattr(transport, "_pool", None)
    if type(pool) is httpcore.AsyncConnectionPool and hasattr(pool, "_network_backend"):
        # The same object and settings, with the pass above; a subclass adds no state.
        pool.__class__ = DistinctAssignmentPool
        pool._network_backend = ReusedSocketBackend()
    else:  # pragma: no cover - only a future httpx or httpcore
        log.debug("httpx builds its pool otherwise: httpcore's own pool pass is used")
    return transport
