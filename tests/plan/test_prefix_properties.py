"""Property: every prefix of every plan that passes policy is no riskier than both its ends.

And the planner never needs its own prefix check to refuse a plan (it orders and shapes
the calls so that none is unsafe); these files set no policy that could.

The states are not the planner's predictions: each example builds the account in the
sandbox's own trading engine (in-process, in-memory SQLite), plans from what the engine
shows, then executes the plan's calls one by one on the engine and measures the account the
engine holds after each: worst-case gross notional, every position's distance to the
liquidation price the engine computes, and the TP/SL of positions the plan opened or grew.
A margin top-up right after the call that set the margin completes that call's step (see
`reconciler.plan.prefix`), so the state between the two is not measured on its own.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from wire import wire_call

from reconciler.levret import parse
from reconciler.levret.requests import POSITION_ID_PLACEHOLDER
from reconciler.model.account import Order
from reconciler.model.desired import DesiredState
from reconciler.model.plan import Action, Plan
from reconciler.model.snapshot import Snapshot
from reconciler.plan import plan
from reconciler.sandbox.engine import Exchange
from reconciler.sandbox.rejection import Rejection
from reconciler.sandbox.seed import DEMO_SYMBOLS

USER = "prop"
SYMBOLS = ("BTC_USDT", "ETH_USDT")
DEMO = {demo["symbol"]: demo for demo in DEMO_SYMBOLS if demo["symbol"] in SYMBOLS}
MARKS = {symbol: Decimal(demo["markPrice"]) for symbol, demo in DEMO.items()}
STEPS = {symbol: Decimal(demo["stepSize"]) for symbol, demo in DEMO.items()}
LEVERAGES = st.sampled_from([2, 5, 10, 20])


@st.composite
def live_position(draw: st.DrawFn, symbol: str) -> dict[str, Any] | None:
    if not draw(st.booleans()):
        return None
    mark = MARKS[symbol]
    side = draw(st.sampled_from(["long", "short"]))
    factor = Decimal("0.97") if side == "long" else Decimal("1.03")
    return {
        "side": side,
        "size": STEPS[symbol] * draw(st.integers(10, 400)),
        "leverage": draw(LEVERAGES),
        "extra_margin": draw(st.sampled_from([0, 0, 50, 400])),
        "stop_loss": (mark * factor).quantize(Decimal(1)) if draw(st.booleans()) else None,
    }


@st.composite
def wanted_position(draw: st.DrawFn, symbol: str) -> dict[str, Any] | None:
    choice = draw(st.sampled_from(["none", "flat", "long", "short"]))
    if choice == "none":
        return None
    if choice == "flat":
        return {"side": "flat"}
    mark = MARKS[symbol]
    size = STEPS[symbol] * draw(st.integers(10, 400))
    leverage = draw(LEVERAGES)
    wanted: dict[str, Any] = {"side": choice, "size": size, "leverage": leverage}
    if draw(st.booleans()):
        requirement = size * mark / leverage
        wanted["margin"] = (
            requirement * Decimal(draw(st.sampled_from(["1.2", "1.5", "2"])))
        ).quantize(Decimal(1)) + 1  # above the requirement at any entry the test can make
    if draw(st.booleans()):
        factor = Decimal("0.96") if choice == "long" else Decimal("1.04")
        wanted["stop_loss"] = (mark * factor).quantize(Decimal(1))
    return wanted


@st.composite
def resting_orders(draw: st.DrawFn, symbol: str) -> list[dict[str, Any]]:
    mark = MARKS[symbol]
    orders = []
    for _ in range(draw(st.integers(0, 2))):
        side = draw(st.sampled_from(["buy", "sell"]))
        factor = Decimal("0.95") if side == "buy" else Decimal("1.05")
        orders.append(
            {
                "side": side,
                "price": (mark * factor).quantize(Decimal(1)),
                "size": STEPS[symbol] * draw(st.integers(10, 100)),
            }
        )
    return orders


@st.composite
def example(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    live = {s: (draw(live_position(s)), draw(resting_orders(s))) for s in SYMBOLS}
    desired: dict[str, Any] = {}
    for symbol in SYMBOLS:
        entry: dict[str, Any] = {}
        wanted = draw(wanted_position(symbol))
        if wanted is not None:
            entry["position"] = wanted
        if draw(st.booleans()):
            entry["orders"] = draw(resting_orders(symbol))
        if entry:
            desired[symbol] = entry
    return live, desired


def _engine(live: dict[str, Any]) -> Exchange:
    exchange = Exchange.with_symbols([DEMO[s] for s in SYMBOLS])
    exchange.create_account(USER, "prop-key", "prop-secret", ("read", "trade"), Decimal(10**7))
    for symbol, (position, orders) in live.items():
        if position is not None:
            side = "buy" if position["side"] == "long" else "sell"
            body = {"symbol": symbol, "side": side, "orderType": "market"}
            exchange.place_order(
                USER, {**body, "size": position["size"], "leverage": position["leverage"]}
            )
            (opened,) = exchange.positions(USER, symbol)
            if position["extra_margin"]:
                exchange.adjust_margin(
                    USER, opened["id"], {"mode": "add", "amount": Decimal(position["extra_margin"])}
                )
            if position["stop_loss"] is not None:
                exchange.set_tpsl(USER, opened["id"], {"stopLossPrice": position["stop_loss"]})
        for order in orders:
            exchange.place_order(
                USER, {"symbol": symbol, "orderType": "limit", "leverage": 5, **order}
            )
    return exchange


def _snapshot(exchange: Exchange) -> Snapshot:
    open_orders: dict[str, list[Order]] = {}
    for symbol in SYMBOLS:
        for item in exchange.open_orders(USER, symbol, 1, 100, None, None)["items"]:
            open_orders.setdefault(symbol, []).append(parse.wire(parse.order, item))
    positions = [parse.wire(parse.position, p) for p in exchange.positions(USER, None)]
    return Snapshot(
        user_id=USER,
        specs={s["symbol"]: parse.wire(parse.symbol_spec, s) for s in exchange.supported_symbols()},
        positions={p.symbol: p for p in positions},
        open_orders={s: tuple(orders) for s, orders in open_orders.items()},
        marks=dict(MARKS),
        equity=Decimal(exchange.account_overview(USER)["walletBalance"]),
    )


def _desired(symbols: dict[str, Any]) -> DesiredState:
    return DesiredState.model_validate(
        {"version": 1, "account": {"user_id": USER}, "symbols": symbols}
    )


def _send(exchange: Exchange, action: Action) -> None:
    """One planned call on the engine, the position-id placeholder resolved as apply does."""
    request = wire_call(action, USER)
    path = request.path
    if POSITION_ID_PLACEHOLDER in path:
        (position,) = exchange.positions(USER, action.symbol)
        path = path.replace(POSITION_ID_PLACEHOLDER, position["id"])
    body = dict(request.body or {})
    body.pop("userId", None)
    if path == "/order":
        exchange.place_order(USER, body)
    elif path == "/order/cancel":
        exchange.cancel_order(USER, body)
    elif path == "/order/cancelAll":
        exchange.cancel_all(USER, body)
    else:
        _, _, position_id, verb = path.split("/")
        if verb == "close":
            exchange.close_position(USER, position_id)
        else:
            call = {
                "leverage": exchange.set_leverage,
                "margin": exchange.adjust_margin,
                "tpsl": exchange.set_tpsl,
            }
            call[verb](USER, position_id, body)


def _measures(exchange: Exchange) -> tuple[Decimal, dict[str, Decimal], dict[str, dict[str, Any]]]:
    """Worst-case gross, percent to liquidation by symbol, and the positions themselves."""
    positions = {p["symbol"]: p for p in exchange.positions(USER, None)}
    gross = Decimal(0)
    for symbol in SYMBOLS:
        held = Decimal(0)
        if symbol in positions:
            p = positions[symbol]
            held = Decimal(p["size"]) * MARKS[symbol] * (1 if p["side"] == "long" else -1)
        buys = sells = Decimal(0)
        for order in exchange.open_orders(USER, symbol, 1, 100, None, None)["items"]:
            if not order["reduce_only"]:
                amount = Decimal(order["price"]) * (
                    Decimal(order["size"]) - Decimal(order["filledSize"])
                )
                if order["side"] == "buy":
                    buys += amount
                else:
                    sells += amount
        gross += max(abs(held + buys), abs(held - sells))
    distances = {}
    for symbol, p in positions.items():
        if p["liquidationPrice"] is not None:
            mark, liquidation = MARKS[symbol], Decimal(p["liquidationPrice"])
            moved = mark - liquidation if p["side"] == "long" else liquidation - mark
            distances[symbol] = moved / mark * 100
    return gross, distances, positions


def _completes_previous(actions: tuple[Action, ...], index: int) -> bool:
    if index == 0:
        return False
    action, before = actions[index], actions[index - 1]
    return (
        action.kind == "adjust_margin"
        and (wire_call(action, USER).body or {}).get("mode") == "add"
        and before.symbol == action.symbol
        and before.phase == action.phase
        and before.kind in ("set_leverage", "place_order")
    )


@settings(max_examples=150)  # each example is milliseconds; rarer shapes need the count
@given(example())
def test_every_prefix_is_no_riskier_than_both_ends_in_the_sandbox_engine(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    live, symbols = case
    exchange = _engine(live)
    desired = _desired(symbols)
    result: Plan = plan(desired, _snapshot(exchange))
    # The planner always finds a safe order: its own prefix check never has to refuse.
    assert not [v for v in result.violations if v.startswith("step ")], result.violations
    assume(not result.violations and result.actions)
    start_gross, start_distance, start_positions = _measures(exchange)
    states = []
    for index, action in enumerate(result.actions):
        try:
            _send(exchange, action)
        except Rejection as refused:  # a refused call ends the run: the prefix so far counts
            states.append((index, _measures(exchange)))
            raise AssertionError(f"call {index + 1} ({action.reason}) refused: {refused}") from None
        if index + 1 < len(result.actions) and _completes_previous(result.actions, index + 1):
            continue
        states.append((index, _measures(exchange)))
    end_gross, end_distance, _ = _measures(exchange)
    slack = Decimal("0.05")  # percent: entry prices and fees round in the engine
    for index, (gross, distances, positions) in states:
        where = f"after call {index + 1} ({result.actions[index].reason})"
        assert gross <= max(start_gross, end_gross) * (1 + Decimal("0.0001")), where
        for symbol, distance in distances.items():
            ends = [d[symbol] for d in (start_distance, end_distance) if symbol in d]
            if ends:
                assert distance >= min(ends) - slack, (where, symbol, distance, ends)
        for symbol, position in positions.items():
            wanted = (symbols.get(symbol) or {}).get("position") or {}
            before = start_positions.get(symbol)
            grown = (
                before is None
                or before["side"] != position["side"]
                or Decimal(position["size"]) > Decimal(before["size"])
            )
            if grown and wanted.get("stop_loss") is not None:
                assert Decimal(position["stopLossPrice"]) == wanted["stop_loss"], (where, symbol)
