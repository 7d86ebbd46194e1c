"""The planner against the sandbox's trading engine, used in-process as the model.

Hypothesis builds a random account in the engine (positions opened at one mark, the mark then
moved a little, resting orders, unmanaged symbols) and a random desired state. The test reads
a `Snapshot` from the engine the way the reader would, plans, applies every action through the
engine (the placeholder becomes the id of the position the plan opened), reads again and
plans again: the second plan must be empty. Along the way it checks that no action touches
an unmanaged symbol under `unmanaged: ignore`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_UP, Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire import wire_call

from reconciler.levret import parse
from reconciler.levret.requests import POSITION_ID_PLACEHOLDER
from reconciler.model.account import Order
from reconciler.model.desired import DesiredState
from reconciler.model.plan import Action, Plan
from reconciler.model.snapshot import Snapshot, needs
from reconciler.plan import plan, symbols_placing_orders
from reconciler.sandbox.engine import Exchange

USER = "model"
BALANCE = Decimal(5_000_000)


@dataclass(frozen=True)
class Market:
    symbol: str
    mark: Decimal
    tick: Decimal
    step: Decimal
    max_size: int  # in steps


MARKETS = {
    "BTC_USDT": Market("BTC_USDT", Decimal(45000), Decimal("0.1"), Decimal("0.001"), 2000),
    "ETH_USDT": Market("ETH_USDT", Decimal(2500), Decimal("0.01"), Decimal("0.01"), 2000),
    "SOL_USDT": Market("SOL_USDT", Decimal(100), Decimal("0.01"), Decimal("0.1"), 2000),
}


def _exchange() -> Exchange:
    specs = [
        {
            "symbol": m.symbol,
            "tickSize": m.tick,
            "stepSize": m.step,
            "minSize": m.step,
            "maxLeverage": 125 if m.symbol == "BTC_USDT" else 50,
            "markPrice": m.mark,
        }
        for m in MARKETS.values()
    ]
    exchange = Exchange.with_symbols(specs)
    exchange.create_account(USER, "model-key", "model-secret", ["read", "trade"], BALANCE)
    return exchange


# -- strategies ----------------------------------------------------------------------------


def _price(market: Market, factor: Decimal) -> Decimal:
    return ((market.mark * factor) / market.tick).to_integral_value() * market.tick


@st.composite
def live_symbol(draw: st.DrawFn, market: Market) -> dict[str, Any]:
    """How one symbol looks live: maybe a position, a mark move, some resting orders."""
    side = draw(st.sampled_from(["none", "long", "short"]))
    state: dict[str, Any] = {"side": side, "move": draw(st.sampled_from(["0.98", "1", "1.015"]))}
    if side != "none":
        state["size"] = draw(st.integers(1, market.max_size)) * market.step
        state["leverage"] = draw(st.integers(1, 20))
        state["extra_margin"] = draw(st.sampled_from([0, 0, 25, 100]))
        state["tpsl"] = draw(st.booleans())
    orders = draw(
        st.lists(
            st.tuples(st.sampled_from(["buy", "sell"]), st.integers(5, 9), st.integers(1, 30)),
            max_size=4,
        )
    )
    state["orders"] = orders
    return state


@st.composite
def desired_symbol(draw: st.DrawFn, market: Market, default_leverage: int) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    kind = draw(st.sampled_from(["absent", "flat", "long", "short"]))
    side_after: str | None = None
    if kind == "flat":
        entry["position"] = {"side": "flat"}
    elif kind != "absent":
        side_after = kind
        position: dict[str, Any] = {"side": kind}
        sizing = draw(st.sampled_from(["size", "size", "notional", "weight"]))
        steps = draw(st.integers(1, market.max_size))
        leverage = draw(st.integers(1, 20))
        explicit = draw(st.booleans())
        if explicit:
            position["leverage"] = leverage
        if sizing == "size":
            position["size"] = steps * market.step
            if draw(st.booleans()):
                effective = leverage if explicit else default_leverage
                requirement = position["size"] * market.mark / effective
                margin = requirement * Decimal(draw(st.sampled_from(["1.2", "1.5", "2"])))
                position["margin"] = margin.quantize(Decimal("0.01"), rounding=ROUND_UP)
        elif sizing == "notional":
            position["notional"] = (steps * market.step * market.mark).quantize(Decimal(1))
        else:
            position["weight"] = Decimal(draw(st.sampled_from(["0.001", "0.005", "0.01"])))
        if draw(st.booleans()):
            up, down = _price(market, Decimal("1.3")), _price(market, Decimal("0.7"))
            position["take_profit"], position["stop_loss"] = (
                (up, down) if kind == "long" else (down, up)
            )
        entry["position"] = position
    if draw(st.booleans()):
        orders = []
        for side, distance, steps in draw(
            st.lists(
                st.tuples(st.sampled_from(["buy", "sell"]), st.integers(5, 9), st.integers(1, 30)),
                max_size=4,
            )
        ):
            factor = Decimal(100 - distance if side == "buy" else 100 + distance) / 100
            order: dict[str, Any] = {
                "side": side,
                "price": _price(market, factor),
                "size": steps * market.step,
            }
            reducing = {"long": "sell", "short": "buy"}.get(side_after or "")
            if side == reducing and draw(st.booleans()):
                order["reduce_only"] = True
            orders.append(order)
        entry["orders"] = orders
        if draw(st.integers(0, 3)) == 0:
            entry["orders_mode"] = "additive"
    return entry


@st.composite
def scenario(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    live = {symbol: draw(live_symbol(market)) for symbol, market in MARKETS.items()}
    managed = draw(st.lists(st.sampled_from(sorted(MARKETS)), unique=True, min_size=1))
    default_leverage = draw(st.integers(1, 20))
    wanted = {
        "version": 1,
        "defaults": {"leverage": default_leverage},
        "policy": {"unmanaged": draw(st.sampled_from(["ignore", "close"]))},
        "symbols": {
            symbol: draw(desired_symbol(MARKETS[symbol], default_leverage))
            for symbol in sorted(managed)
        },
    }
    return live, wanted


# -- building, reading, applying -------------------------------------------------------------


def build(exchange: Exchange, live: dict[str, dict[str, Any]]) -> None:
    for symbol, state in live.items():
        market = MARKETS[symbol]
        if state["side"] != "none":
            body: dict[str, Any] = {
                "userId": USER,
                "symbol": symbol,
                "side": "buy" if state["side"] == "long" else "sell",
                "orderType": "market",
                "size": state["size"],
                "leverage": state["leverage"],
            }
            if state["tpsl"]:
                far, near = _price(market, Decimal("1.5")), _price(market, Decimal("0.5"))
                body["takeProfit"], body["stopLoss"] = (
                    (far, near) if state["side"] == "long" else (near, far)
                )
            exchange.place_order(USER, body)
            if state["extra_margin"]:
                (position,) = exchange.positions(USER, symbol)
                exchange.adjust_margin(
                    USER, str(position["id"]), {"mode": "add", "amount": state["extra_margin"]}
                )
        moved = _price(market, Decimal(state["move"]))
        exchange.set_prices({symbol: moved})
        for side, distance, steps in state["orders"]:
            factor = Decimal(100 - distance if side == "buy" else 100 + distance) / 100
            exchange.place_order(
                USER,
                {
                    "userId": USER,
                    "symbol": symbol,
                    "side": side,
                    "orderType": "limit",
                    "size": steps * market.step,
                    "price": _price(market, factor),
                    "leverage": 5,
                },
            )


def read(exchange: Exchange, desired: DesiredState, equity: Decimal | None = None) -> Snapshot:
    """What the reader does: specs, positions, open-order pages, stats and overview if needed."""
    specs = [parse.wire(parse.symbol_spec, item) for item in exchange.supported_symbols()]
    positions = [parse.wire(parse.position, item) for item in exchange.positions(USER, None)]
    orders: dict[str, list[Order]] = {}
    page = 1
    while True:
        data = exchange.open_orders(USER, None, page, 100, None, None)
        for item in data["items"]:
            parsed = parse.wire(parse.order, item)
            orders.setdefault(parsed.symbol, []).append(parsed)
        if page * 100 >= data["total"]:
            break
        page += 1
    wanted = needs(desired)
    if wanted.equity and equity is None:
        equity = parse.wire(parse.account_overview, exchange.account_overview(USER)).equity
    read = Snapshot(
        user_id=USER,
        specs={s.symbol: s for s in specs},
        positions={p.symbol: p for p in positions},
        open_orders={symbol: tuple(items) for symbol, items in orders.items()},
        equity=equity if wanted.equity else None,
    )
    placing = symbols_placing_orders(desired, read) - set(read.positions)
    marks = {}
    for symbol in sorted(wanted.stats_for(read.positions) | placing):
        stats = parse.wire(parse.market_stats, exchange.market_stats(symbol))
        marks[symbol] = stats.mark_price
    return read.model_copy(update={"marks": marks})


def apply(exchange: Exchange, actions: tuple[Action, ...]) -> None:
    for action in actions:
        path = wire_call(action, USER).path
        if POSITION_ID_PLACEHOLDER in path:
            (position,) = exchange.positions(USER, action.symbol)
            path = path.replace(POSITION_ID_PLACEHOLDER, str(position["id"]))
        body = dict(wire_call(action, USER).body or {})
        if action.kind == "place_order":
            exchange.place_order(USER, body)
        elif action.kind == "cancel_order":
            exchange.cancel_order(USER, body)
        elif action.kind == "cancel_all_orders":
            exchange.cancel_all(USER, body)
        else:
            position_id = path.split("/")[2]
            if action.kind == "set_leverage":
                exchange.set_leverage(USER, position_id, body)
            elif action.kind == "adjust_margin":
                exchange.adjust_margin(USER, position_id, body)
            elif action.kind == "set_tpsl":
                exchange.set_tpsl(USER, position_id, body)
            elif action.kind == "close_position":
                exchange.close_position(USER, position_id)
            else:  # pragma: no cover
                raise AssertionError(action.kind)


def _describe(result: Plan) -> str:
    return "\n".join(
        f"{a.kind} {a.symbol} {wire_call(a, USER).path} {wire_call(a, USER).body}"
        for a in result.actions
    )


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenario())
def test_applying_the_plan_in_the_engine_converges(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    live, wanted = case
    exchange = _exchange()
    build(exchange, live)
    desired = DesiredState.model_validate(wanted)
    before = read(exchange, desired)
    first = plan(desired, before, allow_flatten=True)
    if desired.policy.unmanaged == "ignore":
        assert {a.symbol for a in first.actions} <= set(desired.symbols)
    assert not first.violations, first.violations
    apply(exchange, first.actions)
    # Weights are shares of equity, which the plan's own fees lower: re-plan on the same equity.
    after = read(exchange, desired, equity=before.equity)
    second = plan(desired, after, allow_flatten=True)
    assert second.is_empty, f"first:\n{_describe(first)}\nsecond:\n{_describe(second)}"
