"""API keys: their rows in the store, and the in-memory copy a signature check reads.

Every signed request needs its key before anything else, so looking it up through the
engine (a thread hop, then the store's lock, queued behind the writes) would put a write's
wait in front of every read. `KeyRing` keeps what the store answered, per key id, including
"no such key"; anything that may change a key (a new key, a reset) forgets it all, inside the
changing call, under the store's lock. Only an outermost call's answer is kept: one made
inside another call could still be rolled back with it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from reconciler.sandbox.session import Session
from reconciler.sandbox.validation import invalid

__all__ = ["SCOPES", "ApiKey", "KeyRing", "insert_key", "read_key"]

SCOPES = frozenset({"read", "trade", "withdraw"})
_UNKNOWN = object()


@dataclass
class ApiKey:
    key_id: str
    secret: str
    user_id: str
    scopes: frozenset[str]


class KeyRing:
    """The committed keys read so far: key id to the key, or None for an unknown id."""

    def __init__(self) -> None:
        self._known: dict[str, ApiKey | None] = {}

    def cached(self, key_id: str) -> tuple[bool, ApiKey | None]:
        """(True, the key or None) if known, else (False, None); safe without the lock."""
        key = self._known.get(key_id, _UNKNOWN)  # one read: a concurrent forget() is safe
        if key is None or isinstance(key, ApiKey):
            return True, key
        return False, None

    def remember(self, key_id: str, key: ApiKey | None) -> None:
        self._known[key_id] = key

    def forget(self) -> None:
        self._known.clear()


def read_key(session: Session, key_id: str) -> ApiKey | None:
    row = session.execute("SELECT * FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
    if row is None:
        return None
    scopes = frozenset(scope for scope in str(row["scopes"]).split(",") if scope)
    return ApiKey(row["key_id"], row["secret"], row["user_id"], scopes)


def insert_key(
    session: Session, user_id: str, key_id: str, secret: str, scopes: Collection[str]
) -> list[str]:
    """Store a new key of an existing user; its scopes in their canonical order."""
    session.require_account(user_id)
    if not key_id or not secret:
        raise invalid("keyId and secret must be non-empty")
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise invalid(f"unknown scope {unknown[0]!r}")
    exists = session.execute("SELECT 1 FROM api_keys WHERE key_id = ?", (key_id,))
    if exists.fetchone() is not None:
        raise invalid(f"key {key_id!r} already exists")
    ordered = [scope for scope in ("read", "trade", "withdraw") if scope in scopes]
    session.execute(
        "INSERT INTO api_keys (key_id, secret, user_id, scopes) VALUES (?, ?, ?, ?)",
        (key_id, secret, user_id, ",".join(ordered)),
    )
    return ordered
