"""The client's connections: httpx's transport on a backend whose streams remember their socket.

The pool asks every idle connection, on every request, whether the server closed it; these
tests hold the remembered answer to the one httpcore's own stream gives, on real sockets.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import AsyncIterator
from typing import Any

import httpcore
import pytest

from reconciler.levret.client import LevretClient
from reconciler.levret.connections import ReusedSocketBackend, http_transport
from reconciler.levret.settings import ClientSettings


class _Peer:
    """A loopback TCP server that keeps each connection until told to close it."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.accepted = asyncio.Event()

    async def on_connect(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        self.accepted.set()

    async def close_all(self) -> None:
        for writer in self.writers:
            writer.close()
            await writer.wait_closed()


@pytest.fixture
async def peer() -> AsyncIterator[tuple[_Peer, int]]:
    handler = _Peer()
    server = await asyncio.start_server(handler.on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield handler, port
    finally:
        await handler.close_all()
        server.close()
        await server.wait_closed()


def _wait_readable(stream: httpcore.AsyncNetworkStream) -> None:
    """Block until the kernel shows the peer's close on the socket (bounded: 5 s)."""
    ready, _, _ = select.select([stream.get_extra_info("socket")], [], [], 5)
    assert ready, "the peer's close never reached the socket"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_an_idle_connection_is_readable_once_the_server_closes_it(
    peer: tuple[_Peer, int],
) -> None:
    handler, port = peer
    ours = await ReusedSocketBackend().connect_tcp("127.0.0.1", port, timeout=5)
    theirs = await httpcore.AnyIOBackend().connect_tcp("127.0.0.1", port, timeout=5)
    await handler.accepted.wait()
    try:
        assert ours.get_extra_info("is_readable") is False
        assert theirs.get_extra_info("is_readable") is False
        await handler.close_all()
        _wait_readable(ours)
        _wait_readable(theirs)
        # Asked again and again (the pool asks on every request), the answer stays true.
        assert [ours.get_extra_info("is_readable") for _ in range(3)] == [True, True, True]
        assert theirs.get_extra_info("is_readable") is True
    finally:
        await ours.aclose()
        await theirs.aclose()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_other_questions_go_to_httpcore_s_own_stream(peer: tuple[_Peer, int]) -> None:
    _, port = peer
    stream = await ReusedSocketBackend().connect_tcp("127.0.0.1", port, timeout=5)
    try:
        assert stream.get_extra_info("server_addr") == ("127.0.0.1", port)
        client_host, client_port = stream.get_extra_info("client_addr")
        assert client_host == "127.0.0.1" and client_port > 0
        assert stream.get_extra_info("ssl_object") is None
        assert stream.get_extra_info("no such thing") is None
    finally:
        await stream.aclose()


def test_the_transport_s_pool_connects_through_the_reused_socket_backend() -> None:
    """If a later httpx builds its pool otherwise, this fails: the saving would be gone."""
    transport = http_transport(True)
    pool: Any = transport._pool
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    assert isinstance(pool._network_backend, ReusedSocketBackend)


def test_the_client_uses_it_unless_a_test_hands_it_a_transport() -> None:
    settings = ClientSettings(
        api_key_id="key", api_key_secret="secret", user_id="u", base_url="http://127.0.0.1:9"
    )
    client: Any = LevretClient(settings)
    assert isinstance(client._http._transport._pool._network_backend, ReusedSocketBackend)
