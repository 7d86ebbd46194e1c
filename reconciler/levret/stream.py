"""The Socket.IO stream: typed `orderUpdate`, `positionUpdate`, `accountData`, `marketData`.

The socket connects to the base URL's origin, namespace `<api prefix>/trading` (for the
default base URL `/api/v1/trading`), engine path `socket.io`, with auth
`{apiKeyId, apiKeySecret}`. Reconnection (with jittered, growing delays) is python-socketio's
own; the namespace auth is resent on each reconnect.

Socket.IO decodes JSON with the standard library, so numbers arrive as floats. They are turned
back into `Decimal` through their shortest `repr`, which for the short decimals the exchange
sends is the text that was on the wire. (Giving socketio a Decimal JSON module is not an option:
it installs it process-wide, for every server and client in the process.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Self

import socketio
from pydantic import BaseModel

from reconciler.levret.errors import AuthError, TransportError
from reconciler.levret.fields import WireFormatError
from reconciler.levret.parse import PARSERS, read_one
from reconciler.levret.settings import ClientSettings
from reconciler.model.account import AccountOverview, MarketStats, Order, Position

__all__ = ["EVENT_MODELS", "LevretStream", "StreamEvent", "StreamPayload"]

log = logging.getLogger("reconciler.levret")

CLOSE_TIMEOUT_S = 3.0

StreamPayload = Order | Position | AccountOverview | MarketStats
EVENT_MODELS: dict[str, type[BaseModel]] = {
    "orderUpdate": Order,
    "positionUpdate": Position,
    "accountData": AccountOverview,
    "marketData": MarketStats,
}
Callback = Callable[[StreamPayload], Awaitable[None] | None]


@dataclass(frozen=True)
class StreamEvent:
    """One typed event: `name` is the Socket.IO event name."""

    name: str
    payload: StreamPayload


def _decimals(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {key: _decimals(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decimals(item) for item in value]
    return value


class LevretStream:
    """`async with LevretStream(settings) as s: async for event in s: ...`, or `on(...)`.

    Events are queued (bounded; the oldest is dropped with a warning when a consumer falls
    behind) and also handed to any callbacks registered with `on`.
    """

    def __init__(
        self,
        settings: ClientSettings,
        *,
        reconnect_delay: float = 0.5,
        reconnect_delay_max: float = 10.0,
        queue_size: int = 10_000,
        connect_timeout: float = 5.0,
    ) -> None:
        self.settings = settings
        self.namespace = settings.api_prefix + "/trading"
        self._connect_timeout = connect_timeout
        self._queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue(queue_size)
        self._callbacks: dict[str, list[Callback]] = {name: [] for name in EVENT_MODELS}
        self._closed = False
        self._sio = socketio.AsyncClient(
            reconnection=True,
            reconnection_attempts=0,
            reconnection_delay=reconnect_delay,
            reconnection_delay_max=reconnect_delay_max,
            randomization_factor=0.5,
            handle_sigint=False,
            ssl_verify=settings.verify_tls,
        )
        for name in EVENT_MODELS:
            self._sio.on(name, self._handler(name), namespace=self.namespace)
        self._sio.on("disconnect", self._on_disconnect, namespace=self.namespace)

    def __repr__(self) -> str:
        return f"LevretStream(url={self.settings.origin!r}, namespace={self.namespace!r})"

    @property
    def connected(self) -> bool:
        return bool(self._sio.connected)

    def on(self, name: str, callback: Callback) -> None:
        """Also call `callback(payload)` for every `name` event (sync or async callable)."""
        if name not in self._callbacks:
            raise ValueError(f"unknown stream event {name!r}; known: {sorted(EVENT_MODELS)}")
        self._callbacks[name].append(callback)

    async def connect(self) -> None:
        auth = {
            "apiKeyId": self.settings.api_key_id,
            "apiKeySecret": self.settings.api_key_secret.get_secret_value(),
        }
        try:
            await self._sio.connect(
                self.settings.origin,
                auth=auth,
                namespaces=[self.namespace],
                socketio_path="socket.io",
                wait_timeout=self._connect_timeout,
            )
        except socketio.exceptions.ConnectionError as exc:
            text = str(exc)
            if "namespace" in text.lower():
                raise AuthError(
                    "the stream refused the connection (bad key?)", code="CONNECT_REFUSED"
                ) from exc
            raise TransportError("the stream could not connect", sent=False) from exc
        log.debug("stream connected to %s%s", self.settings.origin, self.namespace)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            # A connection caught half-open (e.g. cancelled while the handshake was still in
            # flight) may never acknowledge the goodbye; shutting down must not wait forever.
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._sio.disconnect()
        except TimeoutError:
            log.warning("stream: no goodbye from the server in %.0f s; dropped", CLOSE_TIMEOUT_S)
        self._put(None)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    async def next_event(self) -> StreamEvent:
        """The next event (wrap in `asyncio.timeout` to bound the wait); EOFError if closed."""
        event = await self._queue.get()
        if event is None:
            self._put(None)
            raise EOFError("stream closed")
        return event

    def _handler(self, name: str) -> Callable[[Any], Awaitable[None]]:
        reader = PARSERS[EVENT_MODELS[name]]

        async def handle(data: Any) -> None:
            try:
                payload: Any = read_one(f"EVENT {name}", _decimals(data), reader).value
            except WireFormatError as exc:
                log.warning("stream: dropping unreadable %s: %s", name, exc.message)
                return
            self._put(StreamEvent(name, payload))
            for callback in self._callbacks[name]:
                result = callback(payload)
                if result is not None:
                    await result

        return handle

    async def _on_disconnect(self, *args: Any) -> None:
        if not self._closed:
            log.info("stream disconnected; reconnecting")

    def _put(self, event: StreamEvent | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            log.warning("stream: consumer too slow, dropped the oldest event")
        self._queue.put_nowait(event)
