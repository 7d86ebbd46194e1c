"""Request signing as the real exchange checks it, so a client that passes here passes there.

The reading is `docs/levret-api.md` ("Signing"): lowercase hex
`HMAC-SHA256(secret, METHOD + PATH_WITH_QUERY + TS + BODY)`, where `PATH_WITH_QUERY` is the
request target exactly as the client sent it. The server never re-encodes the target: a client
that signs one spelling of a query and sends another must fail here, as it would in production.

The verifier is transport-free (it takes the method, the raw target, the headers and the body
bytes) so it can be tested and reused without a server. Looking a key up is the only I/O and is
injected as a callable; the caller decides how to run it (the app answers from the engine's
key cache, and only on a miss goes to the store in the thread pool).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from reconciler.sandbox.rejection import Rejection

__all__ = [
    "DEFAULT_EXP_MS",
    "FUTURE_TOLERANCE_MS",
    "MAX_EXP_MS",
    "Authenticator",
    "Credentials",
    "KeyRecord",
    "ReplayCache",
    "require_own_user",
    "require_scope",
    "sign",
]

DEFAULT_EXP_MS = 60_000
MAX_EXP_MS = 60_000
FUTURE_TOLERANCE_MS = 5_000


class KeyRecord(Protocol):
    """What the verifier needs of an API key (the engine's `ApiKey` fits)."""

    @property
    def key_id(self) -> str: ...

    @property
    def secret(self) -> str: ...

    @property
    def user_id(self) -> str: ...

    @property
    def scopes(self) -> frozenset[str]: ...


def sign(secret: str, method: str, target: str, ts: str, body: bytes) -> str:
    """The documented signature of one request, as lowercase hex."""
    message = method.upper().encode() + target.encode("latin-1") + ts.encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class ReplayCache:
    """Signatures seen within their validity window; memory bounded by time and by count.

    A signature only needs remembering until its request would be refused as expired anyway
    (`ts + exp`), so entries leave in expiry order. `max_entries` is a hard cap against a
    flood of distinct valid signatures; dropping the entry closest to expiry first.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self._max = max_entries
        self._expiry: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def seen(self, signature: str, expires_at: int, now: int) -> bool:
        """Record `signature` and tell whether it was already recorded and still live."""
        with self._lock:
            self._prune(now)
            if signature in self._expiry:
                return True
            self._expiry[signature] = expires_at
            heapq.heappush(self._heap, (expires_at, signature))
            while len(self._expiry) > self._max:
                _, oldest = heapq.heappop(self._heap)
                self._expiry.pop(oldest, None)
            return False

    def clear(self) -> None:
        with self._lock:
            self._expiry.clear()
            self._heap.clear()

    def __len__(self) -> int:
        return len(self._expiry)

    def _prune(self, now: int) -> None:
        while self._heap and self._heap[0][0] < now:
            _, signature = heapq.heappop(self._heap)
            self._expiry.pop(signature, None)


@dataclass(frozen=True)
class Credentials:
    """The authentication headers as sent (names are case-insensitive in HTTP)."""

    key_id: str | None
    secret: str | None
    ts: str | None
    exp: str | None
    signature: str | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Credentials:
        return cls(
            key_id=headers.get("x-api-key-id"),
            secret=headers.get("x-api-key-secret"),
            ts=headers.get("x-api-key-ts"),
            exp=headers.get("x-api-key-exp"),
            signature=headers.get("x-api-key-sign"),
        )


KeyLookup = Callable[[str], Awaitable[KeyRecord | None]]


class Authenticator:
    """Checks one private request; raises `Rejection` with the documented code, or returns the key.

    Order of checks (first failure wins): headers present, key known, secret header (if sent)
    right, TS/EXP well formed, signature, time window, replay. The signature comes before the
    window so that an unsigned guess learns nothing; a correctly signed request with a bad clock
    gets the useful `SIGNATURE_EXPIRED`/`TIMESTAMP_IN_FUTURE` answer.
    """

    def __init__(self, lookup: KeyLookup, clock: Callable[[], int]) -> None:
        self._lookup = lookup
        self._clock = clock
        self.replays = ReplayCache()

    async def authenticate(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> KeyRecord:
        creds = Credentials.from_headers(headers)
        if not creds.key_id or not creds.ts or not creds.signature:
            raise Rejection(
                "INVALID_API_KEY", "missing X-API-KEY-ID, X-API-KEY-TS or X-API-KEY-SIGN"
            )
        key = await self._lookup(creds.key_id)
        if key is None:
            raise Rejection("INVALID_API_KEY", "unknown API key")
        if creds.secret is not None and not hmac.compare_digest(
            creds.secret.encode(), key.secret.encode()
        ):
            raise Rejection("INVALID_API_KEY", "X-API-KEY-SECRET does not match the key")
        ts = _parse_ms("X-API-KEY-TS", creds.ts)
        exp = DEFAULT_EXP_MS if creds.exp is None else _parse_ms("X-API-KEY-EXP", creds.exp)
        if not 0 < exp <= MAX_EXP_MS:
            raise Rejection("VALIDATION_ERROR", f"X-API-KEY-EXP must be 1..{MAX_EXP_MS}")
        expected = sign(key.secret, method, target, creds.ts, body)
        if not hmac.compare_digest(expected.encode(), creds.signature.encode()):
            raise Rejection("INVALID_SIGNATURE", "signature does not match")
        now = self._clock()
        if now > ts + exp:
            raise Rejection("SIGNATURE_EXPIRED", f"signed at {ts}, valid {exp} ms, now {now}")
        if ts > now + FUTURE_TOLERANCE_MS:
            raise Rejection("TIMESTAMP_IN_FUTURE", f"signed at {ts}, now {now}")
        if self.replays.seen(f"{key.key_id}:{creds.signature}", ts + exp, now):
            raise Rejection("REPLAYED_REQUEST", "this signature was already used")
        return key


def require_scope(key: KeyRecord, scope: str) -> None:
    """`read` for private reads, `trade` for changes; `FORBIDDEN_SCOPE` otherwise."""
    if scope not in key.scopes:
        raise Rejection("FORBIDDEN_SCOPE", f"the key lacks the {scope!r} scope")


def require_own_user(key: KeyRecord, user_id: str) -> None:
    """A `userId` named in a query or path must be the key's own user."""
    if user_id != key.user_id:
        raise Rejection("FORBIDDEN_SCOPE", "the key may not act for another user")


def _parse_ms(name: str, text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 16:
        raise Rejection("VALIDATION_ERROR", f"{name} must be an integer of milliseconds")
    return int(text)
