"""Plans that could not end safely are refused before anything is sent: one test per case.

Each test runs the CLI in-process against a real sandbox server (demo account: BTC long 0.2
at 10x, ETH short 3, resting buys on BTC and SOL; marks BTC 45000, ETH 2500, SOL 100) and
reads the sandbox's request log to prove that nothing unsafe reached the exchange, and the
message to prove it names what was refused.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.cli.cli_support import Invoke, make_invoke, point_at, writes


@pytest.fixture
def cli(sandbox, tmp_path, monkeypatch, capsys) -> Invoke:  # type: ignore[no-untyped-def]
    """Run `reconciler ARGS` in a scratch directory with the demo key pointed at `sandbox`."""
    point_at(monkeypatch, sandbox, tmp_path)
    return make_invoke(capsys)


def _write(tmp_path: Path, text: str, name: str = "desired.yaml") -> str:
    (tmp_path / name).write_text("version: 1\naccount: {user_id: demo}\n" + text)
    return name


def _sent(sandbox: Any) -> list[tuple[str, str]]:
    return [(entry["method"], entry["path"]) for entry in writes(sandbox)]


def _names(text: str, where: str, field: str, fragment: str = "") -> bool:
    """Some line of `text` names `file:line:` (`where`), the field, and the fragment."""
    return any(
        line.startswith(("Error: " + where + ":", where + ":", "  - " + where + ":"))
        and f": {field}: " in line
        and fragment in line
        for line in text.splitlines()
    )


def test_huge_numbers_are_a_located_error_not_a_traceback(cli, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name = _write(
        tmp_path,
        "symbols:\n"
        "  BTC_USDT:\n"
        "    position: {side: long, size: 1e27}\n"
        "  ETH_USDT:\n"
        "    position: {side: short, notional: 1e29}\n",
    )
    for command in ("plan", "apply"):
        result = (
            cli(command, "-f", name, "--auto-approve")
            if command == "apply"
            else cli(command, "-f", name)
        )
        assert result.code == 1, result.err
        assert "Traceback" not in result.err
        assert f"{name}:5:34: symbols.BTC_USDT.position.size: " in result.err
        assert f"{name}:7:39: symbols.ETH_USDT.position.notional: " in result.err
    assert sandbox.requests() == []  # refused before even a read


def test_crossed_take_profit_and_stop_loss_are_refused_naming_the_field(
    cli, sandbox, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    name = _write(
        tmp_path,
        "symbols:\n"
        "  BTC_USDT:\n"
        "    position: {side: long, size: 0.2, leverage: 10, take_profit: 44000}\n"
        "  ETH_USDT:\n"
        "    position: {side: short, size: 3, stop_loss: 2400}\n"
        "  SOL_USDT:\n"
        "    position: {side: long, size: 1, stop_loss: 101}\n",
    )
    plan = cli("plan", "-f", name)
    applied = cli("apply", "-f", name, "--auto-approve")
    for result in (plan, applied):
        assert result.code == 4, result.err
        assert (
            f"{name}:5:66: symbols.BTC_USDT.position.take_profit: take_profit 44000 of a long "
            "is at or below the mark 45000"
        ) in result.err
        assert _names(result.err, f"{name}:7", "symbols.ETH_USDT.position.stop_loss", "2400")
        assert _names(result.err, f"{name}:9", "symbols.SOL_USDT.position.stop_loss", "101")
    assert writes(sandbox) == []


def test_crossing_resting_orders_are_refused_even_where_no_mark_was_needed(
    cli, sandbox, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    # SOL is wanted flat and DOGE has only orders: before, neither mark was read at all.
    name = _write(
        tmp_path,
        "symbols:\n"
        "  SOL_USDT:\n"
        "    position: {side: flat}\n"
        "    orders:\n"
        "      - {side: buy, price: 90, size: 10}\n"
        "      - {side: buy, price: 100, size: 10}\n"
        "  DOGE_USDT:\n"
        "    orders: [{side: sell, price: 0.08, size: 1000}]\n",
    )
    plan = cli("plan", "-f", name)
    applied = cli("apply", "-f", name, "--auto-approve")
    for result in (plan, applied):
        assert result.code == 4, result.err
        assert (
            f"{name}:8:28: symbols.SOL_USDT.orders[1].price: buy limit @ 100 would fill at once"
        ) in result.err
        assert _names(
            result.err, f"{name}:10", "symbols.DOGE_USDT.orders[0].price", "sell limit @ 0.08"
        )
        assert "symbols.SOL_USDT.orders[0]" not in result.err  # the buy at 90 rests
    assert writes(sandbox) == []
    reads = {entry["path"] for entry in sandbox.requests()}
    for symbol in ("SOL_USDT", "DOGE_USDT"):
        assert f"/api/v1/market/orderbook?symbol={symbol}&depth=1" in reads
        assert f"/api/v1/market/market-stats?symbol={symbol}" in reads

    # `taker: true` sends the crossing order on purpose: it fills at once, and apply's
    # later passes do not send it again although it does not rest.
    (tmp_path / name).write_text(
        (tmp_path / name)
        .read_text()
        .replace(
            "{side: buy, price: 100, size: 10}", "{side: buy, price: 100, size: 10, taker: true}"
        )
        .replace("    position: {side: flat}\n", "")
        .replace("  DOGE_USDT:\n    orders: [{side: sell, price: 0.08, size: 1000}]\n", "")
    )
    sandbox.clear_requests()
    applied = cli("apply", "-f", name, "--auto-approve")
    assert applied.code == 0, applied.err
    assert _sent(sandbox) == [("POST", "/api/v1/order/cancel"), ("POST", "/api/v1/order")]
    (position,) = sandbox.exchange.positions("demo", "SOL_USDT")
    assert (position["side"], position["size"]) == ("long", 10)


def test_an_edited_saved_plan_is_never_sent_and_show_says_why(cli, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name = _write(
        tmp_path,
        "policy: {max_order_notional: 20000}\n"
        "symbols:\n"
        "  BTC_USDT:\n"
        "    position: {side: long, size: 0.5, leverage: 10}\n",
    )
    assert cli("plan", "-f", name, "--out", "plan.json").code == 0
    text = (tmp_path / "plan.json").read_text()
    assert text.count('"size": 0.3') == 2  # the one market order, +0.3 BTC: intent and call
    (tmp_path / "plan.json").write_text(text.replace('"size": 0.3', '"size": 3'))

    shown = cli("show", "plan.json", "-f", name)
    assert shown.code == 4, shown.err
    assert "Policy: ok" not in shown.out
    assert "order notional 135000 exceeds policy.max_order_notional 20000" in shown.err
    alone = cli("show", "plan.json")
    assert alone.code == 4 and "the saved plan was edited" in alone.err

    applied = cli("apply", "plan.json", "-f", name)
    assert applied.code == 3, applied.err
    assert "call 1: the saved plan sends place_order BTC_USDT: POST /order" in applied.err
    assert '"size":3' in applied.err and '"size":0.3' in applied.err
    assert writes(sandbox) == []


def test_a_saved_call_that_is_not_its_intents_is_refused_on_load(cli, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A reviewer reads the call; apply would carry out the intent: they must agree."""
    name = _write(
        tmp_path, "symbols:\n  BTC_USDT:\n    position: {side: long, size: 0.5, leverage: 10}\n"
    )
    assert cli("plan", "-f", name, "--out", "plan.json").code == 0
    saved = json.loads((tmp_path / "plan.json").read_text())
    saved["actions"][0]["call"]["body"]["size"] = 0.03  # the call shown, not the intent
    (tmp_path / "edited.json").write_text(json.dumps(saved))
    for command in (("show", "edited.json"), ("apply", "edited.json", "-f", name)):
        refused = cli(*command)
        assert refused.code == 1, refused.err
        assert "action 1: the saved call POST /order" in refused.err
        assert "is not the call of its intent" in refused.err and "edited" in refused.err
    saved["format_version"] = 1
    (tmp_path / "old.json").write_text(json.dumps(saved))
    old = cli("apply", "old.json", "-f", name, "--auto-approve")
    assert old.code == 1 and "format_version 1" in old.err and "make it again" in old.err
    assert writes(sandbox) == []


