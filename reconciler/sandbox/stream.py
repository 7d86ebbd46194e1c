"""The Socket.IO stream: namespace `/api/v1/trading` on engine path `/socket.io/`.

A connection authenticates with `{apiKeyId, apiKeySecret}` and joins its user's room; after
every committed change the app hands the engine's drained events here, which sends
`orderUpdate`/`positionUpdate`/`accountData` to the user's room and `marketData` to everyone.

Payloads carry `Decimal` numbers, which the standard `json` module cannot write without going
through a float. python-socketio takes one JSON module for all its packets (it sets it on the
packet class, so it is process-wide); `DecimalJson` writes and reads numbers exactly, the same
way the REST bodies do.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import socketio

from reconciler import jsonnum
from reconciler.sandbox.auth import KeyRecord

__all__ = ["NAMESPACE", "DecimalJson", "Stream", "user_room"]

NAMESPACE = "/api/v1/trading"
SOCKETIO_PATH = "socket.io"

Event = tuple[str, str | None, Any]


class DecimalJson:
    """The `json`-module interface python-socketio calls, over `reconciler.jsonnum`."""

    @staticmethod
    def dumps(value: Any, **_: Any) -> str:
        return jsonnum.dumps(value).decode("utf-8")

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        return jsonnum.loads(text)


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


class Stream:
    """The Socket.IO server; `lookup` resolves a key id (the engine call, off the event loop)."""

    def __init__(self, lookup: Callable[[str], Awaitable[KeyRecord | None]]) -> None:
        self._lookup = lookup
        self.sio = socketio.AsyncServer(
            async_mode="asgi", json=DecimalJson, logger=False, engineio_logger=False
        )
        self.sio.on("connect", self._connect, namespace=NAMESPACE)
        self.sio.on("disconnect", self._disconnect, namespace=NAMESPACE)
        self._listeners: set[str] = set()

    def has_listeners(self) -> bool:
        """Whether any connection is subscribed (the engine skips snapshots nobody gets)."""
        return bool(self._listeners)

    def asgi(self, other: Any) -> Any:
        """The combined ASGI app: Socket.IO on `/socket.io/`, everything else to `other`."""
        return socketio.ASGIApp(self.sio, other_asgi_app=other, socketio_path=SOCKETIO_PATH)

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        """Refuse unless the auth names a known key with its secret and the `read` scope."""
        fields = auth if isinstance(auth, dict) else {}
        key_id = fields.get("apiKeyId")
        secret = fields.get("apiKeySecret")
        if not isinstance(key_id, str) or not isinstance(secret, str):
            raise socketio.exceptions.ConnectionRefusedError("INVALID_API_KEY")
        key = await self._lookup(key_id)
        if key is None or not hmac.compare_digest(key.secret.encode(), secret.encode()):
            raise socketio.exceptions.ConnectionRefusedError("INVALID_API_KEY")
        if "read" not in key.scopes:
            raise socketio.exceptions.ConnectionRefusedError("FORBIDDEN_SCOPE")
        await self.sio.enter_room(sid, user_room(key.user_id), namespace=NAMESPACE)
        self._listeners.add(sid)

    async def _disconnect(self, sid: str, *_reason: Any) -> None:
        self._listeners.discard(sid)

    async def publish(self, events: Iterable[Event]) -> None:
        """Send each event, in order, to its user's room or (no user) to every connection."""
        for name, user_id, payload in events:
            room = None if user_id is None else user_room(user_id)
            await self.sio.emit(name, payload, to=room, namespace=NAMESPACE)

    async def shutdown(self) -> None:
        await self.sio.shutdown()
