"""One named test per planner rule (see the docstring of `reconciler.plan`)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from planner_support import desired, order, position, snapshot
from wire import wire_call

from reconciler.errors import PolicyViolation, SpecError
from reconciler.levret.requests import POSITION_ID_PLACEHOLDER
from reconciler.model.plan import Phase
from reconciler.model.snapshot import Snapshot, needs
from reconciler.plan import enforce, plan

# -- rule 1: tolerance and empty plans -------------------------------------------------------


def test_rule1_matching_state_gives_empty_plan_with_reason() -> None:
    want = desired("""
symbols:
  BTC_USDT:
    position: {side: long, size: 0.5, leverage: 10, take_profit: 47000, stop_loss: 44000}
    orders: [{side: buy, price: 42000, size: 0.1, leverage: 10}]
""")
    live = snapshot(
        [position("BTC_USDT", "long", "0.5", leverage=10, tp="47000", sl="44000")],
        [order("BTC_USDT", "buy", "42000", "0.1", id="o1", leverage=10)],
    )
    result = plan(want, live)
    assert result.is_empty
    assert result.empty_reason and "already matches" in result.empty_reason
    assert result.summary.symbols_unchanged == ("BTC_USDT",)


def test_rule1_differences_within_tolerance_are_not_traded() -> None:
    want = desired("""
defaults: {tolerance: {notional: 100, margin: 5}}
symbols:
  BTC_USDT:
    position: {side: long, size: 0.5, margin: 4502}
""")
    live = snapshot([position("BTC_USDT", "long", "0.5005", margin="4500")])  # off-step sliver
    assert plan(want, live).is_empty


def test_rule1_tolerance_never_spans_a_side_or_a_minimum_size() -> None:
    live = snapshot([position("BTC_USDT", "long", "0.2", leverage=10)])
    short = desired("""
symbols:
  BTC_USDT:
    tolerance: {size: 10}
    position: {side: short, size: 5, leverage: 10}
""")
    (flip,) = plan(short, live).actions
    assert flip.reason == "flip long 0.2 to short 5"
    more = desired("""
defaults: {tolerance: {notional: 1000}}
symbols:
  BTC_USDT: {position: {side: long, size: 0.201, leverage: 10}}
""")
    (add,) = plan(more, live).actions  # 0.001 BTC is 45 USDT, but it is the minimum size
    assert wire_call(add).body is not None and wire_call(add).body["size"] == Decimal("0.001")


def test_rule1_absent_position_and_orders_leave_the_symbol_alone() -> None:
    want = desired("symbols:\n  BTC_USDT: {}\n")
    live = snapshot(
        [position("BTC_USDT", "short", "2", leverage=3)],
        [
            order("BTC_USDT", "buy", "40000", "1", id="a"),
            order("BTC_USDT", "buy", "1", "1", id="b"),
        ],
    )
    assert plan(want, live).is_empty


# -- rule 2: one order per position change ---------------------------------------------------


def test_rule2_flip_is_one_market_order_carrying_the_new_positions_terms() -> None:
    want = desired("""
symbols:
  BTC_USDT:
    position: {side: short, size: 0.2, leverage: 7, take_profit: 40000, stop_loss: 50000}
""")
    live = snapshot([position("BTC_USDT", "long", "0.3")])  # nothing armed on it
    (action,) = plan(want, live).actions
    assert action.kind == "place_order"
    assert wire_call(action).body == {
        "userId": "demo",
        "symbol": "BTC_USDT",
        "side": "sell",
        "orderType": "market",
        "size": Decimal("0.5"),
        "leverage": 7,
        "reduce_only": False,
        "takeProfit": Decimal(40000),
        "stopLoss": Decimal(50000),
    }
    assert action.phase == Phase.REDUCE  # the new side is smaller: documented choice
    assert action.before == {"side": "long", "size": Decimal("0.3")}
    assert action.after == {"side": "short", "size": Decimal("0.2")}


def test_rule2_a_flip_with_anything_armed_is_a_close_then_an_open() -> None:
    want = desired("""
