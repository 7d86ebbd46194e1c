"""Positions on the sandbox engine: adds, reductions, flips, reduce-only, margin, TP/SL,
liquidation and `/close`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from reconciler.sandbox.engine import Exchange, Rejection
from reconciler.sandbox.seed import DEMO_SYMBOLS

D = Decimal


@pytest.fixture
def exchange() -> Exchange:
    built = Exchange.with_symbols(DEMO_SYMBOLS, clock=lambda: 1_700_000_000_000)
    built.create_account("u1", "k1", "s1", ["read", "trade"], D(100_000))
    built.create_account("u2", "k2", "s2", ["read", "trade"], D(100_000))
    built.drain_events()
    return built


def trade(
    exchange: Exchange, side: str, size: str, user: str = "u1", **body: Any
) -> dict[str, Any]:
    request = {"symbol": "BTC_USDT", "side": side, "orderType": "market", "size": D(size)}
    request.update(body)
    return exchange.place_order(user, request)


def position(exchange: Exchange, user: str = "u1", symbol: str = "BTC_USDT") -> dict[str, Any]:
    [found] = exchange.positions(user, symbol)
    return found


def code_of(call: Any, *args: Any) -> str:
    with pytest.raises(Rejection) as caught:
        call(*args)
    return caught.value.code


def test_adding_uses_the_position_leverage_and_averages_the_entry(exchange: Exchange) -> None:
    trade(exchange, "buy", "1", leverage=10)
    exchange.set_prices({"BTC_USDT": D(46000)})
    added = trade(exchange, "buy", "1", leverage=20)
    assert added["leverage"] == 20  # recorded on the order; the position's leverage governs
    held = position(exchange)
    assert held["size"] == D(2)
    assert held["entryPrice"] == D(45500)
    assert held["leverage"] == 10
    assert held["margin"] == D(4500) + D(4600)
    assert held["unrealizedPnl"] == D(1000)


def test_reducing_releases_margin_pro_rata_and_realises_pnl(exchange: Exchange) -> None:
    trade(exchange, "buy", "1", leverage=10)
    exchange.set_prices({"BTC_USDT": D(47000)})
    before = exchange.account_overview("u1")
    trade(exchange, "sell", "0.25")
    held = position(exchange)
    assert held["size"] == D("0.75")
    assert held["margin"] == D(3375)
    assert held["entryPrice"] == D(45000)
    after = exchange.account_overview("u1")
    assert after["realizedPnl"] == D(500)
    fee = D(47000) * D("0.25") * D("0.0005")
    assert after["totalFees"] - before["totalFees"] == fee
    assert after["availableBalance"] - before["availableBalance"] == D(1125) + D(500) - fee
    [_, fill] = exchange.user_trades("u1", None, 1, 50, None, None)["items"]
    assert fill["realizedPnl"] == D(500)


def test_an_order_through_zero_flips_the_position(exchange: Exchange) -> None:
    trade(exchange, "buy", "1", leverage=10)
    old_id = position(exchange)["id"]
    exchange.set_prices({"BTC_USDT": D(44000)})
    trade(exchange, "sell", "1.5", leverage=5, takeProfit=D(40000), stopLoss=D(46000))
    flipped = position(exchange)
    assert flipped["id"] != old_id
    assert (flipped["side"], flipped["size"], flipped["entryPrice"]) == (
        "short",
        D("0.5"),
        D(44000),
    )
    assert flipped["leverage"] == 5
    assert flipped["margin"] == D(4400)
    assert (flipped["takeProfitPrice"], flipped["stopLossPrice"]) == (D(40000), D(46000))
    assert exchange.account_overview("u1")["realizedPnl"] == D(-1000)


def test_a_closed_position_disappears_and_a_new_one_gets_a_new_id(exchange: Exchange) -> None:
    trade(exchange, "buy", "1")
    first = position(exchange)["id"]
    trade(exchange, "sell", "1")
    assert exchange.positions("u1", None) == []
    assert exchange.account_overview("u1")["positionMargin"] == 0
    trade(exchange, "buy", "1")
    assert int(position(exchange)["id"]) > int(first)


def test_default_order_leverage_is_the_position_leverage(exchange: Exchange) -> None:
    trade(exchange, "buy", "0.1", leverage=25)
    assert trade(exchange, "buy", "0.1")["leverage"] == 25
    assert trade(exchange, "sell", "0.1", symbol="ETH_USDT", user="u2")["leverage"] == 10


def test_reduce_only_needs_an_opposite_position(exchange: Exchange) -> None:
    with pytest.raises(Rejection, match="reduce_only") as caught:
        trade(exchange, "sell", "0.1", reduce_only=True)
    assert caught.value.code == "VALIDATION_ERROR"
    trade(exchange, "buy", "0.1")
    with pytest.raises(Rejection, match="reduce_only"):
        trade(exchange, "buy", "0.1", reduce_only=True)


def test_reduce_only_is_clipped_to_the_position(exchange: Exchange) -> None:
    trade(exchange, "buy", "0.3")
    closing = trade(exchange, "sell", "1", reduce_only=True)
    assert (closing["status"], closing["filledSize"]) == ("filled", D("0.3"))
    assert exchange.positions("u1", None) == []


def test_reduce_only_needs_no_margin(exchange: Exchange) -> None:
    trade(exchange, "buy", "2", leverage=1)
    assert exchange.account_overview("u1")["availableBalance"] < 45000
    exchange.place_order(
        "u1",
        {"symbol": "BTC_USDT", "side": "sell", "orderType": "limit", "size": D(2),
         "price": D(50000), "reduce_only": True},
    )  # fmt: skip
    assert exchange.account_overview("u1")["orderMargin"] == 0


def test_resting_reduce_only_is_cancelled_when_its_position_goes(exchange: Exchange) -> None:
    trade(exchange, "buy", "1")
    resting = exchange.place_order(
        "u1",
        {"symbol": "BTC_USDT", "side": "sell", "orderType": "limit", "size": D("0.5"),
         "price": D(50000), "reduce_only": True},
    )  # fmt: skip
    exchange.close_position("u1", position(exchange)["id"])
    assert exchange.get_order("u1", resting["id"])["status"] == "cancelled"


def test_only_reduce_only_orders_go_with_their_position(exchange: Exchange) -> None:
    trade(exchange, "buy", "1")
    limit = {"symbol": "BTC_USDT", "orderType": "limit", "size": D("0.5")}
    plain = exchange.place_order("u1", {**limit, "side": "buy", "price": D(40000)})
    reducing = exchange.place_order(
        "u1", {**limit, "side": "sell", "price": D(50000), "reduce_only": True}
    )
    exchange.close_position("u1", position(exchange)["id"])
    assert exchange.get_order("u1", reducing["id"])["status"] == "cancelled"
    assert exchange.get_order("u1", plain["id"])["status"] == "open"


def test_resting_reduce_only_is_clipped_at_fill_time(exchange: Exchange) -> None:
    trade(exchange, "buy", "1")
    resting = exchange.place_order(
        "u1",
        {"symbol": "BTC_USDT", "side": "sell", "orderType": "limit", "size": D("0.8"),
         "price": D(50000), "reduce_only": True},
    )  # fmt: skip
    trade(exchange, "sell", "0.5")
    exchange.set_prices({"BTC_USDT": D(50000)})
    done = exchange.get_order("u1", resting["id"])
    assert (done["status"], done["filledSize"]) == ("filled", D("0.5"))
    assert exchange.positions("u1", None) == []


def test_set_leverage_moves_margin_to_the_new_requirement(exchange: Exchange) -> None:
    trade(exchange, "buy", "1", leverage=10)
    held = position(exchange)
    before = exchange.account_overview("u1")["availableBalance"]
    changed = exchange.set_leverage("u1", held["id"], {"leverage": 20})
    assert (changed["leverage"], changed["margin"]) == (20, D(2250))
    assert exchange.account_overview("u1")["availableBalance"] == before + D(2250)
    changed = exchange.set_leverage("u1", held["id"], {"leverage": 5})
    assert changed["margin"] == D(9000)
    assert exchange.account_overview("u1")["availableBalance"] == before - D(4500)


def test_set_leverage_refusals(exchange: Exchange) -> None:
    trade(exchange, "buy", "3", leverage=2)
    held = position(exchange)["id"]
    assert code_of(exchange.set_leverage, "u1", held, {"leverage": 1}) == "INSUFFICIENT_MARGIN"
    assert code_of(exchange.set_leverage, "u1", held, {"leverage": 0}) == "VALIDATION_ERROR"
    assert code_of(exchange.set_leverage, "u1", held, {"leverage": 126}) == "VALIDATION_ERROR"
    assert code_of(exchange.set_leverage, "u1", held, {"leverage": "5"}) == "VALIDATION_ERROR"
    assert code_of(exchange.set_leverage, "u1", held, {}) == "VALIDATION_ERROR"
    assert code_of(exchange.set_leverage, "u2", held, {"leverage": 5}) == "NOT_FOUND"
    assert code_of(exchange.set_leverage, "u1", "99", {"leverage": 5}) == "NOT_FOUND"
    body = {"leverage": 5, "userId": "u2"}
    assert code_of(exchange.set_leverage, "u1", held, body) == "FORBIDDEN_SCOPE"
    exchange.set_prices({"BTC_USDT": D(41000)})
    # At 100x the liquidation price would be far above this mark.
    assert code_of(exchange.set_leverage, "u1", held, {"leverage": 100}) == "INSUFFICIENT_MARGIN"
    assert position(exchange)["leverage"] == 2


def test_adjust_margin_adds_and_reduces(exchange: Exchange) -> None:
    trade(exchange, "buy", "1", leverage=10)
    held = position(exchange)
    liquidation = held["liquidationPrice"]
    added = exchange.adjust_margin("u1", held["id"], {"mode": "add", "amount": D(500)})
    assert added["margin"] == D(5000)
    assert added["liquidationPrice"] < liquidation
    reduced = exchange.adjust_margin("u1", held["id"], {"mode": "reduce", "amount": D(500)})
    assert reduced["margin"] == D(4500)
    assert (
        code_of(exchange.adjust_margin, "u1", held["id"], {"mode": "reduce", "amount": D("0.01")})
        == "INSUFFICIENT_MARGIN"
    )
    assert (
        code_of(exchange.adjust_margin, "u1", held["id"], {"mode": "add", "amount": D(10**6)})
        == "INSUFFICIENT_MARGIN"
    )
    for body in [
        {"mode": "add", "amount": D(0)},
        {"mode": "add", "amount": D(-5)},
        {"mode": "add", "amount": D("0.000000001")},
        {"mode": "move", "amount": D(5)},
        {"mode": "add"},
    ]:
        assert code_of(exchange.adjust_margin, "u1", held["id"], body) == "VALIDATION_ERROR"


def test_tpsl_sets_clears_and_leaves_alone(exchange: Exchange) -> None:
    trade(exchange, "buy", "1", takeProfit=D(50000))
    held = position(exchange)
    assert held["takeProfitPrice"] == D(50000)
    both = exchange.set_tpsl("u1", held["id"], {"stopLossPrice": D(44000)})
    assert (both["takeProfitPrice"], both["stopLossPrice"]) == (D(50000), D(44000))
    cleared = exchange.set_tpsl("u1", held["id"], {"takeProfitPrice": None})
    assert (cleared["takeProfitPrice"], cleared["stopLossPrice"]) == (None, D(44000))
    unchanged = exchange.set_tpsl("u1", held["id"], {})
    assert unchanged["stopLossPrice"] == D(44000)
    for body in [
        {"takeProfitPrice": D(43000)},
        {"takeProfitPrice": D(-1)},
        {"takeProfitPrice": D("50000.01")},
        {"takeProfit": D(50000)},
    ]:
        assert code_of(exchange.set_tpsl, "u1", held["id"], body) == "VALIDATION_ERROR"


def test_tpsl_order_for_a_short_must_be_below(exchange: Exchange) -> None:
    trade(exchange, "sell", "1")
    held = position(exchange)["id"]
    body = {"takeProfitPrice": D(46000), "stopLossPrice": D(44000)}
    assert code_of(exchange.set_tpsl, "u1", held, body) == "VALIDATION_ERROR"
    exchange.set_tpsl("u1", held, {"takeProfitPrice": D(44000), "stopLossPrice": D(46000)})


def test_take_profit_closes_a_long_at_the_mark(exchange: Exchange) -> None:
    trade(exchange, "buy", "1", takeProfit=D(46000), stopLoss=D(44000))
    held = position(exchange)["id"]
    exchange.set_prices({"BTC_USDT": D("45999.9")})
    assert exchange.positions("u1", None) != []
    result = exchange.set_prices({"BTC_USDT": D(46100)})
    assert result["triggeredPositions"] == [held]
    assert exchange.positions("u1", None) == []
    overview = exchange.account_overview("u1")
    assert overview["realizedPnl"] == D(1100)
    assert overview["totalFees"] == D("22.5") + D("23.05")
    closing = exchange.user_trades("u1", None, 1, 50, None, None)["items"][-1]
    assert (closing["side"], closing["price"], closing["liquidity"]) == ("sell", D(46100), "taker")
    assert exchange.get_order("u1", closing["orderId"])["reduce_only"] is True


def test_stop_loss_closes_a_short(exchange: Exchange) -> None:
    trade(exchange, "sell", "1", stopLoss=D(46000))
    exchange.set_prices({"BTC_USDT": D(46000)})
    assert exchange.positions("u1", None) == []
    assert exchange.account_overview("u1")["realizedPnl"] == D(-1000)


def test_liquidation_price_formula(exchange: Exchange) -> None:
    trade(exchange, "buy", "1", leverage=10)
    trade(exchange, "sell", "2", leverage=20, symbol="ETH_USDT")
    # long: 45000 - (4500 - 0.005*45000) / 1; short: 2500 + (250 - 0.005*5000) / 2
    assert position(exchange)["liquidationPrice"] == D(40725)
    assert position(exchange, symbol="ETH_USDT")["liquidationPrice"] == D("2612.5")


def test_liquidation_loses_the_whole_margin(exchange: Exchange) -> None:
    trade(exchange, "buy", "1", leverage=10)
    held = position(exchange)["id"]
    resting = exchange.place_order(
        "u1",
        {"symbol": "BTC_USDT", "side": "sell", "orderType": "limit", "size": D(1),
         "price": D(60000), "reduce_only": True},
    )  # fmt: skip
    exchange.set_prices({"BTC_USDT": D(40726)})
    assert exchange.positions("u1", None) != []
    exchange.drain_events()
    result = exchange.set_prices({"BTC_USDT": D(40725)})
    assert result["liquidatedPositions"] == [held]
    assert exchange.positions("u1", None) == []
    overview = exchange.account_overview("u1")
    assert overview["realizedPnl"] == D(-4500)
    assert overview["positionMargin"] == 0
    history = exchange.balance_history("u1", 1)
    assert (history[-1]["type"], history[-1]["amount"]) == ("liquidation", D(-4500))
    assert history[-1]["balance"] == overview["walletBalance"]
    assert exchange.get_order("u1", resting["id"])["status"] == "cancelled"
    closed = [p for e, _, p in exchange.drain_events() if e == "positionUpdate"]
    assert closed[-1]["size"] == 0


def test_short_liquidation(exchange: Exchange) -> None:
    trade(exchange, "sell", "1", leverage=50)
    liquidation = position(exchange)["liquidationPrice"]
    assert liquidation == D(45000) + D(900) - D(225)
    exchange.set_prices({"BTC_USDT": liquidation + 1})
    assert exchange.positions("u1", None) == []


def test_close_returns_the_filled_closing_order(exchange: Exchange) -> None:
    trade(exchange, "sell", "0.5", leverage=5)
    held = position(exchange)["id"]
    exchange.drain_events()
    closing = exchange.close_position("u1", held)
    assert closing["status"] == "filled"
    assert (closing["side"], closing["size"], closing["filledSize"]) == ("buy", D("0.5"), D("0.5"))
    assert closing["orderType"] == "market"
    assert exchange.positions("u1", None) == []
    events = exchange.drain_events()
    updates = [p for e, _, p in events if e == "positionUpdate"]
    assert updates[-1]["id"] == held and updates[-1]["size"] == 0
    assert code_of(exchange.close_position, "u1", held) == "NOT_FOUND"
    assert code_of(exchange.close_position, "u2", held) == "NOT_FOUND"


def test_positions_filter_by_symbol(exchange: Exchange) -> None:
    trade(exchange, "buy", "0.1")
    trade(exchange, "buy", "1", symbol="ETH_USDT")
    assert [p["symbol"] for p in exchange.positions("u1", None)] == ["BTC_USDT", "ETH_USDT"]
    assert [p["symbol"] for p in exchange.positions("u1", "ETH_USDT")] == ["ETH_USDT"]
    assert exchange.positions("u2", None) == []
    assert code_of(exchange.positions, "u1", "NOPE") == "VALIDATION_ERROR"
