"""What the sandbox answers: the documented envelopes, and the cut connection.

Every answer is an envelope: success `{"success", "data", "timestamp"}`, error `{"success",
"error": {"code", "message"}, "path", "timestamp"}`, including 404 on unknown routes, 405
(code `METHOD_NOT_ALLOWED`, the one code the documentation's table lacks) and 500
`INTERNAL_ERROR`. The error code is noted on the request's scope (`Note`) for the request
log, which only the outermost middleware writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from reconciler import jsonnum
from reconciler.sandbox.rejection import Rejection
from reconciler.sandbox.wirestyle import DEFAULT_WIRE_STYLE, envelope_timestamp, restyle

__all__ = ["CutResponse", "Envelopes", "Note", "iso_timestamp", "note_of"]

_NOTE = "reconciler.sandbox.note"


@dataclass
class Note:
    """Per-request facts the request log needs and only the handlers know."""

    code: str | None = None
    key_id: str | None = None
    cut: bool = False


def note_of(scope: Scope) -> Note:
    note = scope.get(_NOTE)
    if not isinstance(note, Note):
        note = Note()
        scope[_NOTE] = note
    return note


def iso_timestamp(ms: int) -> str:
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class Envelopes:
    """Builds the documented envelopes, stamped with the server's (possibly skewed) clock."""

    def __init__(self, clock: Callable[[], int], wire_style: str = DEFAULT_WIRE_STYLE) -> None:
        self._clock = clock
        self.wire_style = wire_style

    def answer(self, data: Any, headers: Mapping[str, str] | None = None) -> Response:
        """A REST answer, its `data` and `timestamp` in the sandbox's wire style."""
        style = self.wire_style
        body = {
            "success": True,
            "data": restyle(style, data),
            "timestamp": envelope_timestamp(style, self._clock()),
        }
        return self._json(body, 200, headers)

    def success(
        self, data: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        body = {"success": True, "data": data, "timestamp": iso_timestamp(self._clock())}
        return self._json(body, status, headers)

    def error(
        self,
        scope: Scope,
        code: str,
        message: str,
        status: int,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        note_of(scope).code = code
        body = {
            "success": False,
            "error": {"code": code, "message": message},
            "path": scope.get("path", ""),
            "timestamp": iso_timestamp(self._clock()),
        }
        return self._json(body, status, headers)

    def rejection(
        self, scope: Scope, rejection: Rejection, headers: Mapping[str, str] | None = None
    ) -> Response:
        return self.error(scope, rejection.code, rejection.message, rejection.status, headers)

    @staticmethod
    def _json(body: Any, status: int, headers: Mapping[str, str] | None) -> Response:
        return Response(
            jsonnum.dumps(body),
            status_code=status,
            headers=dict(headers or {}),
            media_type="application/json",
        )


class CutResponse(Response):
    """Announce a 502 with a body, send none, return: uvicorn then closes the connection.

    The client has a status line but an incomplete message, which HTTP clients report as a
    transport error; that is the "connection died after the commit" case.
    """

    def __init__(self, scope: Scope) -> None:
        super().__init__(b"", status_code=502)
        note_of(scope).cut = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 502,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"128"),
                    (b"connection", b"close"),
                ],
            }
        )