symbols:
  BTC_USDT:
    position: {side: short, size: 0.2, leverage: 7, take_profit: 40000, stop_loss: 50000}
""")
    # a TP on the long could close it while a one-order flip is on its way: the same sell
    # would then open short 0.5 for a target of 0.2
    for live in (
        snapshot([position("BTC_USDT", "long", "0.3", tp="50000")]),
        snapshot(
            [position("BTC_USDT", "long", "0.3")],
            [order("BTC_USDT", "sell", "46000", "0.1", id="r1", reduce_only=True)],
        ),
    ):
        close, open_ = plan(want, live).actions[:2]
        assert close.kind == "close_position" and close.phase == Phase.REDUCE
        assert open_.phase == Phase.INCREASE and wire_call(open_).body is not None
        assert wire_call(open_).body["size"] == Decimal("0.2")
        assert wire_call(open_).body["reduce_only"] is False
        assert wire_call(open_).body["stopLoss"] == Decimal(50000)


def test_rule2_bigger_flip_is_in_the_increase_phase() -> None:
    want = desired("symbols:\n  BTC_USDT:\n    position: {side: short, size: 0.5}\n")
    live = snapshot([position("BTC_USDT", "long", "0.3")])
    (action,) = plan(want, live).actions
    assert action.phase == Phase.INCREASE and action.risk == "increase"
    assert wire_call(action).body and wire_call(action).body["size"] == Decimal("0.8")


def test_rule2_going_flat_is_one_close() -> None:
    want = desired("""
symbols:
  BTC_USDT:
    position: {side: flat}
""")
    live = snapshot([position("BTC_USDT", "long", "0.3", leverage=3, tp="50000")])
    (action,) = plan(want, live).actions
    assert action.kind == "close_position"
    assert wire_call(action).method == "POST"
    assert wire_call(action).path == "/positions/pos-BTC_USDT/close"
    assert wire_call(action).body is None
    assert action.risk == "reduce"


def test_rule2_new_position_carries_leverage_and_tpsl_in_the_order_body() -> None:
    want = desired("""
symbols:
  ETH_USDT:
    position: {side: long, size: 2, leverage: 8, take_profit: 3000, stop_loss: 2000}
""")
    (action,) = plan(want, snapshot()).actions
    assert action.kind == "place_order"
    body = wire_call(action).body
    assert body is not None
    assert "price" not in body
    assert (body["leverage"], body["takeProfit"], body["stopLoss"]) == (8, 3000, 2000)
    assert action.notional == Decimal(5000)


def test_rule2_add_and_reduce_are_one_order_each() -> None:
    want = desired("""
symbols:
  BTC_USDT: {position: {side: long, size: 0.5}}
  ETH_USDT: {position: {side: short, size: 1}}
""")
    live = snapshot([position("BTC_USDT", "long", "0.3"), position("ETH_USDT", "short", "3")])
    add, cut = sorted(plan(want, live).actions, key=lambda a: a.symbol)
    assert wire_call(add).body and wire_call(add).body["size"] == Decimal("0.2")
    assert wire_call(add).body["reduce_only"] is False and add.phase == Phase.INCREASE
    assert wire_call(cut).body and wire_call(cut).body["size"] == Decimal(2)
    assert wire_call(cut).body["side"] == "buy" and wire_call(cut).body["reduce_only"] is True
    assert cut.phase == Phase.REDUCE


# -- rule 3: leverage, margin, TP/SL ---------------------------------------------------------


def test_rule3_each_differing_attribute_is_one_call() -> None:
    want = desired("""
symbols:
  BTC_USDT:
    position: {side: long, size: 1, leverage: 10, margin: 5000, take_profit: 50000, stop_loss: null}
