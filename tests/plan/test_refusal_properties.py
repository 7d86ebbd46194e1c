"""Property: no plan that passes policy can fire at once or exceed the worst-case gross cap.

Random accounts (positions, resting orders, marks, book tops) and random desired files whose
TP/SL and order prices fall on both sides of the mark. For every plan without violations,
judged here independently of the planner's own code:

- no TP/SL it sends (in an opening order or a `set_tpsl`) is on the wrong side of the mark;
- no limit order it places crosses the mark or the book top unless the file marks it
  `taker: true`;
- the worst-case gross after it (positions at the mark plus every non-reduce-only resting
  order filled, the worse direction per symbol) is within `max_gross_notional`, unless the
  plan lowers it (a cap never traps the account in what it already holds).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from planner_support import MARKS, SPECS, order, position, snapshot
from wire import wire_call

from reconciler.errors import SpecError
from reconciler.model.desired import DesiredState
from reconciler.model.plan import Plan
from reconciler.model.snapshot import BookTop, Snapshot
from reconciler.plan import plan

SYMBOLS = sorted(SPECS)
CAP = Decimal(4_000)  # about what a few random positions and ladders add up to


def _price(symbol: str, mark: Decimal, percent: int) -> Decimal:
    tick = SPECS[symbol].tick_size
    return ((mark * percent / 100) / tick).to_integral_value() * tick


@st.composite
def account(draw: st.DrawFn) -> Snapshot:
    positions, orders, marks, books = [], [], {}, {}
    for symbol in SYMBOLS:
        mark = _price(symbol, MARKS[symbol], draw(st.integers(95, 105)))
        marks[symbol] = mark
        if draw(st.booleans()):
            spread = draw(st.integers(0, 2))
            books[symbol] = BookTop(
                bid=_price(symbol, mark, 100 - spread), ask=_price(symbol, mark, 100 + spread)
            )
        side = draw(st.sampled_from([None, "long", "short"]))
        if side is not None:
            size = SPECS[symbol].step_size * draw(st.integers(1, 40))
            positions.append(position(symbol, side, size, leverage=5, mark=mark))
        for index in range(draw(st.integers(0, 2))):
            buy = draw(st.booleans())
            percent = draw(st.integers(90, 99)) if buy else draw(st.integers(101, 110))
            orders.append(
                order(
                    symbol,
                    "buy" if buy else "sell",
                    _price(symbol, mark, percent),
                    SPECS[symbol].step_size * draw(st.integers(1, 20)),
                    id=f"{symbol}-{index}",
                    created=index,
                )
            )
    live = snapshot(positions, orders, marks={})
    # an open position's own markPrice is the mark; others read one
    reads = {s: m for s, m in marks.items() if s not in live.positions}
    return live.model_copy(update={"marks": reads, "books": books})


@st.composite
def desired(draw: st.DrawFn) -> DesiredState:
    symbols: dict[str, Any] = {}
    for symbol in draw(st.lists(st.sampled_from(SYMBOLS), unique=True, min_size=1)):
        entry: dict[str, Any] = {}
        side = draw(st.sampled_from([None, "flat", "long", "short"]))
        if side == "flat":
            entry["position"] = {"side": "flat"}
        elif side is not None:
            wanted: dict[str, Any] = {
                "side": side,
                "size": SPECS[symbol].step_size * draw(st.integers(1, 60)),
                "leverage": 5,
            }
            for name in ("take_profit", "stop_loss"):
                if draw(st.booleans()):
                    wanted[name] = _price(symbol, MARKS[symbol], draw(st.integers(90, 110)))
            tp, sl = wanted.get("take_profit"), wanted.get("stop_loss")
            if tp is not None and sl is not None and (tp <= sl if side == "long" else tp >= sl):
                wanted.pop("stop_loss")
            entry["position"] = wanted
        entry["orders"] = [
            {
                "side": draw(st.sampled_from(["buy", "sell"])),
                "price": _price(symbol, MARKS[symbol], draw(st.integers(90, 110))),
                "size": SPECS[symbol].step_size * draw(st.integers(1, 20)),
                "taker": draw(st.booleans()),
            }
            for _ in range(draw(st.integers(0, 3)))
        ]
        symbols[symbol] = entry
    return DesiredState.model_validate(
        {"version": 1, "policy": {"max_gross_notional": CAP}, "symbols": symbols}
    )


def _worst(plan_: Plan, live: Snapshot) -> tuple[Decimal, Decimal]:
    """Worst-case gross before and after the plan, computed from the actions alone."""
    after_size = {s: p.size if p.side == "long" else -p.size for s, p in live.positions.items()}
    for change in plan_.changes:
        view = change.after
        after_size[change.symbol] = view.size if view.side == "long" else -view.size
    cancelled_all = {a.symbol for a in plan_.actions if a.kind == "cancel_all_orders"}
    cancelled = {(wire_call(a).body or {}).get("orderId") for a in plan_.actions}
    resting: dict[str, list[tuple[str, Decimal]]] = {}
    before_resting: dict[str, list[tuple[str, Decimal]]] = {}
    for symbol, orders in live.open_orders.items():
        for o in orders:
            assert o.price is not None
            before_resting.setdefault(symbol, []).append((o.side, o.price * o.remaining))
            if symbol not in cancelled_all and o.id not in cancelled:
                resting.setdefault(symbol, []).append((o.side, o.price * o.remaining))
    for a in plan_.actions:
        body = wire_call(a).body or {}
        if a.kind == "place_order" and body.get("orderType") == "limit":
            resting.setdefault(a.symbol, []).append((body["side"], body["price"] * body["size"]))

    def gross(sizes: dict[str, Decimal], books: dict[str, list[tuple[str, Decimal]]]) -> Decimal:
        total = Decimal(0)
        for symbol in set(sizes) | set(books):
            held = sizes.get(symbol, Decimal(0)) * (live.mark(symbol) or Decimal(0))
            buys = sum((n for side, n in books.get(symbol, []) if side == "buy"), Decimal(0))
            sells = sum((n for side, n in books.get(symbol, []) if side == "sell"), Decimal(0))
            total += max(abs(held + buys), abs(held - sells))
        return total

    before = {s: p.size if p.side == "long" else -p.size for s, p in live.positions.items()}
    return gross(before, before_resting), gross(after_size, resting)


@given(desired(), account())
def test_no_plan_passing_policy_fires_at_once_or_breaks_the_gross_cap(
    want: DesiredState, live: Snapshot
) -> None:
    try:
        result = plan(want, live)
    except SpecError:
        return  # a file the exchange's specs refuse is never planned
    if result.violations:
        return
    for action in result.actions:
        body = wire_call(action).body or {}
        mark = live.mark(action.symbol)
        assert mark is not None
        if action.kind == "place_order" and body.get("orderType") == "market":
            long = body["side"] == "buy"
            if "takeProfit" in body:
                assert (body["takeProfit"] > mark) if long else (body["takeProfit"] < mark)
            if "stopLoss" in body:
                assert (body["stopLoss"] < mark) if long else (body["stopLoss"] > mark)
        if action.kind == "set_tpsl":
            side = next(c.after.side for c in result.changes if c.symbol == action.symbol)
            tp, sl = body["takeProfitPrice"], body["stopLossPrice"]
            wanted = want.symbols[action.symbol].position
            assert wanted is not None
            if tp is not None and "take_profit" in wanted.model_fields_set:
                assert (tp > mark) if side == "long" else (tp < mark)
            if sl is not None and "stop_loss" in wanted.model_fields_set:
                assert (sl < mark) if side == "long" else (sl > mark)
        if action.kind == "place_order" and body.get("orderType") == "limit":
            book = live.books.get(action.symbol)
            price = body["price"]
            if body["side"] == "buy":
                crosses = price >= mark or (
                    book is not None and book.ask is not None and price >= book.ask
                )
            else:
                crosses = price <= mark or (
                    book is not None and book.bid is not None and price <= book.bid
                )
            if crosses:
                orders = want.symbols[action.symbol].orders or ()
                assert any(
                    o.taker and o.price == price and o.side == body["side"] for o in orders
                ), action
    before, after = _worst(result, live)
    assert after <= CAP or after <= before, (before, after)
