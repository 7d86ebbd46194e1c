"""The sandbox's realism rules (docs/sandbox.md), each shown as a third-party client sees it.

Every trading request is signed by hand (`tests/signing.py`) against a real sandbox server on
loopback; the expected book, volumes and prices are computed here from the documented
formulas, not from the sandbox's code, so a drift between the two fails.
"""

from __future__ import annotations

import hashlib
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import pytest

from reconciler.sandbox.app import API_PREFIX
from tests.conftest import RunningSandbox
from tests.signing import data_of, expect_error, now_ms, signed_request

D = Decimal
BTC = {"symbol": "BTC_USDT", "mark": D(45000), "tick": D("0.1"), "min": D("0.001")}


# --- the documented formulas, written out independently ---------------------------------------


def unit(*parts: object) -> Decimal:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return D(int.from_bytes(digest[:8], "big")) / D(2**64)


def grid(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    return (value / step).to_integral_value(rounding=rounding) * step


def book(symbol: str, mark: Decimal, tick: Decimal, min_size: Decimal, depth: int) -> Any:
    spacing = max(tick, grid(mark * D("0.0001"), tick, ROUND_FLOOR))
    best_bid = grid(mark, tick, ROUND_FLOOR)
    best_bid -= spacing if best_bid == mark else 0
    best_ask = grid(mark, tick, ROUND_CEILING)
    best_ask += spacing if best_ask == mark else 0
    bids = [(best_bid - spacing * n, min_size * (1 + int(unit(symbol, "book", n) * 40)))
            for n in range(depth)]  # fmt: skip
    asks = [(best_ask + spacing * n, min_size * (1 + int(unit(symbol, "book-ask", n) * 40)))
            for n in range(depth)]  # fmt: skip
    return bids, asks


def traded(symbol: str, price: Decimal, min_size: Decimal) -> Decimal:
    plain = format(price.normalize(), "f")
    return min_size * (1 + int(unit(symbol, "trade", plain) * 40))


def fee(price: Decimal, size: Decimal, rate: str) -> Decimal:
    return (price * size * D(rate)).quantize(D("1E-8"))


# --- signed calls of a fresh user -------------------------------------------------------------


class Trader:
    def __init__(self, sandbox: RunningSandbox, user: str) -> None:
        sandbox.create_account(user, balance=1_000_000)
        self.sandbox, self.user = sandbox, user

    def call(self, method: str, path: str, body: Any = b"") -> Any:
        response = signed_request(
            self.sandbox.base_url,
            method,
            API_PREFIX + path,
            body,
            f"{self.user}-key",
            f"{self.user}-secret",
        )
        return data_of(response)

    def order(self, **body: Any) -> Any:
        return self.call("POST", "/order", {"symbol": "BTC_USDT", **body})

    def fills(self, order_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.call("GET", f"/trade/order/{order_id}")["items"]
        return items

    def wallet(self) -> Decimal:
        return Decimal(self.call("GET", "/wallet/account-overview")["walletBalance"])


def public(sandbox: RunningSandbox, path: str) -> Any:
    return data_of(sandbox.http.get(API_PREFIX + path))


# --- the rules -------------------------------------------------------------------------------


def test_the_book_has_seeded_levels_and_takers_walk_it(sandbox: RunningSandbox) -> None:
    bids, asks = book(BTC["symbol"], BTC["mark"], BTC["tick"], BTC["min"], 6)
    shown = public(sandbox, "/market/orderbook?symbol=BTC_USDT&depth=6")
    assert [tuple(level) for level in shown["asks"]] == asks
    assert [tuple(level) for level in shown["bids"]] == bids

    sandbox.set_faults({"book_depth": True})
    trader = Trader(sandbox, "walker")
    size = asks[0][1] + asks[1][1] + asks[2][1] + D("0.001")
    bought = trader.order(side="buy", orderType="market", size=size, leverage=10)
    fills = trader.fills(bought["id"])
    expected = [*asks[:3], (asks[3][0], D("0.001"))]
    assert [(f["price"], f["size"]) for f in fills] == expected
    assert all(f["liquidity"] == "taker" for f in fills)
    assert [f["fee"] for f in fills] == [fee(p, s, "0.0005") for p, s in expected]
    assert bought["status"] == "filled" and bought["filledSize"] == size
    assert bought["avgFillPrice"] > asks[0][0] > BTC["mark"]  # worse than the mark

    # A marketable limit order takes the levels its price reaches and rests the rest.
    limit = bids[1][0]
    rest = D("0.005")
    sold = trader.order(side="sell", orderType="limit", price=limit,
                        size=bids[0][1] + bids[1][1] + rest)  # fmt: skip
    assert [(f["price"], f["size"]) for f in trader.fills(sold["id"])] == bids[:2]
    assert sold["status"] == "partially_filled"
    assert sold["filledSize"] == bids[0][1] + bids[1][1]


def test_a_resting_order_fills_in_parts_by_the_volume_at_its_price(
    sandbox: RunningSandbox,
) -> None:
    sandbox.set_faults({"resting_partial_fills": True})
    trader = Trader(sandbox, "rester")
    price = D(44000)
    volume = traded("BTC_USDT", price, BTC["min"])
    size = volume * 2 + D("0.001")  # three moves to fill
    first = trader.order(side="buy", orderType="limit", price=price, size=size, leverage=10)
    second = trader.order(side="buy", orderType="limit", price=price, size=D("0.001"))

    sandbox.set_prices({"BTC_USDT": price})
    seen = trader.call("GET", f"/order/{first['id']}")
    assert (seen["status"], seen["filledSize"]) == ("partially_filled", volume)
    overview = trader.call("GET", "/wallet/account-overview")
    margin = (price * (size - volume) / 10).quantize(D("1E-8"))
    assert overview["orderMargin"] == margin + (price * D("0.001") / 10).quantize(D("1E-8"))
    # The older order took the whole volume at that price; the younger waits.
    assert trader.call("GET", f"/order/{second['id']}")["filledSize"] == 0

    sandbox.set_prices({"BTC_USDT": 44500})
    sandbox.set_prices({"BTC_USDT": 43900})  # through the price again: another part
    sandbox.set_prices({"BTC_USDT": 44500})
    sandbox.set_prices({"BTC_USDT": 44000})
    done = trader.call("GET", f"/order/{first['id']}")
    assert (done["status"], done["filledSize"]) == ("filled", size)
    parts = [(f["price"], f["size"], f["liquidity"]) for f in trader.fills(first["id"])]
    assert parts == [(price, volume, "maker"), (price, volume, "maker"),
                     (price, D("0.001"), "maker")]  # fmt: skip


def test_stops_fill_through_the_book_below_their_trigger(sandbox: RunningSandbox) -> None:
    sandbox.set_faults({"stop_slippage": True})
    trader = Trader(sandbox, "stopper")
    trader.order(side="buy", orderType="market", size=D("0.2"), leverage=10)
    held = trader.call("GET", "/positions")[0]
    assert held["entryPrice"] == BTC["mark"]  # book depth off: the mark
    trader.call("POST", f"/positions/{held['id']}/tpsl", {"stopLossPrice": 44000})

    result = sandbox.set_prices({"BTC_USDT": 44000})
    assert result["triggeredPositions"] == [str(held["id"])]
    assert trader.call("GET", "/positions") == []
    close = [f for f in trader.call("GET", "/trade/user/stopper")["items"] if f["side"] == "sell"]
    bids, _ = book("BTC_USDT", D(44000), BTC["tick"], BTC["min"], 40)
    walked, left = [], D("0.2")
    for level_price, level_size in bids:
        walked.append((level_price, min(left, level_size)))
        left -= min(left, level_size)
        if not left:
            break
    assert [(f["price"], f["size"]) for f in close] == walked
    assert len(close) > 1 and all(f["price"] < 44000 for f in close)  # worse than the trigger


def test_a_liquidation_closes_through_the_book_and_costs_the_margin(
    sandbox: RunningSandbox,
) -> None:
    sandbox.set_faults({"stop_slippage": True})
    trader = Trader(sandbox, "liquid")
    trader.order(side="buy", orderType="market", size=D("0.1"), leverage=50)
    held = trader.call("GET", "/positions")[0]
    assert held["liquidationPrice"] == D(44325)
    before = trader.wallet()

    result = sandbox.set_prices({"BTC_USDT": 44300})
    assert result["liquidatedPositions"] == [str(held["id"])]
    assert trader.call("GET", "/positions") == []
    assert trader.wallet() == before - held["margin"]
    close = [f for f in trader.call("GET", "/trade/user/liquid")["items"] if f["side"] == "sell"]
    assert sum(f["size"] for f in close) == D("0.1") and all(f["price"] < 44300 for f in close)
    ledger = trader.call("GET", "/wallet/balance-history")
    assert ledger[-1]["type"] == "liquidation" and ledger[-1]["balance"] == trader.wallet()


def test_odd_symbols_sit_next_to_fine_ones(sandbox: RunningSandbox) -> None:
    specs = {s["symbol"]: s for s in public(sandbox, "/market/supported-symbols")}
    odd = [s for s in specs.values() if s["minSize"] > s["stepSize"]]
    assert {s["symbol"] for s in odd} >= {"LTC_USDT", "TRX_USDT"}
    assert specs["BTC_USDT"]["minSize"] == specs["BTC_USDT"]["stepSize"]
    for name in ("LTC_USDT", "TRX_USDT"):
        spec = specs[name]
        mark = public(sandbox, f"/market/market-stats?symbol={name}")["markPrice"]
        assert spec["tickSize"] / mark > D("0.004")  # a tick is tens of basis points
        levels = public(sandbox, f"/market/orderbook?symbol={name}&depth=3")["asks"]
        assert levels[1][0] - levels[0][0] == spec["tickSize"]
    trader = Trader(sandbox, "odd")
    on_step_below_min = {"symbol": "TRX_USDT", "side": "buy", "orderType": "market", "size": 50}
    response = signed_request(sandbox.base_url, "POST", API_PREFIX + "/order", on_step_below_min,
                              "odd-key", "odd-secret")  # fmt: skip
    assert "at least 100" in expect_error(response, 400, "VALIDATION_ERROR")["error"]["message"]
    off_tick = {"symbol": "LTC_USDT", "side": "buy", "orderType": "limit", "size": 1,
                "price": D("72.3")}  # fmt: skip
    response = signed_request(sandbox.base_url, "POST", API_PREFIX + "/order", off_tick,
                              "odd-key", "odd-secret")  # fmt: skip
    expect_error(response, 400, "VALIDATION_ERROR")
    placed = trader.order(symbol="TRX_USDT", side="buy", orderType="market", size=100)
    assert placed["filledSize"] == 100


def test_clock_skew_moves_every_timestamp_the_exchange_writes(sandbox: RunningSandbox) -> None:
    skew = 20_000
    sandbox.set_faults({"clock_skew_ms": skew})
    trader = Trader(sandbox, "skewed")
    started = now_ms()
    market = trader.order(side="buy", orderType="market", size=D("0.01"))
    resting = trader.order(side="buy", orderType="limit", size=D("0.01"), price=40000)
    held = trader.call("GET", "/positions")[0]
    fills = trader.fills(market["id"])
    ledger = trader.call("GET", "/wallet/balance-history")
    ended = now_ms()
    stamps = [
        market["createdAt"],
        market["updatedAt"],
        resting["createdAt"],
        held["createdAt"],
        held["updatedAt"],
        *(f["timestamp"] for f in fills),
        *(entry["time"] for entry in ledger[1:]),  # after the deposit (control API)
    ]
    for stamp in stamps:
        assert started + skew - 50 <= stamp <= ended + skew + 50, (stamp, started)


@pytest.mark.parametrize("name", ["realistic", "ideal"])
def test_profiles_switch_every_knob_at_once(sandbox: RunningSandbox, name: str) -> None:
    knobs = {"read_lag_ms": 1500, "book_depth": True, "resting_partial_fills": True,
             "stop_slippage": True}  # fmt: skip
    expected = knobs if name == "realistic" else {}
    assert sandbox.control("POST", "profile", {"name": name}) == {"name": name, "knobs": expected}
    shown = sandbox.control("GET", "faults")
    assert {key: shown.get(key) for key in knobs} == {key: expected.get(key) for key in knobs}
    # Faults go on top of the profile; {} and reset go back to it.
    layered = sandbox.set_faults({"seed": 3, "fail_before": D("0.5"), "read_lag_ms": 10})
    assert layered["read_lag_ms"] == 10 and layered["fail_before"] == D("0.5")
    sandbox.set_faults({})
    sandbox.reset()
    assert sandbox.control("GET", "profile")["name"] == name
    again = sandbox.control("GET", "faults")
    assert again.get("book_depth") == expected.get("book_depth") and again["fail_before"] == 0

    _, asks = book(BTC["symbol"], BTC["mark"], BTC["tick"], BTC["min"], 1)
    trader = Trader(sandbox, "profiled")
    bought = trader.order(side="buy", orderType="market", size=D("0.001"))
    assert bought["avgFillPrice"] == (asks[0][0] if name == "realistic" else BTC["mark"])


def test_an_unknown_profile_is_refused(sandbox: RunningSandbox) -> None:
    response = sandbox.http.post("/_sandbox/profile", json={"name": "harsh"})
    assert response.status_code == 400
    assert "unknown profile 'harsh'" in response.json()["error"]["message"]
    assert sandbox.control("GET", "profile")["name"] == "ideal"