def test_a_weight_sized_saved_plan_is_stale_once_equity_fell(cli, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name = _write(
        tmp_path, "symbols:\n  SOL_USDT:\n    position: {side: long, weight: 0.1, leverage: 5}\n"
    )
    assert cli("plan", "-f", name, "--out", "plan.json").code == 0
    # An unmanaged long of 6000 AVAX at 5x loses 5.7 USDT each: a third of the equity.
    sandbox.exchange.place_order(
        "demo",
        {"userId": "demo", "symbol": "AVAX_USDT", "side": "buy", "orderType": "market",
         "size": 6000, "leverage": 5},
    )  # fmt: skip
    sandbox.set_prices({"AVAX_USDT": "30.3"})
    equity = sandbox.exchange.account_overview("demo")["equity"]
    assert equity < 67_000
    sandbox.clear_requests()
    applied = cli("apply", "plan.json", "-f", name)
    assert applied.code == 3, applied.err
    assert f"sizes follow weight: the account's equity is now {equity.normalize():f}" in applied.err
    assert "call 1: the saved plan sends place_order SOL_USDT" in applied.err
    assert writes(sandbox) == []


def test_emptied_symbols_with_unmanaged_close_do_not_flatten_the_account(
    cli, sandbox, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    name = _write(tmp_path, "policy: {unmanaged: close}\nsymbols: {}\n")
    for command in (("plan", "-f", name), ("apply", "-f", name, "--auto-approve")):
        result = cli(*command)
        assert result.code == 4, result.err
        assert (
            "the plan closes every position of the account (2: BTC_USDT, ETH_USDT); "
            "give --allow-flatten"
        ) in result.err
    assert writes(sandbox) == []

    capped = _write(
        tmp_path,
        "policy: {max_closes: 0}\nsymbols:\n  ETH_USDT:\n    position: {side: flat}\n",
        "capped.yaml",
    )
    result = cli("apply", "-f", capped, "--auto-approve")
    assert result.code == 4 and "more than policy.max_closes 0" in result.err
    assert writes(sandbox) == []

    consented = cli("apply", "-f", name, "--auto-approve", "--allow-flatten")
    assert consented.code == 0, consented.err
    assert sandbox.exchange.positions("demo", None) == []


def test_import_then_plan_keeps_a_resting_orders_own_tpsl(cli, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    exchange = sandbox.exchange
    exchange.place_order(
        "demo",
        {"userId": "demo", "symbol": "BTC_USDT", "side": "buy", "orderType": "limit",
         "size": Decimal("0.05"), "price": Decimal(41000), "leverage": 20,
         "takeProfit": Decimal(48000), "stopLoss": Decimal(39000)},
    )  # fmt: skip
    exchange.place_order(
        "demo",
        {"userId": "demo", "symbol": "ETH_USDT", "side": "buy", "orderType": "limit",
         "size": Decimal(1), "price": Decimal(2400), "reduce_only": True},
    )  # fmt: skip
    (btc,) = exchange.positions("demo", "BTC_USDT")
    exchange.set_tpsl(
        "demo", btc["id"], {"takeProfitPrice": Decimal("50000"), "stopLossPrice": Decimal("42000")}
    )
    (eth,) = exchange.positions("demo", "ETH_USDT")
    exchange.adjust_margin("demo", eth["id"], {"mode": "add", "amount": Decimal(250)})

    assert cli("import", "--user-id", "demo", "-o", "imported.yaml").code == 0
    imported = (tmp_path / "imported.yaml").read_text()
    assert "take_profit: 48000" in imported and "stop_loss: 39000" in imported
    sandbox.clear_requests()
    planned = cli("plan", "-f", "imported.yaml", "--detailed-exitcode")
    assert planned.code == 0, planned.out + planned.err
    assert writes(sandbox) == []


def test_a_size_tolerance_never_keeps_a_long_the_file_wants_short(cli, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    default = _write(tmp_path, "defaults: {tolerance: {size: 10}}\nsymbols: {}\n", "default.yaml")
    refused = cli("plan", "-f", default)
    assert refused.code == 1
    assert _names(refused.err, f"{default}:3", "defaults.tolerance", "set it per symbol")
    assert sandbox.requests() == []

    name = _write(
        tmp_path,
        "symbols:\n"
        "  BTC_USDT:\n"
        "    tolerance: {size: 10}\n"
        "    position: {side: short, size: 5, leverage: 10}\n",
    )
    planned = cli("plan", "-f", name, "--detailed-exitcode")
    assert planned.code == 2, planned.err
    assert "flip long 0.2 to short 5" in planned.out
    assert "Unchanged" not in planned.out
    assert writes(sandbox) == []


def test_caps_count_every_resting_order_that_could_fill(cli, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ladder = "".join(
        f"      - {{side: buy, price: {40000 + 100 * i}, size: 1}}\n" for i in range(10)
    )
    name = _write(
        tmp_path,
        "policy: {max_gross_notional: 100000, max_order_notional: 50000}\n"
        "symbols:\n  BTC_USDT:\n    orders:\n" + ladder,
    )
    for command in (("plan", "-f", name), ("apply", "-f", name, "--auto-approve")):
        result = cli(*command)
        assert result.code == 4, result.err
        # BTC 9000 + the ladder 404500, ETH short 7500, the two SOL buys 1750
        assert "worst-case gross notional after the plan 422750 " in result.err
        assert "BTC_USDT: resting buy orders after the plan add up to 404500" in result.err
    assert writes(sandbox) == []


def test_a_change_below_min_size_is_left_alone_and_the_rest_goes_ahead(
    cli, sandbox, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    name = _write(
        tmp_path,
        "symbols:\n"
        "  DOGE_USDT:\n"
        "    position: {side: long, notional: 0.5}\n"
        "  ETH_USDT:\n"
        "    position: {side: flat}\n",
    )
    planned = cli("plan", "-f", name, "--detailed-exitcode")
    assert planned.code == 2, planned.err
    assert "Left alone, the change cannot be made exactly (1):" in planned.out
    applied = cli("apply", "-f", name, "--auto-approve")
    assert applied.code == 2, applied.err
    assert _names(applied.err, f"{name}:5", "symbols.DOGE_USDT.position.notional", "minimum size")
    # the unrelated close went ahead; nothing was sent for DOGE
    ((method, path),) = _sent(sandbox)
    assert method == "POST" and path.startswith("/api/v1/positions/") and path.endswith("/close")
    assert sandbox.exchange.positions("demo", "ETH_USDT") == []
    assert sandbox.exchange.positions("demo", "DOGE_USDT") == []
