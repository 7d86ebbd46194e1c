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
from reconciler.levret.connections import (
    DistinctAssignmentPool,
    ReusedSocketBackend,
    http_transport,
)
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
    """If a later httpx builds its pool otherwise, this fails: the savings would be gone."""
    transport = http_transport(True)
    pool: Any = transport._pool
    assert type(pool) is DistinctAssignmentPool
    assert isinstance(pool._network_backend, ReusedSocketBackend)


def test_the_client_uses_it_unless_a_test_hands_it_a_transport() -> None:
    settings = ClientSettings(
        api_key_id="key", api_key_secret="secret", user_id="u", base_url="http://127.0.0.1:9"
    )
    client: Any = LevretClient(settings)
    pool = client._http._transport._pool
    assert type(pool) is DistinctAssignmentPool
    assert isinstance(pool._network_backend, ReusedSocketBackend)


# -- the pool's assignment pass, on stand-in connections ---------------------------------------


class _Connection:
    """The connection interface the pass asks, as plain state."""

    def __init__(self, origin: str = "a", state: str = "idle", expired: bool = False) -> None:
        self.origin, self.state, self.expired = origin, state, expired

    def can_handle_request(self, origin: Any) -> bool:
        return origin == self.origin

    def is_available(self) -> bool:
        return self.state == "idle"

    def is_idle(self) -> bool:
        return self.state == "idle"

    def is_closed(self) -> bool:
        return self.state == "closed"

    def has_expired(self) -> bool:
        return self.expired


class _Request:
    def __init__(self, origin: str = "a", connection: Any = None) -> None:
        self.request = type("R", (), {"url": type("U", (), {"origin": origin})()})()
        self.connection = connection

    def is_queued(self) -> bool:
        return self.connection is None

    def assign_to_connection(self, connection: Any) -> None:
        self.connection = connection


class _Pool(DistinctAssignmentPool):
    def __init__(self, max_connections: int, max_keepalive: int) -> None:
        super().__init__(max_connections=max_connections, max_keepalive_connections=max_keepalive)
        self.created: list[_Connection] = []

    def create_connection(self, origin: Any) -> Any:
        self.created.append(_Connection(origin, state="new"))
        return self.created[-1]


def _pool(connections: list[_Connection], requests: list[_Request], **limits: int) -> _Pool:
    pool = _Pool(limits.get("max_connections", 10), limits.get("max_keepalive", 10))
    pool._connections = connections  # type: ignore[assignment]
    pool._requests = requests  # type: ignore[assignment]
    return pool


def test_requests_queued_together_get_a_connection_each() -> None:
    idle = _Connection()
    queued = [_Request(), _Request(), _Request()]
    pool = _pool([idle], queued)
    assert pool._assign_requests_to_connections() == []
    assigned = [request.connection for request in queued]
    # httpcore's own pass hands the one idle connection to all three; here it serves one.
    assert assigned[0] is idle and len({id(c) for c in assigned}) == 3
    assert assigned[1:] == pool.created


def test_a_connection_a_queued_request_holds_is_not_closed_as_surplus() -> None:
    held, spare_1, spare_2 = _Connection(), _Connection(), _Connection()
    waiting = _Request(connection=held)  # assigned, not started: the connection is still idle
    pool = _pool([held, spare_1, spare_2], [waiting], max_keepalive=1)
    closing = pool._assign_requests_to_connections()
    assert closing == [spare_1, spare_2] and pool._connections == [held]


def test_closed_are_dropped_expired_closed_and_idle_beyond_the_keep_alive_count_closed() -> None:
    gone, stale, busy = _Connection(state="closed"), _Connection(expired=True), _Connection()
    busy.state = "active"
    idle = [_Connection() for _ in range(4)]
    pool = _pool([gone, stale, busy, *idle], [_Request(connection=busy)], max_keepalive=2)
    closing = pool._assign_requests_to_connections()
    assert closing == [stale, *idle[:2]]
    assert pool._connections == [busy, *idle[2:]]


def test_at_the_connection_limit_an_idle_one_to_another_origin_makes_room() -> None:
    other, busy = _Connection(origin="b"), _Connection(state="active")
    request = _Request(origin="a")
    pool = _pool([busy, other], [_Request(connection=busy), request], max_connections=2)
    assert pool._assign_requests_to_connections() == [other]
    assert request.connection is pool.created[0] and pool._connections == [busy, *pool.created]
    # With nothing to give, a request stays queued until a connection is released.
    late = _Request(origin="a")
    pool._requests.append(late)  # type: ignore[arg-type]
    assert pool._assign_requests_to_connections() == [] and late.is_queued()


class _Asked(_Connection):
    """A stand-in that counts how often the pass asks whether it expired."""

    def __init__(self, expired: bool = False) -> None:
        super().__init__(expired=expired)
        self.asked = 0

    def has_expired(self) -> bool:
        self.asked += 1
        return self.expired


def test_between_sweeps_only_the_idle_connection_handed_out_is_asked_if_it_expired() -> None:
    now = [100.0]
    stale, fresh, spare = _Asked(expired=True), _Asked(), _Asked()
    pool = _pool([stale, fresh, spare], [])
    pool._clock = lambda: now[0]  # type: ignore[method-assign]
    assert pool._assign_requests_to_connections() == [stale]  # the first pass sweeps them all
    assert [c.asked for c in (stale, fresh, spare)] == [1, 1, 1]
    fresh.expired = True  # the server closed it since
    request = _Request()
    pool._requests.append(request)  # type: ignore[arg-type]
    now[0] += pool.SWEEP_S / 2
    assert pool._assign_requests_to_connections() == [fresh]  # found when handed out
    assert request.connection is spare and [fresh.asked, spare.asked] == [2, 2]
    request.connection = None
    pool._requests.remove(request)  # type: ignore[arg-type]
    spare.expired = True
    assert pool._assign_requests_to_connections() == [] and spare.asked == 2  # nobody asks
    now[0] += pool.SWEEP_S
    assert pool._assign_requests_to_connections() == [spare]  # the next sweep finds it
    assert pool._connections == []
