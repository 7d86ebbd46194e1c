"""A signed-request helper for tests, written from `docs/levret-api.md` alone.

It shares no code with the project's client or the sandbox's verifier on purpose: if either
misreads the signing rule, tests built on this helper disagree with it instead of agreeing by
construction. Headers are built by hand and the body bytes sent are the bytes signed.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time
from typing import Any

import httpx

from reconciler import jsonnum

__all__ = [
    "body_bytes",
    "call",
    "data_of",
    "expect_error",
    "now_ms",
    "sign",
    "signed_headers",
    "signed_request",
]


# Building a TLS context loads the CA bundle (tens of ms); one for all the throwaway clients.
_TLS = ssl.create_default_context()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def sign(secret: str, method: str, path_with_query: str, ts: str, body: bytes) -> str:
    message = method.upper().encode() + path_with_query.encode() + ts.encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def body_bytes(body: Any) -> bytes:
    """Compact JSON with exact numbers, as the documentation prescribes."""
    return b"" if body is None else jsonnum.dumps(body)


def signed_headers(
    method: str,
    path_with_query: str,
    body: bytes,
    key: str,
    secret: str,
    *,
    ts: int | None = None,
    exp: int | None = None,
    send_secret: bool = True,
) -> dict[str, str]:
    stamp = str(now_ms() if ts is None else ts)
    headers = {
        "X-API-KEY-ID": key,
        "X-API-KEY-TS": stamp,
        "X-API-KEY-SIGN": sign(secret, method, path_with_query, stamp, body),
        "Content-Type": "application/json",
    }
    if send_secret:
        headers["X-API-KEY-SECRET"] = secret
    if exp is not None:
        headers["X-API-KEY-EXP"] = str(exp)
    return headers


def signed_request(
    base_url: str,
    method: str,
    path_with_query: str,
    body: bytes | Any = b"",
    key: str = "demo-key",
    secret: str = "demo-secret",
    *,
    client: httpx.Client | None = None,
    **header_options: Any,
) -> httpx.Response:
    """Send one signed request; `path_with_query` starts with `/api/v1`, `base_url` has none.

    `body` may be bytes (sent as is) or a JSON-able value (encoded with `jsonnum`).
    """
    raw = body if isinstance(body, bytes) else body_bytes(body)
    headers = signed_headers(method, path_with_query, raw, key, secret, **header_options)
    url = base_url.rstrip("/") + path_with_query
    if client is not None:
        return client.request(method, url, content=raw, headers=headers)
    with httpx.Client(timeout=30, verify=_TLS) as fresh:
        return fresh.request(method, url, content=raw, headers=headers)


def call(
    base_url: str,
    method: str,
    path_with_query: str,
    body: bytes | Any = b"",
    key: str = "demo-key",
    secret: str = "demo-secret",
    **options: Any,
) -> tuple[httpx.Response, Any]:
    """`signed_request`, plus the response body parsed with exact numbers."""
    response = signed_request(base_url, method, path_with_query, body, key, secret, **options)
    return response, jsonnum.loads(response.content)


def data_of(response: httpx.Response) -> Any:
    """The `data` of a success envelope; fails with the error envelope otherwise."""
    payload = jsonnum.loads(response.content)
    assert response.status_code == 200, payload
    assert payload["success"] is True and set(payload) == {"success", "data", "timestamp"}
    return payload["data"]


def expect_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert the documented error envelope with this status and code; return it."""
    payload: dict[str, Any] = jsonnum.loads(response.content)
    assert response.status_code == status, payload
    assert set(payload) == {"success", "error", "path", "timestamp"}, payload
    assert payload["success"] is False
    assert payload["error"]["code"] == code, payload
    assert isinstance(payload["error"]["message"], str) and payload["error"]["message"]
    assert payload["path"] == response.request.url.path
    return payload
