"""The prefix check: every state a plan passes through, judged against its start and end.

Each test builds the steps by hand, so the check is tested on plans the planner would not
make (the old leverage-then-margin order, a placement before its cancel), then on plans the
planner does make.
"""

from __future__ import annotations

from decimal import Decimal

from wire import intent_of, wire_call

from reconciler.levret.requests import request_for
from reconciler.model.plan import Action, Phase, Request
from reconciler.plan import plan
from reconciler.plan.exposure import Resting
from reconciler.plan.liquidation import distance_percent, maintenance_rate
from reconciler.plan.model import Holding
from reconciler.plan.prefix import AccountState, Limits, Step, prefix_violations
from tests.planner_support import desired, order, position, snapshot

MARK = Decimal(45000)
RATE = Decimal("0.005")


def _holding(size: str, leverage: int, margin: str, *, sl: str | None = None) -> Holding:
    return Holding(
        id="101",
        side="long",
        size=Decimal(size),
        entry=MARK,
        leverage=leverage,
        margin=Decimal(margin),
        take_profit=None,
        stop_loss=Decimal(sl) if sl is not None else None,
    )


def _action(kind: str, reason: str, body: dict[str, object] | None = None) -> Action:
    path = {"place_order": "/order", "cancel_order": "/order/cancel"}.get(
        kind, f"/positions/101/{kind.split('_')[-1]}"
    )
    return Action(
        intent=intent_of(Request(method="POST", path=path, body=body), "BTC_USDT"),
        phase=Phase.MARGIN,
        reason=reason,
    )


def _limits(**extra: object) -> Limits:
    return Limits(marks={"BTC_USDT": MARK}, maintenance_rate=RATE, **extra)  # type: ignore[arg-type]


def test_leverage_raise_before_its_top_up_is_refused_unless_the_top_up_completes_the_step() -> None:
    start = AccountState({"BTC_USDT": _holding("1", 10, "4500")})
    stripped = _holding("1", 20, "2250")
    topped = _holding("1", 20, "4500")
    steps = [
        Step(_action("set_leverage", "leverage 10x -> 20x"), stripped),
        Step(_action("adjust_margin", "add margin 2250"), topped),
    ]
    (problem,) = prefix_violations(start, steps, _limits())
    assert problem.startswith("step 1 (BTC_USDT leverage 10x -> 20x): BTC_USDT would be 4.50%")
    assert "closer than at the start and at the end (9.50% at the nearer)" in problem
    paired = [steps[0], Step(steps[1].action, topped, completes_previous=True)]
    assert prefix_violations(start, paired, _limits()) == []


def test_a_resting_order_placed_before_the_cancel_it_replaces_is_above_both_ends() -> None:
    resting = {"BTC_USDT": {"o1": Resting("buy", Decimal(44000), Decimal(1), False)}}
    start = AccountState({"BTC_USDT": None}, resting)
    place = _action(
        "place_order",
        "place buy 1 @ 43000",
        {"side": "buy", "orderType": "limit", "price": 43000, "size": 1},
    )
    cancel = _action("cancel_order", "cancel o1", {"orderId": "o1"})
    problems = prefix_violations(start, [Step(place, None), Step(cancel, None)], _limits())
    assert problems == [
        "step 1 (BTC_USDT place buy 1 @ 43000): worst-case gross notional 87000 would be "
        "above both the start's 44000 and the end's 43000"
    ]
    assert prefix_violations(start, [Step(cancel, None), Step(place, None)], _limits()) == []


def test_a_grown_position_without_the_files_stop_loss_is_unprotected() -> None:
    start = AccountState({"BTC_USDT": _holding("1", 10, "4500", sl="40000")})
    limits = _limits(protection={"BTC_USDT": (None, Decimal(40000))})
    bare = Step(_action("place_order", "increase long 1 -> 2"), _holding("2", 10, "9000"))
    (problem,) = prefix_violations(start, [bare], limits)
    assert "opened or grew without the file's stop_loss 40000" in problem
    carried = Step(bare.action, _holding("2", 10, "9000", sl="40000"))
    assert prefix_violations(start, [carried], limits) == []


