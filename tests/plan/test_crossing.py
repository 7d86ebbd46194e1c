"""Crossed triggers and crossing orders: the planner's refusals, against mark and book top."""

from __future__ import annotations

from decimal import Decimal

from planner_support import desired, order, position, snapshot

from reconciler.model.snapshot import BookTop
from reconciler.plan import plan


def _violations(text: str, **books: tuple[str | None, str | None]) -> list[str]:
    resting = [order("BTC_USDT", "buy", "42000", "0.1", id="o1")]
    live = snapshot([position("BTC_USDT", "long", "0.2", leverage=10)], resting)
    tops = {
        symbol: BookTop(
            bid=Decimal(bid) if bid is not None else None,
            ask=Decimal(ask) if ask is not None else None,
        )
        for symbol, (bid, ask) in books.items()
    }
    return list(plan(desired(text), live.model_copy(update={"books": tops})).violations)


def test_a_buy_at_the_best_ask_below_the_mark_is_refused() -> None:
    text = "symbols:\n  SOL_USDT:\n    orders: [{side: buy, price: 99.5, size: 1}]\n"
    assert _violations(text) == []  # below the mark 100, no book: rests
    (problem,) = _violations(text, SOL_USDT=("99", "99.5"))
    assert problem.startswith("desired.yaml:4:33: symbols.SOL_USDT.orders[0].price: ")
    assert "at or above the best ask 99.5" in problem


def test_a_sell_at_the_best_bid_is_refused_and_taker_allows_it() -> None:
    text = "symbols:\n  SOL_USDT:\n    orders: [{side: sell, price: 100.5, size: 1}]\n"
    (problem,) = _violations(text, SOL_USDT=("100.5", "101"))
    assert "at or below the best bid 100.5" in problem
    taker = text.replace("size: 1}", "size: 1, taker: true}")
    assert _violations(taker, SOL_USDT=("100.5", "101")) == []


def test_an_order_already_resting_is_not_judged_again() -> None:
    text = "symbols:\n  BTC_USDT:\n    orders: [{side: buy, price: 42000, size: 0.1}]\n"
    assert _violations(text, BTC_USDT=("41000", "41500")) == []  # placed: crosses the ask
    assert len(_violations(text.replace("42000", "41600"), BTC_USDT=("41000", "41500"))) == 1


def test_triggers_are_judged_by_side() -> None:
    base = "symbols:\n  BTC_USDT:\n    position: {{side: {}, size: 0.2, leverage: 10, {}}}\n"
    crossed = [
        ("long", "take_profit: 45000"),
        ("long", "stop_loss: 45000"),
        ("short", "take_profit: 45100"),
        ("short", "stop_loss: 44900"),
    ]
    for side, field in crossed:
        (problem,) = [v for v in _violations(base.format(side, field)) if "position." in v]
        assert f"symbols.BTC_USDT.position.{field.split(':')[0]}: " in problem
    fine = [("long", "take_profit: 45100"), ("short", "stop_loss: 45100")]
    for side, field in fine:
        assert not [v for v in _violations(base.format(side, field)) if "position." in v]
