"""Synthetic but plausible market data around the sandbox's mark prices.

Nothing here is random: each number is derived from a SHA-256 of the symbol and the time
bucket, so two runs (and two test processes) see the same candles and book, and a chart
drawn from the candles always ends at the current mark.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from reconciler.sandbox.accounting import ceil_to_grid, floor_to_grid

if TYPE_CHECKING:
    from reconciler.sandbox.records import SymbolRecord

__all__ = [
    "INTERVAL_MS",
    "MAX_WALK_LEVELS",
    "book_level",
    "candles",
    "market_stats",
    "synthetic_ladder",
    "traded_volume",
]

MAX_WALK_LEVELS = 100_000
"""How far a taker walks the book before the rest fills at the last level reached."""

_MAX_LOTS = 40

INTERVAL_MS: dict[str, int] = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}

# Typical size of one bucket's move; grows roughly with the square root of its length.
_VOLATILITY: dict[str, Decimal] = {
    "1m": Decimal("0.0008"),
    "5m": Decimal("0.0018"),
    "15m": Decimal("0.003"),
    "1h": Decimal("0.006"),
    "4h": Decimal("0.012"),
    "1d": Decimal("0.03"),
}

_FUNDING_PERIOD_MS = 8 * 3_600_000
# Quote value traded per minute, before the per-bucket variation.
_QUOTE_VOLUME_PER_MINUTE = Decimal(400_000)
_SCALE = Decimal(2**64)


def _unit(*parts: object) -> Decimal:
    """A deterministic number in [0, 1) for the given key."""
    digest = hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()
    return Decimal(int.from_bytes(digest[:8], "big")) / _SCALE


def _to_tick(price: Decimal, tick: Decimal) -> Decimal:
    return max(tick, (price / tick).to_integral_value() * tick)


def candles(
    spec: SymbolRecord, interval: str, limit: int, now: int, mark: Decimal | None = None
) -> list[dict[str, Any]]:
    """`limit` candles, oldest first, the last one open now and closing at the mark.

    The series is walked backwards from the mark, so it moves with the mark instead of
    jumping away from it.
    """
    span = INTERVAL_MS[interval]
    volatility = _VOLATILITY[interval]
    minutes = Decimal(span // 60_000)
    close = spec.mark_price if mark is None else mark
    last_open = now - now % span
    series: list[dict[str, Any]] = []
    for back in range(limit):
        open_time = last_open - back * span
        move = (_unit(spec.symbol, interval, open_time, "move") * 2 - 1) * volatility
        open_price = _to_tick(close / (1 + move), spec.tick_size)
        wick_up = _unit(spec.symbol, interval, open_time, "high") * volatility / 2
        wick_down = _unit(spec.symbol, interval, open_time, "low") * volatility / 2
        high = max(_to_tick(max(open_price, close) * (1 + wick_up), spec.tick_size), close)
        low = min(_to_tick(min(open_price, close) * (1 - wick_down), spec.tick_size), close)
        share = Decimal("0.5") + _unit(spec.symbol, interval, open_time, "volume")
        base_volume = _QUOTE_VOLUME_PER_MINUTE * minutes * share / close
        series.append(
            {
                "openTime": open_time,
                "open": open_price,
                "high": max(high, open_price),
                "low": min(low, open_price),
                "close": close,
                "volume": floor_to_grid(base_volume, spec.step_size),
            }
        )
        close = open_price
    series.reverse()
    return series


def market_stats(spec: SymbolRecord, now: int) -> dict[str, Any]:
    day = candles(spec, "1h", 24, now)
    open_24h = day[0]["open"]
    last = spec.last_price
    period = now // _FUNDING_PERIOD_MS
    funding_swing = (_unit(spec.symbol, "funding", period) * 2 - 1) * Decimal("0.00005")
    return {
        "symbol": spec.symbol,
        "lastPrice": last,
        "markPrice": spec.mark_price,
        "high24h": max([candle["high"] for candle in day] + [last]),
        "low24h": min([candle["low"] for candle in day] + [last]),
        "volume24h": sum((candle["volume"] for candle in day), Decimal(0)),
        "change24h": ((last - open_24h) / open_24h).quantize(Decimal("0.0001")),
        "fundingRate": (Decimal("0.0001") + funding_swing).quantize(Decimal("0.000001")),
        "nextFundingTime": (period + 1) * _FUNDING_PERIOD_MS,
    }


def _plain(value: Decimal) -> str:
    """A price as the seed text of a hash: plain decimal, no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return text


def _spacing(spec: SymbolRecord) -> Decimal:
    tick = spec.tick_size
    return max(tick, floor_to_grid(spec.mark_price * Decimal("0.0001"), tick))


def book_level(spec: SymbolRecord, side: str, level: int) -> tuple[Decimal, Decimal]:
    """Level `level` (0 = best) of the synthetic `side` ("bid" or "ask"): price and size.

    Levels sit `spacing` apart (1 basis point of the mark rounded down to the tick, at least
    one tick) from the best bid (the mark rounded down to the tick, one spacing lower if that
    is the mark itself) and the best ask (rounded up, likewise); each holds 1 to 40 lots of
    the minimum size, drawn from SHA-256 of `symbol|book|level` (bids) or
    `symbol|book-ask|level` (asks). A bid at or below 0 does not exist (size 0).
    """
    tick = spec.tick_size
    spacing = _spacing(spec)
    if side == "bid":
        best = floor_to_grid(spec.mark_price, tick)
        if best == spec.mark_price:
            best -= spacing
        price = best - spacing * level
        lots = 1 + int(_unit(spec.symbol, "book", level) * _MAX_LOTS)
        return price, spec.min_size * lots if price > 0 else Decimal(0)
    best = ceil_to_grid(spec.mark_price, tick)
    if best == spec.mark_price:
        best += spacing
    lots = 1 + int(_unit(spec.symbol, "book-ask", level) * _MAX_LOTS)
    return best + spacing * level, spec.min_size * lots


def synthetic_ladder(
    spec: SymbolRecord, depth: int
) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    """Market-maker quotes around the mark, best first (`book_level` for `depth` levels)."""
    bids = [book_level(spec, "bid", level) for level in range(depth)]
    asks = [book_level(spec, "ask", level) for level in range(depth)]
    return [(price, size) for price, size in bids if price > 0], asks


def traded_volume(spec: SymbolRecord, price: Decimal) -> Decimal:
    """What one mark move reaching `price` trades there: 1 to 40 lots of the minimum size.

    Drawn from SHA-256 of `symbol|trade|price` (the price as a plain decimal, e.g. `42000`,
    `0.62`), so the same price always trades the same volume.
    """
    lots = 1 + int(_unit(spec.symbol, "trade", _plain(price)) * _MAX_LOTS)
    return spec.min_size * lots