def test_the_liquidation_floor_refuses_a_margin_cut_but_never_a_reduction_already_closer() -> None:
    start = AccountState({"BTC_USDT": _holding("1", 10, "4500")})
    cut = Step(_action("adjust_margin", "reduce margin 2000"), _holding("1", 10, "2500"))
    limits = _limits(min_distance=Decimal(8))
    (problem,) = prefix_violations(start, [cut], limits)
    assert "5.06% from its liquidation price, under policy.min_liquidation_distance 8%" in problem
    # already 4.5 % away at the start; halving the size pro rata keeps it there: allowed
    close_start = AccountState({"BTC_USDT": _holding("1", 20, "2250")})
    halve = Step(_action("place_order", "reduce long 1 -> 0.5"), _holding("0.5", 20, "1125"))
    assert prefix_violations(close_start, [halve], limits) == []


def test_maintenance_rate_is_read_back_from_the_accounts_own_liquidation_prices() -> None:
    live = position("BTC_USDT", "long", "1", leverage=10, margin="4500")
    live = live.model_copy(update={"liquidation_price": Decimal("40950")})  # 1 % maintenance
    rate = maintenance_rate(snapshot([live]))
    assert rate == Decimal("0.0100")
    assert maintenance_rate(snapshot()) == Decimal("0.005")  # nothing to read it from
    assert distance_percent(Holding.from_position(live), MARK, rate) == Decimal("9.00")


def test_planner_tops_up_a_leverage_raise_at_once_and_says_how_it_would_undo_it() -> None:
    want = desired(
        "symbols:\n  BTC_USDT:\n    position: {side: long, size: 1, leverage: 20, margin: 4500}\n"
    )
    live = snapshot([position("BTC_USDT", "long", "1", leverage=10, margin="4500", id="101")])
    result = plan(want, live)
    assert result.violations == ()
    leverage, top_up = result.actions
    assert (leverage.kind, leverage.phase) == ("set_leverage", Phase.LEVERAGE)
    assert (top_up.kind, top_up.phase) == ("adjust_margin", Phase.LEVERAGE)
    assert wire_call(top_up).body == {"mode": "add", "amount": Decimal(2250)}
    assert tuple(request_for(undo, user_id="demo") for undo in top_up.on_failure) == (
        Request(method="POST", path="/positions/101/leverage", body={"leverage": 10}),
    )  # 4500 was exactly the requirement at 10x: nothing above it to give back


def test_planner_refuses_a_margin_cut_under_the_floor_naming_the_step() -> None:
    want = desired("""
policy: {min_liquidation_distance: 8}
symbols:
  BTC_USDT:
    position: {side: long, size: 1, leverage: 20, margin: 2500}
""")
    live = snapshot([position("BTC_USDT", "long", "1", leverage=20, margin="4500", id="101")])
    (problem,) = plan(want, live).violations
    assert problem.startswith("step 1 (BTC_USDT reduce margin 2000): BTC_USDT would be 5.06%")
    assert "policy.min_liquidation_distance 8%" in problem


def test_planner_reduces_before_it_lowers_leverage_and_increases_last() -> None:
    want = desired("""
symbols:
  BTC_USDT: {position: {side: long, size: 0.5, leverage: 5}}
  ETH_USDT: {position: {side: long, size: 4, leverage: 10, stop_loss: 2000}}
""")
    live = snapshot(
        [
            position("BTC_USDT", "long", "1", leverage=10),
            position("ETH_USDT", "long", "2", leverage=10, sl="2000"),
        ]
    )
    result = plan(want, live)
    assert [(a.phase, a.symbol, a.kind) for a in result.actions] == [
        (Phase.REDUCE, "BTC_USDT", "place_order"),
        (Phase.LEVERAGE, "BTC_USDT", "set_leverage"),
        (Phase.INCREASE, "ETH_USDT", "place_order"),
    ]
    increase = wire_call(result.actions[-1]).body
    assert increase is not None and increase["stopLoss"] == Decimal(2000)  # protected at once