""")
    live = snapshot([position("BTC_USDT", "long", "1", leverage=5, sl="40000")])
    actions = plan(want, live).actions
    assert [a.kind for a in actions] == ["set_leverage", "adjust_margin", "set_tpsl"]
    leverage, margin, tpsl = actions
    assert leverage.after == {"leverage": 10, "margin": Decimal(4500)}
    # margin is predicted after the leverage reset: 45000*1/10 = 4500, so add 500
    assert wire_call(margin).body == {"mode": "add", "amount": Decimal(500)}
    assert wire_call(tpsl).body == {"takeProfitPrice": Decimal(50000), "stopLossPrice": None}


def test_rule3_nothing_but_the_close_on_a_closing_position() -> None:
    want = desired("symbols:\n  BTC_USDT:\n    position: {side: flat}\n")
    live = snapshot([position("BTC_USDT", "long", "1", leverage=50, tp="60000", margin="4000")])
    assert [a.kind for a in plan(want, live).actions] == ["close_position"]


def test_rule3_margin_on_new_position_uses_placeholder_only_when_prediction_differs() -> None:
    predicted = desired(
        "symbols:\n  BTC_USDT:\n    position: {side: long, size: 1, margin: 9000}\n"
    )
    assert [a.kind for a in plan(predicted, snapshot()).actions] == ["place_order"]
    extra = desired("symbols:\n  BTC_USDT:\n    position: {side: long, size: 1, margin: 9500}\n")
    _, margin = plan(extra, snapshot()).actions
    assert wire_call(margin).path == f"/positions/{POSITION_ID_PLACEHOLDER}/margin"
    assert wire_call(margin).body == {"mode": "add", "amount": Decimal(500)}
    # the top-up follows the opening order at once, in its phase: nothing comes between
    assert margin.phase == Phase.INCREASE and margin.on_new_position


def test_rule3_margin_predicted_after_add_and_reduce() -> None:
    want = desired("""
symbols:
  BTC_USDT: {position: {side: long, size: 2, margin: 18000}}
  ETH_USDT: {position: {side: long, size: 1, margin: 1000}}
""")
    live = snapshot(
        [
            position("BTC_USDT", "long", "1", margin="9000"),  # +1 at 45000/5 = 9000 -> 18000
            position("ETH_USDT", "long", "4", margin="4000"),  # pro rata: 4000 * 1/4 = 1000
        ]
    )
    assert [a.kind for a in plan(want, live).actions] == ["place_order", "place_order"]


def test_rule3_tpsl_left_out_is_kept_and_null_clears() -> None:
    live = snapshot([position("SOL_USDT", "short", "10", tp="90", sl="110")])
    kept = desired("symbols:\n  SOL_USDT:\n    position: {side: short, size: 10}\n")
    assert plan(kept, live).is_empty  # an emergency stop added by hand survives
    want = desired(
        "symbols:\n  SOL_USDT:\n    position: {side: short, size: 10, take_profit: null}\n"
    )
    (action,) = plan(want, live).actions
    assert action.kind == "set_tpsl"
    assert wire_call(action).body == {"takeProfitPrice": None, "stopLossPrice": Decimal(110)}


# -- rule 4: resting orders ------------------------------------------------------------------


def test_rule4_maximum_matching_keeps_matches_and_replaces_the_rest() -> None:
    want = desired("""
symbols:
  BTC_USDT:
    orders:
      - {side: buy, price: 40000, size: 0.1}
      - {side: buy, price: 40000, size: 0.1}
      - {side: buy, price: 39000, size: 0.1}
