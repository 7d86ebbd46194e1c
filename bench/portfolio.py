"""Seeded portfolios for the benchmarks: a live account, a desired state, and the minimum.

The generator is the benchmark's source of truth. It decides every symbol's live position and
resting orders, then changes a chosen share of them in the desired state (resize, open, close,
new TP/SL, ladders replaced in full or in part). Because it knows exactly what it changed, it
computes the minimal number of write calls from the planner's documented rules *without*
running the planner; the benchmark then compares the planner (and apply) against that number.

Everything is a pure function of `(symbols, seed, ...)`: two runs build the same portfolio, to
the last tick, so numbers from different machines describe the same work.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any, Literal

from reconciler.levret import parse
from reconciler.model.account import Order, Position, SymbolSpec
from reconciler.model.desired import DesiredState
from reconciler.model.snapshot import Snapshot

__all__ = [
    "LiveOrder",
    "LivePosition",
    "Portfolio",
    "SymbolCase",
    "generate",
    "min_cancel_calls",
]

USER_ID = "bench"
KEY_ID = "bench-key"
KEY_SECRET = "bench-secret"

# (mark, tick, step, min size, max leverage): magnitudes like the demo symbols, so prices and
# sizes exercise the same decimal places the real exchange lists; the last class is odd, as
# some real symbols are (a minimum size of 50 steps, a tick of about 35 basis points).
_CLASSES: tuple[tuple[Decimal, Decimal, Decimal, Decimal, int], ...] = (
    (Decimal(45000), Decimal("0.1"), Decimal("0.001"), Decimal("0.001"), 125),
    (Decimal(2500), Decimal("0.01"), Decimal("0.01"), Decimal("0.01"), 100),
    (Decimal(100), Decimal("0.01"), Decimal("0.1"), Decimal("0.1"), 50),
    (Decimal(14), Decimal("0.001"), Decimal("0.1"), Decimal("0.1"), 50),
    (Decimal("0.62"), Decimal("0.0001"), Decimal(1), Decimal(1), 75),
    (Decimal(72), Decimal("0.25"), Decimal("0.01"), Decimal("0.5"), 50),
)
_LEVERAGES = (2, 3, 5, 10)

Change = Literal["resize", "open", "close", "tpsl", "ladder", "ladder_partial"]
POSITION_CHANGES: tuple[Change, ...] = ("resize", "open", "close", "tpsl")


@dataclass(frozen=True)
class LivePosition:
    side: Literal["long", "short"]
    size: Decimal
    leverage: int
    take_profit: Decimal | None
    stop_loss: Decimal | None


@dataclass(frozen=True)
class LiveOrder:
    side: Literal["buy", "sell"]
    price: Decimal
    size: Decimal
    leverage: int


@dataclass
class SymbolCase:
    """One symbol: its spec and mark, what is live, what is wanted, and what changed."""

    symbol: str
    mark: Decimal
    tick: Decimal
    step: Decimal
    max_leverage: int
    leverage: int
    min_size: Decimal
    position: LivePosition | None
    orders: list[LiveOrder]
    wanted_position: LivePosition | None
    wanted_orders: list[LiveOrder]
    desired_position_flat: bool = False  # no position wanted: `side: flat` (else omitted)
    changes: list[Change] = field(default_factory=list)
    min_writes: int = 0

    @property
    def spec(self) -> dict[str, Any]:
        """The `/_sandbox/symbols` spec."""
        return {
            "symbol": self.symbol,
            "tickSize": self.tick,
            "stepSize": self.step,
            "minSize": self.min_size,
            "maxLeverage": self.max_leverage,
            "markPrice": self.mark,
        }

    @property
    def places_orders(self) -> bool:
        """Some wanted order has no equal live one, so the plan places it."""
        return bool(Counter(self.wanted_orders) - Counter(self.orders))

    @property
    def needs_price(self) -> bool:
        """A stats read: no open position, and a non-flat desired position or an order to place."""
        return self.position is None and (self.wanted_position is not None or self.places_orders)


@dataclass
class Portfolio:
    seed: int
    cases: list[SymbolCase]

    @property
    def symbols(self) -> list[str]:
        return [case.symbol for case in self.cases]

    @property
    def live_orders(self) -> int:
        return sum(len(case.orders) for case in self.cases)

    @property
    def min_writes(self) -> int:
        """The fewest write calls that converge, from what the generator changed."""
        return sum(case.min_writes for case in self.cases)

    @property
    def min_plan_reads(self) -> int:
        """specs + positions + ceil(orders / 100) pages + one stats read per priced symbol
        + one book read per symbol where an order is placed.

        No desired position is sized by `weight`, so the account overview is never needed.
        """
        pages = max(1, -(-self.live_orders // 100))
        priced = sum(1 for case in self.cases if case.needs_price)
        books = sum(1 for case in self.cases if case.places_orders)
        return 1 + 1 + pages + priced + books

    def balance(self) -> Decimal:
        """A deposit that pays every margin and reserve, before and after, several times over."""
        need = Decimal(0)
        for case in self.cases:
            for position in (case.position, case.wanted_position):
                if position is not None:
                    need += position.size * case.mark / position.leverage
            for order in (*case.orders, *case.wanted_orders):
                need += order.price * order.size / order.leverage
        return (need * 4 + 1_000_000).quantize(Decimal(1))

    def desired(self) -> DesiredState:
        symbols: dict[str, Any] = {}
        for case in self.cases:
            entry: dict[str, Any] = {
                "orders": [
                    {
                        "side": order.side,
                        "price": order.price,
                        "size": order.size,
                        "leverage": order.leverage,
                    }
                    for order in case.wanted_orders
                ]
            }
            wanted = case.wanted_position
            if wanted is not None:
                position: dict[str, Any] = {
                    "side": wanted.side,
                    "size": wanted.size,
                    "leverage": wanted.leverage,
                }
                if wanted.take_profit is not None:
                    position["take_profit"] = wanted.take_profit
                if wanted.stop_loss is not None:
                    position["stop_loss"] = wanted.stop_loss
                entry["position"] = position
            elif case.desired_position_flat:
                entry["position"] = {"side": "flat"}
            symbols[case.symbol] = entry
        return DesiredState.model_validate(
            {"version": 1, "account": {"user_id": USER_ID}, "symbols": symbols}
        )

    def snapshot(self) -> Snapshot:
        """The live account as an in-memory `Snapshot` (for planner-only timing)."""
        specs: dict[str, SymbolSpec] = {}
        positions: dict[str, Position] = {}
        open_orders: dict[str, tuple[Order, ...]] = {}
        next_id = 1
        for case in self.cases:
            specs[case.symbol] = parse.wire(parse.symbol_spec, case.spec)
            if case.position is not None:
                held = case.position
                positions[case.symbol] = Position(
                    id=str(next_id),
                    user_id=USER_ID,
                    symbol=case.symbol,
                    side=held.side,
                    size=held.size,
                    entry_price=case.mark,
                    mark_price=case.mark,
                    leverage=held.leverage,
                    margin=_money(held.size * case.mark / held.leverage),
                    take_profit_price=held.take_profit,
                    stop_loss_price=held.stop_loss,
                )
                next_id += 1
            orders = []
            for order in case.orders:
                orders.append(
                    Order(
                        id=str(next_id),
                        user_id=USER_ID,
                        symbol=case.symbol,
                        side=order.side,
                        order_type="limit",
                        size=order.size,
                        price=order.price,
                        leverage=order.leverage,
                        status="open",
                        created_at=1_700_000_000_000 + next_id,
                        updated_at=1_700_000_000_000 + next_id,
                    )
                )
                next_id += 1
            if orders:
                open_orders[case.symbol] = tuple(orders)
        marks = {case.symbol: case.mark for case in self.cases if case.needs_price}
        return Snapshot(
            user_id=USER_ID, specs=specs, positions=positions, open_orders=open_orders, marks=marks
        )


def min_cancel_calls(live: int, cancelled: int) -> int:
    """The planner's rule 4: one cancelAll when all of two or more go, else one per order."""
    if cancelled == 0:
        return 0
    if cancelled == live and live >= 2:
        return 1
    return cancelled


