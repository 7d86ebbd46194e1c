"""What a request brings: its query string, its body, its exact target.

Each accessor validates as the documentation says and raises `VALIDATION_ERROR` (a
`Rejection`) when the request is malformed, so the endpoints and the pipeline never see a
half-parsed value.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.types import Scope

from reconciler import jsonnum
from reconciler.sandbox.rejection import Rejection

__all__ = ["Query", "parse_body", "parse_json", "raw_target", "read_body"]


class Query:
    """The query string, parsed once; each accessor raises `VALIDATION_ERROR` when malformed."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self._params = QueryParams(raw)

    def __contains__(self, name: str) -> bool:
        return name in self._params

    def text(self, name: str, *, required: bool = False) -> str | None:
        values = self._params.getlist(name)
        if len(values) > 1:
            raise Rejection("VALIDATION_ERROR", f"{name} given more than once")
        if not values or values[0] == "":
            if required:
                raise Rejection("VALIDATION_ERROR", f"{name} is required")
            return None
        return values[0]

    def required(self, name: str) -> str:
        value = self.text(name, required=True)
        assert value is not None
        return value

    def integer(self, name: str, default: int | None, low: int, high: int) -> int | None:
        value = self.text(name)
        if value is None:
            return default
        if not (value.isascii() and value.isdigit()) or len(value) > 15:
            raise Rejection("VALIDATION_ERROR", f"{name} must be an integer")
        number = int(value)
        if not low <= number <= high:
            raise Rejection("VALIDATION_ERROR", f"{name} must be between {low} and {high}")
        return number

    def bounded(self, name: str, default: int, low: int, high: int) -> int:
        value = self.integer(name, default, low, high)
        assert value is not None
        return value

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str:
        value = self.text(name) or default
        if value not in options:
            raise Rejection("VALIDATION_ERROR", f"{name} must be one of {', '.join(options)}")
        return value

    def paging(self) -> tuple[int, int, int | None, int | None]:
        """`page`, `pageSize`, `startTime`, `endTime` as `docs/levret-api.md` ("Pages")."""
        page = self.bounded("page", 1, 1, 10**9)
        size = self.bounded("pageSize", 50, 1, 100)
        start = self.integer("startTime", None, 0, 10**15)
        end = self.integer("endTime", None, 0, 10**15)
        return page, size, start, end


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused once it passes `limit` bytes (nothing larger is buffered)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejection("VALIDATION_ERROR", "request body too large")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    try:
        return jsonnum.loads(raw)
    except (ValueError, RecursionError) as error:
        raise Rejection("VALIDATION_ERROR", f"malformed JSON body: {error}") from error


def parse_body(raw: bytes) -> dict[str, Any]:
    """A POST body is a JSON object; an empty body stands for `{}` (e.g. `/close`)."""
    if not raw.strip():
        return {}
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise Rejection("VALIDATION_ERROR", "the body must be a JSON object")
    return body


def raw_target(scope: Scope) -> str:
    """The request target exactly as sent: raw path, and the raw query if there is one."""
    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
    query = scope.get("query_string", b"")
    target = bytes(raw) + (b"?" + bytes(query) if query else b"")
    return target.decode("latin-1")
