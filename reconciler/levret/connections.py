"""The client's HTTP connections: httpx's own transport, with a cheaper look at idle sockets.

httpcore's connection pool, on every request that starts and every answer that ends, asks
each idle connection whether the server has closed it (`has_expired`, a readability poll of
its socket). Over anyio each ask first rebuilds the stream's whole table of typed attributes
(peer address, local address, family, ...) with a `getpeername` system call, only to take the
raw socket from it: with the 16 to 30 connections an apply keeps open, that was a sixth of
the client's CPU per call. `ReusedSocketBackend` is httpcore's own anyio backend whose
streams remember their raw socket, so the ask is one poll of it, as httpcore means it to be.

Everything else (connecting, reading, writing, timeouts, TLS, and the mapping of failures to
`httpx.ConnectError`, `httpx.ReadTimeout`, ... on which the client's never-twice rule
depends) stays httpcore's and httpx's: the streams hand every call to the stream they wrap.
httpx's transport has no parameter for a network backend, so `http_transport` puts it on the
pool httpx built; if a later httpx builds its pool otherwise, the transport is left as it is
(correct, only without the saving), and a test says so.
"""

# httpcore's stream and backend interface passes `timeout` to each call.
# ruff: noqa: ASYNC109

from __future__ import annotations

import logging
import select
import socket
import ssl
import typing

import anyio
import httpcore
import httpx

__all__ = ["ReusedSocketBackend", "http_transport"]

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


def http_transport(verify: ssl.SSLContext | str | bool) -> httpx.AsyncHTTPTransport:
    """httpx's transport with its defaults, its pool on `ReusedSocketBackend` where it can be."""
    transport = httpx.AsyncHTTPTransport(verify=verify)
    pool = getattr(transport, "_pool", None)
    if isinstance(pool, httpcore.AsyncConnectionPool) and hasattr(pool, "_network_backend"):
        pool._network_backend = ReusedSocketBackend()
    else:  # pragma: no cover - only a future httpx
        log.debug("httpx builds its pool otherwise: idle sockets are polled the slower way")
    return transport
