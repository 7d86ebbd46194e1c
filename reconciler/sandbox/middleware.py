"""The outermost layer of the sandbox's ASGI stack: the `Date` header and the request log."""

from __future__ import annotations

from collections.abc import Callable
from email.utils import formatdate

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler.sandbox.control import CUT_STATUS, RequestLog
from reconciler.sandbox.endpoints import API_PREFIX
from reconciler.sandbox.envelopes import note_of
from reconciler.sandbox.incoming import raw_target

__all__ = ["ServerMiddleware"]


class ServerMiddleware:
    """Outermost layer: the `Date` header from the server's clock, and the request log.

    The client estimates its clock offset from `Date`, so it must come from the same (possibly
    skewed) clock the signature window uses; uvicorn's own `Date` is turned off by the server.
    Every `/api/v1` request is logged with the status actually sent (0 for a cut connection).
    """

    def __init__(self, app: ASGIApp, clock: Callable[[], int], log: RequestLog) -> None:
        self._app = app
        self._clock = clock
        self._log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        note = note_of(scope)
        for name, value in scope.get("headers", []):
            if name.lower() == b"x-api-key-id":
                note.key_id = value.decode("latin-1")
        started = self._clock()
        status = 0

        async def send_dated(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                date = formatdate(self._clock() / 1000, usegmt=True).encode()
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", date)]}
            await send(message)

        try:
            await self._app(scope, receive, send_dated)
        finally:
            path: str = scope["path"]
            if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                self._log.record(
                    scope["method"],
                    raw_target(scope),
                    CUT_STATUS if note.cut else status,
                    note.code,
                    note.key_id,
                    started,
                )
