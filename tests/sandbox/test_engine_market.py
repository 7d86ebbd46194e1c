"""Public market data and the control calls of the sandbox engine."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from reconciler.sandbox.engine import Exchange, Rejection
from reconciler.sandbox.seed import DEMO_SYMBOLS

D = Decimal
NOW = 1_700_000_123_456


@pytest.fixture
def exchange() -> Exchange:
    built = Exchange.with_symbols(DEMO_SYMBOLS, clock=lambda: NOW)
    built.create_account("u1", "k1", "s1", ["read", "trade"], D(100_000))
    return built


def test_supported_symbols_carry_the_documented_fields(exchange: Exchange) -> None:
    symbols = exchange.supported_symbols()
    assert [s["symbol"] for s in symbols][:3] == ["BTC_USDT", "ETH_USDT", "SOL_USDT"]
    assert len(symbols) >= 8
    assert symbols[0] == {
        "symbol": "BTC_USDT",
        "baseAsset": "BTC",
        "quoteAsset": "USDT",
        "tickSize": D("0.1"),
        "stepSize": D("0.001"),
        "minSize": D("0.001"),
        "maxLeverage": 125,
        "status": "trading",
    }


def test_market_stats_are_plausible_and_deterministic(exchange: Exchange) -> None:
    stats = exchange.market_stats("BTC_USDT")
    assert isinstance(stats, dict)
    assert set(stats) == {
        "symbol", "lastPrice", "markPrice", "high24h", "low24h", "volume24h", "change24h",
        "fundingRate", "nextFundingTime",
    }  # fmt: skip
    assert stats["markPrice"] == stats["lastPrice"] == D(45000)
    assert stats["low24h"] <= stats["lastPrice"] <= stats["high24h"]
    assert stats["volume24h"] > 0
    assert abs(stats["change24h"]) < D("0.5")
    assert abs(stats["fundingRate"]) < D("0.001")
    assert stats["nextFundingTime"] > NOW
    assert exchange.market_stats("BTC_USDT") == stats
    everything = exchange.market_stats(None)
    assert isinstance(everything, list)
    assert [s["symbol"] for s in everything] == [s["symbol"] for s in DEMO_SYMBOLS]


def test_last_price_follows_trades_and_marks(exchange: Exchange) -> None:
    exchange.config.slippage_bps = D(10)
    exchange.place_order(
        "u1", {"symbol": "BTC_USDT", "side": "buy", "orderType": "market", "size": D("0.1")}
    )
    stats = exchange.market_stats("BTC_USDT")
    assert isinstance(stats, dict)
    assert (stats["lastPrice"], stats["markPrice"]) == (D(45045), D(45000))
    exchange.set_prices({"BTC_USDT": D(46000)})
    stats = exchange.market_stats("BTC_USDT")
    assert isinstance(stats, dict)
    assert stats["lastPrice"] == stats["markPrice"] == D(46000)


def test_unknown_symbols_are_not_found(exchange: Exchange) -> None:
    for call, args in [
        (exchange.market_stats, ("NOPE",)),
        (exchange.orderbook, ("NOPE", 10)),
        (exchange.candles, ("NOPE", "1m", 10)),
        (exchange.set_prices, ({"NOPE": D(1)},)),
    ]:
        with pytest.raises(Rejection) as caught:
            call(*args)
        assert (caught.value.code, caught.value.status) == ("NOT_FOUND", 404)


def test_orderbook_merges_resting_orders_into_a_synthetic_ladder(exchange: Exchange) -> None:
    for price in (D(44000), D(44000), D(43000)):
        exchange.place_order(
            "u1",
            {"symbol": "BTC_USDT", "side": "buy", "orderType": "limit", "size": D("0.5"),
             "price": price},
        )  # fmt: skip
    book = exchange.orderbook("BTC_USDT", 500)
    assert book["symbol"] == "BTC_USDT" and book["timestamp"] == NOW
    bids = dict((price, size) for price, size in book["bids"])
    assert bids[D(44000)] == D(1)
    assert bids[D(43000)] == D("0.5")
    assert [p for p, _ in book["bids"]] == sorted((p for p, _ in book["bids"]), reverse=True)
    assert [p for p, _ in book["asks"]] == sorted(p for p, _ in book["asks"])
    assert book["bids"][0][0] < D(45000) < book["asks"][0][0]
    assert len(book["asks"]) == 500
    small = exchange.orderbook("BTC_USDT", 3)
    assert len(small["bids"]) == len(small["asks"]) == 3
    assert exchange.orderbook("BTC_USDT", 3) == small


@pytest.mark.parametrize("depth", [0, 501])
def test_orderbook_depth_is_bounded(exchange: Exchange, depth: int) -> None:
    with pytest.raises(Rejection, match="depth"):
        exchange.orderbook("BTC_USDT", depth)


@pytest.mark.parametrize("interval", ["1m", "5m", "15m", "1h", "4h", "1d"])
def test_candles_end_at_the_mark(exchange: Exchange, interval: str) -> None:
    series = exchange.candles("ETH_USDT", interval, 50)
    assert len(series) == 50
    times = [candle["openTime"] for candle in series]
    assert times == sorted(times)
    assert series[-1]["openTime"] <= NOW < series[-1]["openTime"] + (times[1] - times[0])
    assert series[-1]["close"] == D(2500)
    for candle in series:
        assert candle["low"] <= min(candle["open"], candle["close"])
        assert candle["high"] >= max(candle["open"], candle["close"])
        assert candle["volume"] > 0
    for before, after in itertools.pairwise(series):
        assert after["open"] == before["close"]
    assert exchange.candles("ETH_USDT", interval, 50) == series


@pytest.mark.parametrize(("interval", "limit"), [("2m", 10), ("1m", 0), ("1m", 1001)])
def test_candle_queries_are_validated(exchange: Exchange, interval: str, limit: int) -> None:
    with pytest.raises(Rejection) as caught:
        exchange.candles("BTC_USDT", interval, limit)
    assert caught.value.code == "VALIDATION_ERROR"


def test_set_prices_validates_prices(exchange: Exchange) -> None:
    for price in (D(0), D(-1), "45000", True):
        with pytest.raises(Rejection) as caught:
            exchange.set_prices({"BTC_USDT": price})  # type: ignore[dict-item]
        assert caught.value.code == "VALIDATION_ERROR"
    result = exchange.set_prices({"BTC_USDT": D(46000), "ETH_USDT": 2600})
    assert result["marks"] == {"BTC_USDT": D(46000), "ETH_USDT": D(2600)}


def test_create_account_and_keys(exchange: Exchange) -> None:
    created = exchange.create_account("u9", "k9", "s9", ["read"], D("123.45"))
    assert created["userId"] == "u9" and created["scopes"] == ["read"]
    assert created["account"]["walletBalance"] == D("123.45")
    key = exchange.lookup_key("k9")
    assert key is not None
    assert (key.user_id, key.secret, key.scopes) == ("u9", "s9", frozenset({"read"}))
    assert exchange.lookup_key("missing") is None
    exchange.add_api_key("u9", "k9-trade", "s", ["read", "trade", "withdraw"])
    trade_key = exchange.lookup_key("k9-trade")
    assert trade_key is not None and trade_key.scopes == {"read", "trade", "withdraw"}
    for args in [
        ("u9", "other", "s", ["read"], D(0)),
        ("u10", "k9", "s", ["read"], D(0)),
        ("u11", "k11", "s", ["admin"], D(0)),
        ("u12", "k12", "s", ["read"], D(-1)),
        ("", "k13", "s", ["read"], D(0)),
    ]:
        with pytest.raises(Rejection) as caught:
            exchange.create_account(*args)
        assert caught.value.code == "VALIDATION_ERROR"
    assert exchange.lookup_key("k10") is None


def test_deposit_is_a_ledger_entry(exchange: Exchange) -> None:
    overview = exchange.deposit("u1", D(50))
    assert overview["deposits"] == D(100_050)
    entries = exchange.balance_history("u1", 1)
    assert [(e["type"], e["amount"], e["balance"]) for e in entries] == [
        ("deposit", D(100_000), D(100_000)),
        ("deposit", D(50), D(100_050)),
    ]


def test_balance_history_days_are_bounded(exchange: Exchange) -> None:
    for days in (0, 366):
        with pytest.raises(Rejection):
            exchange.balance_history("u1", days)
    assert len(exchange.balance_history("u1", 365)) == 1


def test_add_symbols_validates_and_replaces(exchange: Exchange) -> None:
    [added] = exchange.add_symbols(
        [{"symbol": "PEPE_USDT", "tickSize": D("0.0000001"), "stepSize": D(1000),
          "minSize": D(1000), "maxLeverage": 20, "markPrice": D("0.0000012")}]
    )  # fmt: skip
    assert (added["baseAsset"], added["quoteAsset"], added["status"]) == ("PEPE", "USDT", "trading")
    replaced = dict(DEMO_SYMBOLS[0], maxLeverage=50, markPrice=D(50000))
    exchange.add_symbols([replaced])
    assert exchange.supported_symbols()[0]["maxLeverage"] == 50
    assert exchange.positions("u1", None) == []
    bad_specs = [
        {"symbol": "X_USDT"},
        dict(DEMO_SYMBOLS[0], maxLeverage=126),
        dict(DEMO_SYMBOLS[0], minSize=D("0.0015")),
        dict(DEMO_SYMBOLS[0], status="closed"),
        dict(DEMO_SYMBOLS[0], extra=1),
        dict(DEMO_SYMBOLS[0], markPrice=D(0)),
    ]
    for spec in bad_specs:
        with pytest.raises(Rejection) as caught:
            exchange.add_symbols([spec])
        assert caught.value.code == "VALIDATION_ERROR"