""")
    live = snapshot(
        orders=[
            order("BTC_USDT", "buy", "40000", "0.1", id="a", created=1),
            order("BTC_USDT", "buy", "40000", "0.3", filled="0.2", id="b", created=2),
            order("BTC_USDT", "buy", "38000", "0.1", id="c", created=3),
        ]
    )
    actions = plan(want, live).actions
    assert [(a.kind, wire_call(a).body) for a in actions] == [
        ("cancel_order", {"orderId": "c"}),
        (
            "place_order",
            {
                "userId": "demo",
                "symbol": "BTC_USDT",
                "side": "buy",
                "orderType": "limit",
                "size": Decimal("0.1"),
                "price": Decimal(39000),
                "leverage": 5,
                "reduce_only": False,
            },
        ),
    ]


def test_rule4_all_of_two_or_more_go_in_one_cancel_all() -> None:
    want = desired("symbols:\n  SOL_USDT:\n    orders: []\n")
    live = snapshot(
        orders=[
            order("SOL_USDT", "buy", "90", "1", id="a"),
            order("SOL_USDT", "buy", "80", "1", id="b"),
        ]
    )
    (action,) = plan(want, live).actions
    assert action.kind == "cancel_all_orders"
    assert wire_call(action).path == "/order/cancelAll"
    assert wire_call(action).body == {"userId": "demo", "symbol": "SOL_USDT"}


def test_rule4_a_single_order_is_cancelled_by_id() -> None:
    want = desired("symbols:\n  SOL_USDT:\n    orders: []\n")
    live = snapshot(orders=[order("SOL_USDT", "buy", "90", "1", id="a")])
    (action,) = plan(want, live).actions
    assert action.kind == "cancel_order" and wire_call(action).body == {"orderId": "a"}


def test_rule4_additive_mode_never_cancels() -> None:
    want = desired("""
symbols:
  SOL_USDT:
    orders_mode: additive
    orders: [{side: buy, price: 95, size: 1}]
""")
    live = snapshot(
        orders=[
            order("SOL_USDT", "buy", "90", "1", id="a"),
            order("SOL_USDT", "buy", "80", "1", id="b"),
        ]
    )
    assert [a.kind for a in plan(want, live).actions] == ["place_order"]


def test_rule4_leverage_is_part_of_the_match() -> None:
    want = desired(
        "symbols:\n  SOL_USDT:\n    orders: [{side: buy, price: 90, size: 1, leverage: 3}]\n"
    )
    live = snapshot(orders=[order("SOL_USDT", "buy", "90", "1", id="a", leverage=5)])
    assert [a.kind for a in plan(want, live).actions] == ["cancel_order", "place_order"]


# -- rule 5: notional and weight --------------------------------------------------------------


def test_rule5_notional_and_weight_round_down_to_the_step() -> None:
    want = desired("""
symbols:
  BTC_USDT: {position: {side: long, notional: 10000}}
  SOL_USDT: {position: {side: short, weight: 0.1}}
""")
    live = snapshot(marks={"BTC_USDT": "45000", "SOL_USDT": "99.99"}, equity="12345")
    btc, sol = plan(want, live).actions
    assert wire_call(btc).body and wire_call(btc).body["size"] == Decimal("0.222")  # 0.2222...
    assert wire_call(sol).body and wire_call(sol).body["size"] == Decimal("12.3")  # 12.346...
    assert needs(want).price_symbols == {"BTC_USDT", "SOL_USDT"} and needs(want).equity


def test_rule5_off_step_size_and_off_tick_price_are_errors_with_lines() -> None:
    want = desired("""
symbols:
  SOL_USDT:
    position: {side: long, size: 0.25}
    orders: [{side: buy, price: 90.005, size: 1}]
""")
    with pytest.raises(SpecError) as raised:
        plan(want, snapshot())
    assert raised.value.problems == [
        "desired.yaml:5:34: symbols.SOL_USDT.position.size: "
        "0.25 is not a multiple of the size step 0.1",
        "desired.yaml:6:33: symbols.SOL_USDT.orders[0].price: 90.005 is not a multiple of "
        "the tick size 0.01",
    ]


def test_rule5_a_change_that_cannot_be_made_is_local_to_its_symbol() -> None:
    want = desired("""
symbols:
  BTC_USDT:
    position: {side: long, notional: 10}
    orders: [{side: buy, price: 40000, size: 0.1}]
  ETH_USDT: {position: {side: short, size: 1}}
