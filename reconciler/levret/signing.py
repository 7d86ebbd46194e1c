"""Request signing and the server clock estimate it depends on.

The signature covers `METHOD + PATH_WITH_QUERY + TS + BODY`, where the path is the request
target exactly as it goes on the wire (`request.url.raw_path`, query included) and the body is
the exact bytes sent. Signing therefore happens inside `httpx`'s auth flow, on the final
request, on every attempt: the client acquires the rate limiter first and only then calls
`send`, so no signature ages in a queue, and a retried request always carries a fresh
timestamp and signature (the server refuses a signature it has seen).

The server accepts `ts - 5000 <= now <= ts + exp`, so the timestamp must follow the *server*
clock. `ServerClock` estimates the offset from responses and hands out strictly increasing
timestamps, so two identical requests signed in the same millisecond by this process never
share a signature (which the server would refuse as `REPLAYED_REQUEST`).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Generator
from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx
from pydantic import SecretStr

__all__ = [
    "HEADER_EXP",
    "HEADER_ID",
    "HEADER_SECRET",
    "HEADER_SIGN",
    "HEADER_TS",
    "LevretAuth",
    "ServerClock",
    "parse_iso_ms",
    "sign",
]

HEADER_ID = "X-API-KEY-ID"
HEADER_SECRET = "X-API-KEY-SECRET"
HEADER_TS = "X-API-KEY-TS"
HEADER_EXP = "X-API-KEY-EXP"
HEADER_SIGN = "X-API-KEY-SIGN"

# `Date` has whole-second resolution; a smaller disagreement is indistinguishable from noise.
_DATE_RESOLUTION_MS = 1000
_APPLY_THRESHOLD_MS = 1000


def sign(secret: str, method: str, target: str | bytes, ts: int | str, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of `METHOD + PATH_WITH_QUERY + TS + BODY`."""
    raw_target = target if isinstance(target, bytes) else target.encode("ascii")
    message = method.upper().encode("ascii") + raw_target + str(ts).encode("ascii") + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


class ServerClock:
    """Local clock corrected by an estimated offset to the exchange's clock.

    Estimates come from responses. An envelope `timestamp` (ms resolution) is preferred; the
    `Date` header (1 s resolution, truncated) is read as `Date + 0.5 s` against the midpoint
    of send and receive. A new estimate replaces the offset only when it differs from it by
    more than ~1 s, so second-resolution noise never moves a correct clock, while a real
    skew (the cause of `SIGNATURE_EXPIRED` / `TIMESTAMP_IN_FUTURE`) is picked up from the
    first response that shows it. `force_next` lets a re-sync apply any estimate.
    """

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._offset_ms = 0
        self._last_ts = 0
        self._lock = threading.Lock()

    @property
    def offset_ms(self) -> int:
        """Server time minus local time, in ms, as currently applied."""
        return self._offset_ms

    def local_ms(self) -> int:
        return int(self._wall() * 1000)

    def now_ms(self) -> int:
        """Best estimate of the server's current time in ms."""
        return self.local_ms() + self._offset_ms

    def next_ts(self) -> int:
        """A timestamp to sign with: server time, strictly increasing within this process."""
        with self._lock:
            ts = max(self.now_ms(), self._last_ts + 1)
            self._last_ts = ts
            return ts

    def observe(
        self,
        *,
        sent_ms: int,
        received_ms: int,
        date_header: str | None = None,
        server_ms: int | None = None,
        force: bool = False,
    ) -> bool:
        """Fold one response into the estimate; True when the applied offset changed."""
        midpoint = (sent_ms + received_ms) // 2
        if server_ms is not None:
            estimate = server_ms - midpoint
        elif date_header:
            parsed = _parse_http_date(date_header)
            if parsed is None:
                return False
            estimate = parsed + _DATE_RESOLUTION_MS // 2 - midpoint
        else:
            return False
        with self._lock:
            if not force and abs(estimate - self._offset_ms) <= _APPLY_THRESHOLD_MS:
                return False
            changed = estimate != self._offset_ms
            self._offset_ms = estimate
            if changed:
                # A clock moved back must not stay pinned to the old, future timestamps.
                self._last_ts = 0
            return changed


def _parse_http_date(value: str) -> int | None:
    try:
        return int(parsedate_to_datetime(value).timestamp() * 1000)
    except (TypeError, ValueError, IndexError):
        return None


def parse_iso_ms(value: object) -> int | None:
    """Epoch ms of an ISO-8601 timestamp such as `2025-01-01T00:00:00.000Z`, else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.timestamp() * 1000)


class LevretAuth(httpx.Auth):
    """Stamps and signs each request as it is sent; one instance per client.

    The secret is held as `SecretStr` and only revealed inside `sign`; the instance's repr is
    the default object repr and shows nothing.
    """

    requires_request_body = True

    def __init__(
        self,
        key_id: str,
        secret: SecretStr,
        clock: ServerClock,
        *,
        exp_ms: int = 60_000,
        send_secret: bool = True,
    ) -> None:
        self._key_id = key_id
        self._secret = secret
        self._clock = clock
        self._exp_ms = exp_ms
        self._send_secret = send_secret

    def __repr__(self) -> str:
        return f"LevretAuth(key_id={self._key_id!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        ts = self._clock.next_ts()
        body = request.content
        request.headers[HEADER_ID] = self._key_id
        if self._send_secret:
            request.headers[HEADER_SECRET] = self._secret.get_secret_value()
        request.headers[HEADER_TS] = str(ts)
        request.headers[HEADER_EXP] = str(self._exp_ms)
        request.headers[HEADER_SIGN] = sign(
            self._secret.get_secret_value(), request.method, request.url.raw_path, ts, body
        )
        yield request
