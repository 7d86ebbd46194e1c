"""The desired-state JSON Schema (`reconciler schema`), its documentation and the rules it states.

Pydantic derives the shape (types, enums, required fields, bounds) from the models of
`reconciler.model.desired`; this adds what an editor needs to help and to refuse what
`validate` refuses: a description of every field (the words of docs/desired-state.md), symbol
keys that must look like `BASE_QUOTE`, and the position rule "a non-flat position takes exactly
one of size, notional, weight; a flat one takes none". Rules that compare values (take-profit
above stop-loss, leverage under the policy's cap) or need the exchange (tick and step sizes)
stay `validate`'s.
"""

from __future__ import annotations

from typing import Any

from reconciler.model.desired.state import DesiredState

__all__ = ["DESCRIPTIONS", "json_schema", "with_documentation"]

SYMBOL_KEY_PATTERN = r"^[A-Z0-9]+_[A-Z0-9]+$"

DESCRIPTIONS: dict[str, dict[str, str]] = {
    "DesiredState": {
        "version": "Format of this file; must be 1.",
        "account": "Which Levret account this file describes, and where its key is.",
        "defaults": "Values for every symbol that does not set its own.",
        "policy": "Limits every plan must respect; a plan that breaks one is not executed.",
        "symbols": "The managed symbols, each `BASE_QUOTE` in capitals; others are unmanaged.",
        "windows": "When `watch --self-heal` may change the account (cron, UTC).",
        "lock": "Which account lock apply takes; the DSN itself is never in this file.",
        "apply": "How apply runs against this account.",
        "rate_limit": "How much of the key's request budget the reconciler leaves unspent.",
    },
    "Account": {
        "user_id": "The Levret user; LEVRET_USER_ID may supply it instead.",
        "credentials_env": "Names of the environment variables holding the API key.",
    },
    "CredentialsEnv": {
        "key_id": "Name of the environment variable holding the API key id.",
        "secret": "Name of the environment variable holding the API key secret (never the secret).",
    },
    "Defaults": {
        "leverage": "Leverage of positions and orders that do not set their own, 1..125.",
        "tolerance": "Differences at or below these are not traded, on every symbol (USDT).",
    },
    "DefaultTolerance": {
        "notional": "A position difference worth at most this (USDT at the mark) is not traded.",
        "margin": "A margin difference (USDT) at or below this is not moved.",
    },
    "Policy": {
        "max_leverage": "No position or order above this leverage.",
        "max_order_notional": "No risk-increasing order (nor one side's resting orders) above "
        "this notional (USDT).",
        "max_gross_notional": "Worst-case gross notional (USDT) after the plan, resting orders "
        "that could fill included.",
        "allowed_symbols": "Only these symbols may be listed under `symbols`.",
        "unmanaged": "`ignore`: never touch unlisted symbols; `close`: close their positions and "
        "cancel their orders.",
        "max_closes": "At most this many positions closed by one plan.",
        "min_liquidation_distance": "Percent of the mark (0 < d < 100): no position the plan "
        "touches may end, or pass through a state, closer than this to its liquidation price.",
    },
    "DesiredSymbol": {
        "position": "The position wanted; absent: leave the position alone.",
        "orders": "The resting limit orders wanted; absent: leave orders alone.",
        "orders_mode": "`authoritative`: exactly these orders; `additive`: place missing ones, "
        "never cancel.",
        "protect": "true forbids any plan that reduces, flips or closes this position.",
        "tolerance": "This symbol's tolerance; unset values fall back to `defaults.tolerance`.",
    },
    "Tolerance": {
        "size": "Position tolerance in contracts (give size or notional, not both).",
        "notional": "Position tolerance in USDT at the mark (give size or notional, not both).",
        "margin": "Margin tolerance (USDT).",
    },
    "DesiredPosition": {
        "side": "long, short or flat.",
        "size": "Contracts, as the API counts them (one of size, notional, weight).",
        "notional": "USDT at the mark; rounded down to the symbol's step (one of size, notional, "
        "weight).",
        "weight": "Share of account equity in (0, 1]; rounded down (one of size, notional, "
        "weight).",
        "leverage": "1..125 and at most policy.max_leverage; default defaults.leverage.",
        "margin": "Isolated margin wanted (USDT); absent: whatever the exchange assigns.",
        "take_profit": "Take-profit price; left out: keep as is; null: clear it.",
        "stop_loss": "Stop-loss price; left out: keep as is; null: clear it.",
    },
    "DesiredOrder": {
        "side": "buy or sell.",
        "price": "Limit price, a multiple of the symbol's tick size.",
        "size": "Contracts, a multiple of the step, at least the minimum size.",
        "leverage": "Leverage the order opens at; default the symbol's position leverage.",
        "reduce_only": "The order may only reduce the position.",
        "take_profit": "The order's own take-profit, set on the position its fill opens.",
        "stop_loss": "The order's own stop-loss, set on the position its fill opens.",
        "taker": "The order may cross the book and fill at once instead of resting.",
    },
    "Windows": {
        "allow": "Cron expressions (UTC) of the minutes a change is allowed.",
        "deny": "Cron expressions (UTC) of the minutes a change is refused; deny wins.",
        "pause_until": "No change before this time (with a time zone).",
    },
    "LockSettings": {
        "backend": "file: a lock on this host; postgres: a lock shared through a server.",
        "dsn_env": "Name of the environment variable holding the PostgreSQL DSN.",
    },
    "ApplySettings": {
        "visibility_timeout": "Seconds apply waits for the exchange's reads to show its own "
        "accepted calls (at most 3600).",
        "parallelism": "Symbols worked on at once within a phase (1..64, default 16); calls of "
        "one symbol stay in order.",
    },
    "RateLimitSettings": {
        "reserve": "Percent of the key's request window never spent, left to its other clients "
        "(0 to under 100, default 10).",
    },
}

_AMOUNTS = ("size", "notional", "weight")


def _position_rules() -> dict[str, Any]:
    """A non-flat position takes exactly one amount; a flat one takes none."""
    present = [
        {"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in _AMOUNTS
    ]
    return {
        "if": {"properties": {"side": {"const": "flat"}}, "required": ["side"]},
        "then": {"not": {"anyOf": present}},
        "else": {"oneOf": present},
    }


def _describe(definition: dict[str, Any], texts: dict[str, str], name: str) -> None:
    properties = definition.get("properties", {})
    missing = sorted(set(properties) - set(texts))
    if missing:
        raise AssertionError(f"{name}: no description for {', '.join(missing)}")
    for field, text in texts.items():
        properties[field]["description"] = text


def with_documentation(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every field described and the rules above added."""
    definitions = schema.get("$defs", {})
    _describe(schema, DESCRIPTIONS[DesiredState.__name__], DesiredState.__name__)
    for name, definition in definitions.items():
        _describe(definition, DESCRIPTIONS[name], name)
    symbols = schema["properties"]["symbols"]
    symbols["propertyNames"] = {"pattern": SYMBOL_KEY_PATTERN}
    symbols["additionalProperties"] = False
    definitions["DesiredPosition"].update(_position_rules())
    definitions["LockSettings"].update(
        {  # only the postgres backend takes a dsn_env
            "if": {"properties": {"backend": {"const": "postgres"}}, "required": ["backend"]},
            "else": {"not": {"required": ["dsn_env"]}},
        }
    )
    return schema


def json_schema() -> dict[str, Any]:
    """JSON Schema of the file, for editors (`# yaml-language-server: $schema=...`)."""
    schema = DesiredState.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Levret reconciler desired state"
    return with_documentation(schema)
