"""Storage of the sandbox engine: the demo seed, restarts, reset, events, concurrency."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import pytest

from reconciler.sandbox.engine import Exchange, Rejection
from reconciler.sandbox.seed import DEMO_SYMBOLS, seed_demo
from reconciler.sandbox.store import Store

D = Decimal


def test_demo_seed(tmp_path: Path) -> None:
    exchange = Exchange.open(tmp_path / "demo.db")
    symbols = [s["symbol"] for s in exchange.supported_symbols()]
    assert len(symbols) >= 8 and {"BTC_USDT", "ETH_USDT", "SOL_USDT"} <= set(symbols)
    trading = exchange.lookup_key("demo-key")
    reading = exchange.lookup_key("demo-read")
    assert trading is not None and reading is not None
    assert (trading.user_id, trading.secret, trading.scopes) == (
        "demo",
        "demo-secret",
        frozenset({"read", "trade"}),
    )
    assert (reading.user_id, reading.secret, reading.scopes) == (
        "demo",
        "demo-read-secret",
        frozenset({"read"}),
    )
    positions = {p["symbol"]: p for p in exchange.positions("demo", None)}
    assert (positions["BTC_USDT"]["side"], positions["BTC_USDT"]["size"]) == ("long", D("0.2"))
    assert positions["BTC_USDT"]["leverage"] == 10
    assert (positions["ETH_USDT"]["side"], positions["ETH_USDT"]["size"]) == ("short", D(3))
    assert positions["ETH_USDT"]["leverage"] == 5
    resting = exchange.open_orders("demo", None, 1, 50, None, None)["items"]
    assert [(o["symbol"], o["price"], o["size"]) for o in resting] == [
        ("BTC_USDT", D(42000), D("0.1")),
        ("SOL_USDT", D(90), D(10)),
        ("SOL_USDT", D(85), D(10)),
    ]
    overview = exchange.account_overview("demo")
    assert overview["deposits"] == D(100_000)
    assert overview["walletBalance"] == overview["deposits"] - overview["totalFees"]
    assert overview["positionMargin"] == D(900) + D(1500)
    assert overview["orderMargin"] == D(420) + D(180) + D(170)


def test_seeding_is_deterministic_apart_from_time() -> None:
    def state(exchange: Exchange) -> list[object]:
        def strip(items: list[dict[str, object]]) -> list[dict[str, object]]:
            return [{k: v for k, v in item.items() if k not in {"createdAt", "updatedAt"}}
                    for item in items]  # fmt: skip

        return [
            strip(exchange.positions("demo", None)),
            strip(exchange.open_orders("demo", None, 1, 100, None, None)["items"]),
            exchange.account_overview("demo"),
            exchange.supported_symbols(),
        ]

    assert state(Exchange.open(":memory:")) == state(Exchange.open(":memory:", clock=lambda: 5))


def test_a_restart_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.db"
    first = Exchange.open(path)
    first.place_order(
        "demo", {"symbol": "SOL_USDT", "side": "sell", "orderType": "market", "size": D(5)}
    )
    first.set_prices({"BTC_USDT": D(46000)})
    snapshot = (
        first.positions("demo", None),
        first.open_orders("demo", None, 1, 100, None, None),
        first.account_overview("demo"),
        first.user_trades("demo", None, 1, 100, None, None),
        first.balance_history("demo", 7),
        first.market_stats(None),
    )
    first.store.close()
    second = Exchange.open(path, clock=first.clock)
    again = (
        second.positions("demo", None),
        second.open_orders("demo", None, 1, 100, None, None),
        second.account_overview("demo"),
        second.user_trades("demo", None, 1, 100, None, None),
        second.balance_history("demo", 7),
        second.market_stats(None),
    )
    assert again[:5] == snapshot[:5]
    assert [s["markPrice"] for s in again[5]] == [s["markPrice"] for s in snapshot[5]]
    # A new position after the restart does not reuse an id.
    ids = {p["id"] for p in again[0]}
    placed = second.place_order(
        "demo", {"symbol": "XRP_USDT", "side": "buy", "orderType": "market", "size": D(10)}
    )
    assert int(placed["id"]) > max(int(o["id"]) for o in again[1]["items"])
    new = [p for p in second.positions("demo", None) if p["id"] not in ids]
    assert int(new[0]["id"]) > max(int(i) for i in ids)


def test_a_database_of_schema_1_is_migrated_with_its_order_margin(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    first = Exchange.open(path)
    expected = first.account_overview("demo")
    assert expected["orderMargin"] > 0
    with first.store.transaction() as connection:  # what a sandbox of schema 1 wrote
        connection.execute("ALTER TABLE accounts DROP COLUMN order_margin")
        connection.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    first.store.close()
    second = Exchange.open(path, clock=first.clock)
    assert second.store.get_meta("schema_version") == "2"
    assert second.account_overview("demo") == expected
    second.cancel_all("demo", {})
    assert second.account_overview("demo")["orderMargin"] == 0


def test_reset_wipes_and_reseeds_without_reusing_ids() -> None:
    exchange = Exchange.open(":memory:")
    exchange.create_account("u1", "k1", "s1", ["read", "trade"], D(1000))
    exchange.config.taker_fee = D("0.01")
    old_ids = {o["id"] for o in exchange.open_orders("demo", None, 1, 100, None, None)["items"]}
    exchange.reset()
    assert exchange.lookup_key("k1") is None
    assert exchange.config.taker_fee == D("0.0005")
    fresh = exchange.open_orders("demo", None, 1, 100, None, None)["items"]
    assert len(fresh) == 3
    assert not old_ids & {o["id"] for o in fresh}
    assert exchange.account_overview("demo")["deposits"] == D(100_000)


def test_reset_of_a_test_exchange_reseeds_only_its_symbols() -> None:
    exchange = Exchange.with_symbols(DEMO_SYMBOLS[:2])
    exchange.create_account("u1", "k1", "s1", ["read"], D(1))
    exchange.reset()
    assert [s["symbol"] for s in exchange.supported_symbols()] == ["BTC_USDT", "ETH_USDT"]
    assert exchange.lookup_key("k1") is None
    assert exchange.lookup_key("demo-key") is None


def test_events_are_queued_by_committed_changes_only() -> None:
    exchange = Exchange.with_symbols(DEMO_SYMBOLS)
    exchange.create_account("u1", "k1", "s1", ["read", "trade"], D(1000))
    exchange.drain_events()
    placed = exchange.place_order(
        "u1", {"symbol": "BTC_USDT", "side": "buy", "orderType": "market", "size": D("0.01")}
    )
    events = exchange.drain_events()
    kinds = [(event, user) for event, user, _ in events]
    assert kinds == [
        ("positionUpdate", "u1"),
        ("orderUpdate", "u1"),
        ("accountData", "u1"),
        ("marketData", None),
    ]
    assert events[1][2] == placed
    assert events[2][2] == exchange.account_overview("u1")
    assert exchange.drain_events() == []
    with pytest.raises(Rejection):
        exchange.place_order(
            "u1", {"symbol": "BTC_USDT", "side": "buy", "orderType": "market", "size": D(10)}
        )
    assert exchange.drain_events() == []
    exchange.set_prices({"ETH_USDT": D(2600)})
    assert [(e, u) for e, u, _ in exchange.drain_events()] == [("marketData", None)]
    exchange.set_prices({"BTC_USDT": D(46000)})
    moved = exchange.drain_events()
    assert [e for e, _, _ in moved] == ["positionUpdate", "accountData", "marketData"]
    assert moved[0][2]["markPrice"] == D(46000)
    assert exchange.account_overview("u1") == exchange.account_overview("u1")


def test_an_exchange_without_a_stream_queues_no_events_and_trades_the_same() -> None:
    def clock() -> int:
        return 1_735_732_800_000

    quiet = Exchange.with_symbols(DEMO_SYMBOLS, clock, stream_events=False)
    loud = Exchange.with_symbols(DEMO_SYMBOLS, clock)
    order = {"symbol": "BTC_USDT", "side": "buy", "orderType": "market", "size": D("0.01")}
    for exchange in (quiet, loud):
        exchange.create_account("u1", "k1", "s1", ["read", "trade"], D(1000))
        exchange.place_order("u1", order)
        exchange.set_prices({"BTC_USDT": D(46000)})
    assert quiet.drain_events() == []
    assert loud.drain_events() != []
    assert quiet.positions("u1", None) == loud.positions("u1", None)
    assert quiet.account_overview("u1") == loud.account_overview("u1")


def test_reads_queue_no_events() -> None:
    exchange = Exchange.open(":memory:")
    exchange.drain_events()
    exchange.account_overview("demo")
    exchange.positions("demo", None)
    exchange.market_stats(None)
    exchange.orderbook("BTC_USDT", 10)
    assert exchange.drain_events() == []


def test_a_nested_failure_rolls_back_only_itself() -> None:
    store = Store(":memory:")
    exchange = Exchange(store, seeder=lambda ex: ex.add_symbols(DEMO_SYMBOLS))
    exchange.seed_if_new()
    exchange.create_account("u1", "k1", "s1", ["read", "trade"], D(1000))
    exchange.drain_events()
    with exchange._unit():  # a batch, as seeding runs
        exchange.deposit("u1", D(1))
        with pytest.raises(Rejection):
            exchange.deposit("u1", D(-1))
    assert exchange.account_overview("u1")["deposits"] == D(1001)
    assert [e for e, _, _ in exchange.drain_events()] == ["accountData"]
    assert exchange.seed_if_new() is False


def test_key_lookups_follow_every_change_of_the_keys() -> None:
    exchange = Exchange.with_symbols(DEMO_SYMBOLS)
    assert exchange.lookup_key("k1") is None
    assert exchange.cached_key("k1") == (True, None)
    exchange.create_account("u1", "k1", "s1", ["read"], D(0))
    assert exchange.cached_key("k1") == (False, None)
    key = exchange.lookup_key("k1")
    assert key is not None and key.scopes == frozenset({"read"})
    assert exchange.cached_key("k1") == (True, key)
    exchange.add_api_key("u1", "k2", "s2", ["read", "trade"])
    assert exchange.cached_key("k1") == (False, None)
    exchange.reset()
    assert exchange.lookup_key("k1") is None and exchange.lookup_key("k2") is None


def test_a_key_added_in_a_rolled_back_call_is_not_remembered() -> None:
    exchange = Exchange.with_symbols(DEMO_SYMBOLS)
    with pytest.raises(Rejection), exchange._unit():
        exchange.create_account("u1", "k1", "s1", ["read"], D(0))
        assert exchange.lookup_key("k1") is not None  # seen inside the call
        raise Rejection("VALIDATION_ERROR", "give up")
    assert exchange.cached_key("k1") == (False, None)
    assert exchange.lookup_key("k1") is None


def test_fifty_threads_placing_orders_add_up(tmp_path: Path) -> None:
    exchange = Exchange.with_symbols(DEMO_SYMBOLS, path=tmp_path / "busy.db")
    users = [f"u{index}" for index in range(5)]
    for user in users:
        exchange.create_account(user, f"{user}-key", "secret", ["read", "trade"], D(10_000))
    barrier = threading.Barrier(50)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        user = users[index % len(users)]
        try:
            barrier.wait()
            for step in range(4):
                side = "buy" if (index + step) % 3 else "sell"
                exchange.place_order(
                    user,
                    {"symbol": "ETH_USDT", "side": side, "orderType": "market",
                     "size": D("0.1"), "leverage": 5},
                )  # fmt: skip
                exchange.place_order(
                    user,
                    {"symbol": "ETH_USDT", "side": "buy", "orderType": "limit",
                     "size": D("0.1"), "price": D(2400) - index},
                )  # fmt: skip
        except BaseException as error:  # collected for the main thread to report
            errors.append(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    fee_total = D(0)
    for user in users:
        overview = exchange.account_overview(user)
        assert overview["availableBalance"] == (
            overview["walletBalance"] - overview["positionMargin"] - overview["orderMargin"]
        )
        trades = exchange.user_trades(user, None, 1, 100, None, None)
        assert trades["total"] == 40
        assert sum(t["fee"] for t in trades["items"]) == overview["totalFees"]
        fee_total += overview["totalFees"]
        signed = sum(t["size"] if t["side"] == "buy" else -t["size"] for t in trades["items"])
        [position] = exchange.positions(user, None)
        assert (position["size"] if position["side"] == "long" else -position["size"]) == signed
        assert overview["positionMargin"] == position["margin"] == D(2500) * abs(signed) / 5
        resting = exchange.open_orders(user, None, 1, 100, None, None)
        assert resting["total"] == 40
        assert overview["orderMargin"] == sum(
            o["price"] * o["size"] / o["leverage"] for o in resting["items"]
        )
    # 200 market fills of 0.1 ETH at 2500 with a 0.05 % taker fee.
    assert fee_total == D(200) * D("0.125")
    exchange.store.close()
    reopened = Exchange.open(tmp_path / "busy.db")
    assert reopened.user_trades("u0", None, 1, 100, None, None)["total"] == 40
    assert reopened.lookup_key("demo-key") is None


def test_seed_demo_works_on_any_empty_exchange() -> None:
    exchange = Exchange(Store(":memory:"), seeder=seed_demo)
    assert exchange.seed_if_new() is True
    assert exchange.lookup_key("demo-key") is not None