""")
    result = plan(want, snapshot())
    (problem,) = result.infeasible
    assert (
        "symbols.BTC_USDT.position.notional: 10 USDT at mark 45000 is 0.000, below the minimum size"
        in problem
    )
    assert [(a.symbol, a.kind) for a in result.actions] == [("ETH_USDT", "place_order")]
    assert not result.violations
    live = snapshot([position("SOL_USDT", "long", "10.05")])  # off the step of 0.1
    sliver = plan(desired("symbols:\n  SOL_USDT: {position: {side: long, size: 10}}\n"), live)
    assert sliver.is_empty and "needs an order of 0.05" in sliver.infeasible[0]


def test_needs_skips_stats_for_symbols_with_a_position() -> None:
    want = desired("""
symbols:
  BTC_USDT: {position: {side: long, size: 1}}
  ETH_USDT: {position: {side: flat}}
  SOL_USDT: {orders: []}
""")
    read = needs(want)
    assert read.price_symbols == {"BTC_USDT"} and not read.equity
    assert read.stats_for(["BTC_USDT"]) == frozenset()


# -- rule 6: every action in full --------------------------------------------------------------


def test_rule6_every_action_carries_request_before_after_notional_risk_reason() -> None:
    want = desired("""
symbols:
  BTC_USDT:
    position: {side: long, size: 0.4, leverage: 10, margin: 2000, take_profit: 50000}
    orders: [{side: sell, price: 52000, size: 0.1, reduce_only: true}]
  SOL_USDT: {position: {side: flat}, orders: []}
""")
    live = snapshot(
        [position("BTC_USDT", "long", "0.3"), position("SOL_USDT", "short", "5")],
        [
            order("SOL_USDT", "buy", "90", "1", id="s1"),
            order("SOL_USDT", "buy", "91", "1", id="s2"),
        ],
    )
    result = plan(want, live)
    assert [a.phase for a in result.actions] == sorted(a.phase for a in result.actions)
    for action in result.actions:
        assert wire_call(action).path.startswith("/")
        assert action.reason and "\n" not in action.reason
        assert action.risk in ("reduce", "increase", "neutral")
        assert action.after is not None and action.before is not None
    trades = [a for a in result.actions if a.kind in ("place_order", "close_position")]
    assert all(a.notional > 0 for a in trades)
    assert result.summary.estimated_fees == Decimal("2.5")  # (4500 + 500) * 0.0005
    assert result.marks == {"BTC_USDT": Decimal(45000), "SOL_USDT": Decimal(100)}
    assert set(result.symbol_fingerprints) == {"BTC_USDT", "SOL_USDT"}


def test_rule6_actions_ordered_by_phase_then_symbol() -> None:
    want = desired("""
symbols:
  SOL_USDT: {position: {side: long, size: 1, leverage: 2}}
  BTC_USDT: {position: {side: long, size: 1, leverage: 2}}
""")
    live = snapshot([position("SOL_USDT", "long", "2"), position("BTC_USDT", "long", "2")])
    keys = [(a.phase, a.symbol) for a in plan(want, live).actions]
    assert keys == [  # reductions first: a lowered leverage needs the margin they free
        (Phase.REDUCE, "BTC_USDT"),
        (Phase.REDUCE, "SOL_USDT"),
        (Phase.LEVERAGE, "BTC_USDT"),
        (Phase.LEVERAGE, "SOL_USDT"),
    ]


# -- rule 7: policy -----------------------------------------------------------------------------


def test_rule7_all_violations_are_collected_and_enforce_raises() -> None:
    want = desired("""
policy:
  max_order_notional: 10000
  max_gross_notional: 20000
  allowed_symbols: [BTC_USDT, ETH_USDT]
symbols:
  BTC_USDT: {position: {side: long, size: 1}}
  ETH_USDT: {position: {side: short, size: 1}, protect: true}
  SOL_USDT: {position: {side: long, size: 1}}