def generate(
    symbols: int,
    *,
    seed: int = 8,
    change_share: float = 0.3,
    orders: tuple[int, int] = (0, 20),
    position_share: float = 0.7,
) -> Portfolio:
    """A portfolio of `symbols` symbols; `change_share` of them differ in the desired state."""
    rng = random.Random(f"{seed}:{symbols}:{change_share}:{orders}")
    cases = [_live_case(rng, index, orders, position_share) for index in range(symbols)]
    changed = rng.sample(range(symbols), round(symbols * change_share))
    for index in sorted(changed):
        _change(rng, cases[index])
    return Portfolio(seed=seed, cases=cases)


def _live_case(
    rng: random.Random, index: int, orders: tuple[int, int], position_share: float
) -> SymbolCase:
    mark0, tick, step, min_size, max_leverage = _CLASSES[index % len(_CLASSES)]
    mark = _on_grid(mark0 * Decimal(rng.randint(800, 1200)) / 1000, tick)
    leverage = rng.choice(_LEVERAGES)
    # Sizes are whole lots of the minimum size, so every change between them is a valid order.
    lot = min_size
    position = _position(rng, mark, tick, lot, leverage) if rng.random() < position_share else None
    ladder = _ladder(rng, mark, tick, lot, leverage, rng.randint(*orders), offset=0)
    case = SymbolCase(
        symbol=f"BK{index:04d}_USDT",
        mark=mark,
        tick=tick,
        step=step,
        max_leverage=max_leverage,
        leverage=leverage,
        min_size=min_size,
        position=position,
        orders=ladder,
        wanted_position=position,
        wanted_orders=list(ladder),
        desired_position_flat=position is None and rng.random() < 0.5,
    )
    return case