def test_an_open_that_offsets_resting_orders_runs_before_the_rises_of_its_phase() -> None:
    """ETH long 0.1 lowers ETH's worst case (its resting sell could only open a short), BTC's
    open raises the account's: run concurrently, BTC might land first, above both ends."""
    want = desired("""
symbols:
  BTC_USDT: {position: {side: long, size: 0.01, leverage: 2}}
  ETH_USDT: {position: {side: long, size: 0.1, leverage: 2}}
""")
    live = snapshot([], [order("ETH_USDT", "sell", "2625", "0.1", id="o1", leverage=2)])
    result = plan(want, live)
    assert result.violations == ()
    assert [(a.symbol, a.phase, a.wave) for a in result.actions] == [
        ("ETH_USDT", Phase.INCREASE, 0),
        ("BTC_USDT", Phase.INCREASE, 1),
    ]


def test_calls_of_one_wave_are_judged_in_their_worst_interleaving() -> None:
    """BTC places and cancels an order; ETH places one. Listed one after the other, the
    worst state is one order resting; run concurrently, both may rest at once."""
    start = AccountState({"BTC_USDT": None, "ETH_USDT": None})

    def limit(symbol: str, kind: str, body: dict[str, object]) -> Action:
        path = "/order/cancel" if kind == "cancel_order" else "/order"
        return Action(
            intent=intent_of(Request(method="POST", path=path, body=body), symbol),
            phase=Phase.PLACE_ORDERS,
            reason=f"{kind} on {symbol}",
        )

    buy = {"side": "buy", "orderType": "limit", "price": 40000, "size": 1}
    steps = [
        Step(limit("BTC_USDT", "place_order", buy), None),
        Step(limit("BTC_USDT", "cancel_order", {"orderId": "planned-1"}), None),
        Step(limit("ETH_USDT", "place_order", {**buy, "price": 2000, "size": 20}), None),
    ]
    (problem,) = prefix_violations(start, steps, _limits())
    assert problem == (
        "step 3 (ETH_USDT place_order on ETH_USDT): worst-case gross notional 80000 would be "
        "above both the start's 0 and the end's 40000"
    )


def test_the_undo_of_a_raise_gives_back_the_margin_held_above_the_old_requirement() -> None:
    want = desired(
        "symbols:\n  BTC_USDT:\n    position: {side: long, size: 0.2, leverage: 20, margin: 1400}\n"
    )
    live = snapshot([position("BTC_USDT", "long", "0.2", leverage=10, margin="1400", id="101")])
    _, top_up = plan(want, live).actions
    assert tuple(request_for(undo, user_id="demo") for undo in top_up.on_failure) == (
        Request(method="POST", path="/positions/101/leverage", body={"leverage": 10}),
        Request(method="POST", path="/positions/101/margin", body={"mode": "add", "amount": 500}),
    )  # back at 10x the margin is the requirement, 900; it held 1400


def test_a_lowering_needs_no_undo_it_already_left_more_margin() -> None:
    want = desired(
        "symbols:\n  BTC_USDT:\n    position: {side: long, size: 0.2, leverage: 10, margin: 1400}\n"
    )
    live = snapshot([position("BTC_USDT", "long", "0.2", leverage=20, margin="650", id="101")])
    leverage, top_up = plan(want, live).actions
    assert leverage.kind == "set_leverage" and top_up.kind == "adjust_margin"
    assert top_up.on_failure == ()  # raising back to 20x would strip it below the start


def test_removing_a_stop_is_a_call_that_adds_risk() -> None:
    want = desired(
        "symbols:\n  BTC_USDT:\n    position: {side: long, size: 0.2, stop_loss: null}\n"
    )
    live = snapshot([position("BTC_USDT", "long", "0.2", sl="40000", id="101")])
    (clear,) = plan(want, live).actions
    assert clear.kind == "set_tpsl" and clear.risk == "increase"