""")
    live = snapshot([position("ETH_USDT", "short", "2")])
    result = plan(want, live)
    assert not result.is_empty
    text = "\n".join(result.violations)
    assert "SOL_USDT: not in policy.allowed_symbols" in text
    assert "BTC_USDT: order notional 45000 exceeds policy.max_order_notional 10000" in text
    assert "gross notional after the plan" in text
    assert "ETH_USDT: position is protected" in text
    with pytest.raises(PolicyViolation) as raised:
        enforce(result)
    assert raised.value.exit_code == 4 and len(raised.value.violations) == 4


def test_rule7_max_leverage_violation_without_the_spec_check() -> None:
    from reconciler.model.desired import DesiredState

    want = DesiredState.model_validate(
        {
            "version": 1,
            "policy": {"max_leverage": 5},
            "symbols": {"BTC_USDT": {"position": {"side": "long", "size": 1, "leverage": 10}}},
        }
    )
    assert any("policy.max_leverage" in v for v in plan(want, snapshot()).violations)


def test_rule7_unmanaged_ignore_never_touches_and_close_closes() -> None:
    text = (
        "symbols:\n  BTC_USDT: {{position: {{side: long, size: 1}}}}\npolicy: {{unmanaged: {}}}\n"
    )
    live = snapshot(
        [position("BTC_USDT", "long", "1"), position("ETH_USDT", "long", "1")],
        [order("SOL_USDT", "buy", "90", "1", id="x")],
    )
    assert plan(desired(text.format("ignore")), live).is_empty
    closing = plan(desired(text.format("close")), live)
    assert [(a.symbol, a.kind) for a in closing.actions] == [
        ("SOL_USDT", "cancel_order"),
        ("ETH_USDT", "close_position"),
    ]
    assert not closing.violations


def test_rule7_protect_allows_growth() -> None:
    want = desired("symbols:\n  BTC_USDT: {position: {side: long, size: 2}, protect: true}\n")
    assert not plan(want, snapshot([position("BTC_USDT", "long", "1")])).violations


def test_rule7_infeasible_plans_are_violations_too() -> None:
    want = desired("""
symbols:
  BTC_USDT:
    position: {side: long, size: 1, margin: 100}
    orders:
      - {side: buy, price: 50000, size: 0.1}
      - {side: buy, price: 1000, size: 0.1, reduce_only: true}
""")
    text = "\n".join(plan(want, snapshot()).violations)
    assert "below the initial requirement" in text
    assert (
        "desired.yaml:7:28: symbols.BTC_USDT.orders[0].price: buy limit @ 50000 would fill "
        "at once: at or above the mark 45000"
    ) in text
    assert "has no opposite position" in text


def test_fingerprints_hash_facts_not_their_spelling() -> None:
    def live(size: str, price: str, margin: str) -> Snapshot:
        return snapshot(
            [position("BTC_USDT", "long", size, margin=margin, id="p1")],
            [order("BTC_USDT", "buy", price, "1", id="o1")],
            equity="1000.0",
        )

    one, other = live("0.10", "44000.0", "900.50"), live("0.1", "44000", "900.5")
    assert one.symbol_fingerprint("BTC_USDT") == other.symbol_fingerprint("BTC_USDT")
    assert one.fingerprint() == other.fingerprint()
    moved = live("0.2", "44000", "900.5")
    assert moved.symbol_fingerprint("BTC_USDT") != one.symbol_fingerprint("BTC_USDT")
    assert moved.fingerprint() != one.fingerprint()
    assert one.symbol_fingerprint("SOL_USDT") == other.symbol_fingerprint("SOL_USDT")


def test_fingerprints_are_cached_per_snapshot_and_recomputed_for_a_copy() -> None:
    live = snapshot([position("BTC_USDT", "long", "0.1", id="p1")])
    before = live.symbol_fingerprint("BTC_USDT")
    assert live.symbol_fingerprint("BTC_USDT") == before
    copied = live.model_copy(update={"positions": {}})
    assert copied.symbol_fingerprint("BTC_USDT") != before
    assert copied.symbol_fingerprint("BTC_USDT") == snapshot().symbol_fingerprint("BTC_USDT")
    assert live.symbol_fingerprint("BTC_USDT") == before