def _position(
    rng: random.Random, mark: Decimal, tick: Decimal, step: Decimal, leverage: int
) -> LivePosition:
    side: Literal["long", "short"] = rng.choice(("long", "short"))
    notional = Decimal(rng.randint(500, 5000))
    size = max(step, _round_down(notional / mark, step))
    tp: Decimal | None = None
    sl: Decimal | None = None
    if rng.random() < 0.5:
        up, down = _on_grid(mark * Decimal("1.2"), tick), _on_grid(mark * Decimal("0.8"), tick)
        tp, sl = (up, down) if side == "long" else (down, up)
    return LivePosition(side, size, leverage, tp, sl)


def _ladder(
    rng: random.Random,
    mark: Decimal,
    tick: Decimal,
    step: Decimal,
    leverage: int,
    count: int,
    *,
    offset: int,
) -> list[LiveOrder]:
    """`count` resting limit orders, buys below and sells above the mark, never crossing.

    Rung `i` sits `(2i + 2 + offset) * 0.5 %` from the mark: ladders built with offset 0 and 1
    use disjoint prices, so a replaced ladder never matches the old one by accident.
    """
    result: list[LiveOrder] = []
    for rung in range(count):
        side: Literal["buy", "sell"] = "buy" if rung % 2 == 0 else "sell"
        distance = Decimal(2 * (rung // 2) + 2 + offset) * Decimal("0.005")
        factor = 1 - distance if side == "buy" else 1 + distance
        price = _on_grid(mark * factor, tick)
        notional = Decimal(rng.randint(50, 300))
        size = max(step, _round_down(notional / price, step))
        result.append(LiveOrder(side, price, size, leverage))
    return result


def _change(rng: random.Random, case: SymbolCase) -> None:
    """Change one symbol of the desired state and count the writes the change needs."""
    position_changes: list[Change] = (
        ["resize", "close", "tpsl"] if case.position is not None else ["open"]
    )
    roll = rng.random()
    if roll < 0.6:
        _change_position(rng, case, rng.choice(position_changes))
        if rng.random() < 0.3:
            _change_ladder(rng, case)
    else:
        _change_ladder(rng, case)


def _change_position(rng: random.Random, case: SymbolCase, change: Change) -> None:
    live = case.position
    case.changes.append(change)
    case.min_writes += 1  # each of these is exactly one call under rules 2 and 3
    if change == "open":
        case.wanted_position = _position(rng, case.mark, case.tick, case.min_size, case.leverage)
        return
    assert live is not None
    if change == "close":
        case.wanted_position = None
        case.desired_position_flat = True
    elif change == "resize":
        factor = Decimal(rng.choice((50, 70, 130, 160))) / 100
        size = max(case.min_size, _round_down(live.size * factor, case.min_size))
        if size == live.size:
            size = live.size + case.min_size
        case.wanted_position = LivePosition(
            live.side, size, live.leverage, live.take_profit, live.stop_loss
        )
    elif change == "tpsl":
        up = _on_grid(case.mark * Decimal("1.3"), case.tick)
        down = _on_grid(case.mark * Decimal("0.75"), case.tick)
        tp, sl = (up, down) if live.side == "long" else (down, up)
        case.wanted_position = LivePosition(live.side, live.size, live.leverage, tp, sl)


def _change_ladder(rng: random.Random, case: SymbolCase) -> None:
    """Replace the whole ladder, or (when it has 3+ rungs) cancel some and add others."""
    live = len(case.orders)
    if live >= 3 and rng.random() < 0.4:
        dropped = rng.randint(1, live - 1)
        added = rng.randint(1, 5)
        keep = case.orders[: live - dropped]
        fresh = _ladder(rng, case.mark, case.tick, case.min_size, case.leverage, added, offset=1)
        case.wanted_orders = [*keep, *fresh]
        case.changes.append("ladder_partial")
        case.min_writes += min_cancel_calls(live, dropped) + added
        return
    count = rng.randint(1, 20)
    case.wanted_orders = _ladder(
        rng, case.mark, case.tick, case.min_size, case.leverage, count, offset=1
    )
    case.changes.append("ladder")
    case.min_writes += min_cancel_calls(live, live) + count


def _on_grid(value: Decimal, tick: Decimal) -> Decimal:
    return (value / tick).to_integral_value(rounding=ROUND_DOWN) * tick


def _round_down(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def _money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.00000001"))
