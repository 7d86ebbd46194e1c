"""Properties of the pure planner on random desired states and random snapshots.

Convergence through a real trading engine is in `test_planner_model.py`; these check the
minimality rules on every example: one size-changing call per symbol, nothing but the close on
a closing position, no redundant leverage/margin/TP-SL call, cancel and place counts equal to
what a maximum matching leaves over, and unmanaged symbols untouched unless told.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from planner_support import MARKS, SPECS, order, position, snapshot
from wire import wire_call

from reconciler.errors import SpecError
from reconciler.model.desired import DesiredState
from reconciler.model.plan import Action, Plan
from reconciler.model.snapshot import Snapshot
from reconciler.plan import plan

SYMBOLS = sorted(SPECS)
LIVE_EXTRA = "BNB_USDT"  # unmanaged symbol that is never in the desired state


def _steps(symbol: str, count: int) -> Decimal:
    return SPECS[symbol].step_size * count


def _tick_price(symbol: str, percent: int) -> Decimal:
    tick = SPECS[symbol].tick_size
    return ((MARKS[symbol] * percent / 100) / tick).to_integral_value() * tick


order_terms = st.tuples(
    st.sampled_from(["buy", "sell"]),
    st.integers(90, 95),  # percent of mark for buys; mirrored for sells
    st.integers(1, 3),
    st.sampled_from([3, 5]),
)


@st.composite
def live_state(draw: st.DrawFn) -> Snapshot:
    positions = []
    orders = []
    for symbol in SYMBOLS:
        side = draw(st.sampled_from([None, "long", "short"]))
        if side is not None:
            leverage = draw(st.sampled_from([3, 5, 10]))
            size = _steps(symbol, draw(st.integers(1, 50)))
            tp, sl = draw(st.sampled_from([(None, None), (120, 80), (130, None)]))
            if side == "short" and tp is not None:
                tp, sl = 200 - tp, (200 - sl if sl is not None else None)
            positions.append(
                position(
                    symbol,
                    side,
                    size,
                    leverage=leverage,
                    margin=MARKS[symbol] * size / leverage + draw(st.sampled_from([0, 10])),
                    tp=_tick_price(symbol, tp) if tp is not None else None,
                    sl=_tick_price(symbol, sl) if sl is not None else None,
                )
            )
        for index, (side_, pct, steps, lev) in enumerate(draw(st.lists(order_terms, max_size=3))):
            percent = pct if side_ == "buy" else 200 - pct
            orders.append(
                order(
                    symbol,
                    side_,
                    _tick_price(symbol, percent),
                    _steps(symbol, steps),
                    id=f"{symbol}-{index}",
                    leverage=lev,
                    created=index,
                )
            )
    if draw(st.booleans()):
        orders.append(order(LIVE_EXTRA, "buy", "300", "1", id="extra-1"))
    return snapshot(positions, orders)


@st.composite
def desired_state(draw: st.DrawFn) -> DesiredState:
    symbols: dict[str, Any] = {}
    for symbol in draw(st.lists(st.sampled_from(SYMBOLS), unique=True)):
        entry: dict[str, Any] = {}
        kind = draw(st.sampled_from([None, "flat", "long", "short"]))
        if kind == "flat":
            entry["position"] = {"side": "flat"}
        elif kind is not None:
            wanted: dict[str, Any] = {
                "side": kind,
                "size": _steps(symbol, draw(st.integers(1, 50))),
                "leverage": draw(st.sampled_from([3, 5, 10])),
            }
            if draw(st.booleans()):
                up, down = _tick_price(symbol, 120), _tick_price(symbol, 80)
                wanted["take_profit"], wanted["stop_loss"] = (
                    (up, down) if kind == "long" else (down, up)
                )
            if draw(st.booleans()):
                wanted["margin"] = (MARKS[symbol] * wanted["size"] / wanted["leverage"]) + 10
            entry["position"] = wanted
        if draw(st.booleans()):
            entry["orders"] = [
                {
                    "side": side_,
                    "price": _tick_price(symbol, pct if side_ == "buy" else 200 - pct),
                    "size": _steps(symbol, steps),
                    "leverage": lev,
                }
                for side_, pct, steps, lev in draw(st.lists(order_terms, max_size=3))
            ]
            if draw(st.booleans()):
                entry["orders_mode"] = "additive"
        symbols[symbol] = entry
    return DesiredState.model_validate(
        {
            "version": 1,
            "policy": {"unmanaged": draw(st.sampled_from(["ignore", "close"]))},
            "symbols": symbols,
        }
    )


def _by_symbol(result: Plan) -> dict[str, list[Action]]:
    grouped: dict[str, list[Action]] = {}
    for action in result.actions:
        grouped.setdefault(action.symbol, []).append(action)
    return grouped


def _is_market(action: Action) -> bool:
    return action.kind == "close_position" or (
        action.kind == "place_order" and (wire_call(action).body or {}).get("orderType") == "market"
    )


def _plan(desired: DesiredState, live: Snapshot) -> Plan:
    try:
        return plan(desired, live)
    except SpecError as error:  # pragma: no cover - the strategies only build valid files
        raise AssertionError(error.problems) from None


@given(desired_state(), live_state())
def test_at_most_one_size_change_and_nothing_else_on_a_closing_position(
    desired: DesiredState, live: Snapshot
) -> None:
    for symbol, actions in _by_symbol(_plan(desired, live)).items():
        flip_close = [a for a in actions if a.kind == "close_position" and "flip" in a.reason]
        # an armed flip is a close then an open; anything else changes the size once
        assert sum(1 for a in actions if _is_market(a)) <= 1 + len(flip_close), symbol
        if flip_close:
            assert actions[0] is flip_close[0], symbol
        elif any(a.kind == "close_position" for a in actions):
            position_calls = {"set_leverage", "adjust_margin", "set_tpsl"}
            assert not [a for a in actions if a.kind in position_calls], symbol


@given(desired_state(), live_state())
def test_no_redundant_leverage_margin_or_tpsl_call(desired: DesiredState, live: Snapshot) -> None:
    result = _plan(desired, live)
    tolerance = desired.defaults.tolerance.margin  # no symbol sets its own
    for action in result.actions:
        assert action.before != action.after or action.kind == "place_order", action
        if action.kind == "set_leverage":
            current = live.positions[action.symbol]
            assert wire_call(action).body == {"leverage": desired.position_leverage(action.symbol)}
            assert current.leverage != desired.position_leverage(action.symbol)
        if action.kind == "adjust_margin":
            body = wire_call(action).body or {}
            assert body["amount"] > tolerance
        if action.kind == "set_tpsl":
            assert action.before != action.after


@given(desired_state(), live_state())
def test_cancel_and_place_counts_equal_what_a_maximum_matching_leaves(
    desired: DesiredState, live: Snapshot
) -> None:
    result = _plan(desired, live)
    grouped = _by_symbol(result)
    for symbol, entry in desired.symbols.items():
        if entry.orders is None:
            continue
        live_orders = live.orders(symbol)
        wanted: Counter[tuple[str, Decimal | None, Decimal, int | None]] = Counter(
            (o.side, o.price, o.size, desired.order_leverage(symbol, o)) for o in entry.orders
        )
        have: Counter[tuple[str, Decimal | None, Decimal, int | None]] = Counter(
            (o.side, o.price, o.remaining, o.leverage) for o in live_orders
        )
        matched = sum((wanted & have).values())
        actions = grouped.get(symbol, [])
        placed = sum(
            1
            for a in actions
            if a.kind == "place_order" and (wire_call(a).body or {}).get("orderType") == "limit"
        )
        cancelled = sum(
            int(a.before["orders"]) if a.kind == "cancel_all_orders" else 1
            for a in actions
            if a.kind in ("cancel_order", "cancel_all_orders")
        )
        assert placed == len(entry.orders) - matched
        expected_cancels = 0 if entry.orders_mode == "additive" else len(live_orders) - matched
        assert cancelled == expected_cancels


@given(desired_state(), live_state())
def test_unmanaged_symbols_untouched_unless_close(desired: DesiredState, live: Snapshot) -> None:
    result = _plan(desired, live)
    touched = {a.symbol for a in result.actions} - set(desired.symbols)
    if desired.policy.unmanaged == "ignore":
        assert not touched
    else:
        assert touched == live.live_symbols() - set(desired.symbols)


@given(desired_state(), live_state())
def test_actions_are_in_phase_then_wave_then_symbol_order(
    desired: DesiredState, live: Snapshot
) -> None:
    keys = [(a.phase, a.wave, a.symbol) for a in _plan(desired, live).actions]
    assert keys == sorted(keys)
