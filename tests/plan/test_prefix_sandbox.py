"""Every intermediate state safe, end to end: one test per case the review reproduced.

`reconciler apply` runs as a process against a real sandbox (demo account: BTC long 0.2 at
10x with 900 margin, ETH short 3 at 5x, a resting BTC buy at 42000, SOL buys). The sandbox's
`hold` fault stops a chosen call on its way (`before`: it never executes; `delay`: it
executes once released); the test synchronises on `POST /_sandbox/held`, reads the account
there, which is the state after every earlier call of the plan, moves the market if the case
needs it, and releases. The request log and the final account prove the measures held.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.cli_process import finish, run_cli, sandbox_env, start_cli
from tests.conftest import RunningSandbox

HEADER = "version: 1\naccount: {user_id: demo}\n"


def _write(tmp_path: Path, text: str) -> None:
    (tmp_path / "desired.yaml").write_text(HEADER + text)


def _btc(sandbox: RunningSandbox) -> dict[str, Any] | None:
    (position,) = sandbox.exchange.positions("demo", "BTC_USDT") or [None]
    return position


def _distance(position: dict[str, Any]) -> Decimal:
    mark, liquidation = Decimal(position["markPrice"]), Decimal(position["liquidationPrice"])
    moved = mark - liquidation if position["side"] == "long" else liquidation - mark
    return moved / mark * 100


def _writes(sandbox: RunningSandbox) -> list[tuple[str, int]]:
    return [(e["path"], e["status"]) for e in sandbox.requests() if e["method"] != "GET"]


def _held(sandbox: RunningSandbox, path: str, when: str) -> None:
    held = sandbox.control("POST", "held", {"timeout": 60})
    assert held == [{"path": path, "when": when}], held


def _apply(tmp_path: Path, sandbox: RunningSandbox) -> Any:
    # The sandbox's reads do not lag: settling a cut call need not wait the 30 s that an
    # exchange whose lag is not measured yet gets.
    return start_cli(
        tmp_path, sandbox_env(sandbox), "apply", "-f", "desired.yaml", "--auto-approve",
        "--visibility-timeout", "2s",
    )  # fmt: skip


def test_a_leverage_raise_is_topped_up_before_anything_else_on_the_symbol_can_fail(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Before: leverage first (margin 900 -> 450), the increase, then the top-up last; when
    the increase failed the top-up never came and the long sat twice as close to its
    liquidation. Now the top-up follows the leverage at once, before the increase is sent."""
    start = _btc(sandbox)
    assert start is not None
    _write(
        tmp_path,
        "symbols:\n  BTC_USDT:\n"
        "    position: {side: long, size: 0.3, leverage: 20, margin: 1350}\n",
    )
    sandbox.set_faults({"hold": {"when": "before", "path": "/order", "count": 1}})
    process = _apply(tmp_path, sandbox)
    _held(sandbox, "/order", "before")
    between = _btc(sandbox)  # the account if apply stopped here, the increase unsent
    assert between is not None and between["leverage"] == 20
    assert Decimal(between["margin"]) == Decimal(1125)  # 1350 less the increase's own 225
    assert _distance(between) >= _distance(start)
    sandbox.control("POST", "release")  # the held increase is cut, never executed
    code, out, err = finish(process)
    assert code == 0, out + err  # settled as not executed, sent again in the next pass
    end = _btc(sandbox)
    assert end is not None and Decimal(end["size"]) == Decimal("0.3")
    assert Decimal(end["margin"]) == Decimal(1350) and end["leverage"] == 20
    paths = [path for path, _ in _writes(sandbox)]
    assert paths.index(f"/api/v1/positions/{start['id']}/margin") < paths.index("/api/v1/order")


def test_a_top_up_that_certainly_failed_sets_the_leverage_back(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    start = _btc(sandbox)
    assert start is not None
    _write(
        tmp_path,
        "symbols:\n  BTC_USDT:\n    position: {side: long, size: 0.2, leverage: 20, margin: 900}\n",
    )
    margin_route = "/positions/{position_id}/margin"
    sandbox.set_faults({"hold": {"when": "before", "path": margin_route, "count": 1}})
    process = _apply(tmp_path, sandbox)
    _held(sandbox, margin_route, "before")
    stripped = _btc(sandbox)
    assert stripped is not None and Decimal(stripped["margin"]) == Decimal(450)
    sandbox.control("POST", "release")  # the top-up never executes
    finish(process)
    sent = _writes(sandbox)
    leverage_path = f"/api/v1/positions/{start['id']}/leverage"
    assert [path for path, _ in sent].count(leverage_path) >= 2  # the raise, then the undo
    undone_at = [i for i, (path, _) in enumerate(sent) if path == leverage_path][1]
    assert sent[undone_at - 1][0] == f"/api/v1/positions/{start['id']}/margin"
    end = _btc(sandbox)
    assert end is not None and _distance(end) >= _distance(stripped)


def test_a_stop_loss_that_fires_during_an_increase_leaves_the_new_position_protected(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Before: the increase carried no TP/SL and `set_tpsl` named the old position's id, so
    a stop that fired in between left the new position unprotected."""
    start = _btc(sandbox)
    assert start is not None
    sandbox.exchange.set_tpsl("demo", start["id"], {"stopLossPrice": Decimal(44000)})
    _write(
        tmp_path, "symbols:\n  BTC_USDT:\n    position: {side: long, size: 0.5, stop_loss: 44000}\n"
    )
    sandbox.set_faults({"hold": {"when": "delay", "path": "/order", "count": 1}})
    process = _apply(tmp_path, sandbox)
    _held(sandbox, "/order", "delay")
    sandbox.set_prices({"BTC_USDT": 43900})  # the stop fires: the long is closed
    assert _btc(sandbox) is None
    sandbox.set_prices({"BTC_USDT": 45000})
    sandbox.control("POST", "release")  # the increase executes now: it opens a new long
    code, out, err = finish(process)
    assert code == 0, out + err
    end = _btc(sandbox)
    assert end is not None and Decimal(end["size"]) == Decimal("0.5")
    assert Decimal(end["stopLossPrice"]) == Decimal(44000)
    assert not any(path.endswith(f"/{start['id']}/tpsl") for path, _ in _writes(sandbox))


def test_a_flip_with_a_stop_armed_is_a_close_then_an_open_and_never_overshoots(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Before: one sell of 0.3; when the stop closed the long first, the same sell opened a
    short of 0.3 for a target of 0.1."""
    start = _btc(sandbox)
    assert start is not None
    sandbox.exchange.set_tpsl("demo", start["id"], {"stopLossPrice": Decimal(44000)})
    _write(tmp_path, "symbols:\n  BTC_USDT:\n    position: {side: short, size: 0.1}\n")
    close_route = "/positions/{position_id}/close"
    sandbox.set_faults({"hold": {"when": "delay", "path": close_route, "count": 1}})
    process = _apply(tmp_path, sandbox)
    _held(sandbox, close_route, "delay")
    sandbox.set_prices({"BTC_USDT": 43900})  # the stop closes the long before the close
    sandbox.set_prices({"BTC_USDT": 45000})
    sandbox.control("POST", "release")
    code, out, err = finish(process)
    assert code == 5, out + err  # the close found nothing to close: the open was not sent
    assert "close_position refused: NOT_FOUND" in err
    assert _btc(sandbox) is None  # flat: never short beyond the file's 0.1
    assert not any(path == "/api/v1/order" for path, _ in _writes(sandbox))
    code, text = run_cli(
        tmp_path, sandbox_env(sandbox), "apply", "-f", "desired.yaml", "--auto-approve"
    )
    assert code == 0, text
    end = _btc(sandbox)
    assert end is not None and end["side"] == "short" and Decimal(end["size"]) == Decimal("0.1")


def test_a_failed_reduction_holds_back_every_increase_of_the_pass(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Before: the BTC reduction failed and ETH's increase went ahead, past the gross cap."""
    _write(
        tmp_path,
        """\
policy: {max_gross_notional: 20000}
symbols:
  BTC_USDT:
    position: {side: long, size: 0.1}
  ETH_USDT:
    position: {side: short, size: 4}
""",
    )
    gross_cap = Decimal(20000)
    sandbox.set_faults({"hold": {"when": "before", "path": "/order", "count": 1}})
    process = _apply(tmp_path, sandbox)
    _held(sandbox, "/order", "before")  # the BTC reduction, the plan's first order
    sandbox.control("POST", "release")
    code, out, err = finish(process)
    assert code == 0, out + err
    assert "held back" in out + err
    orders = [status for path, status in _writes(sandbox) if path == "/api/v1/order"]
    # pass 1: the cut reduction, ETH held back; pass 2: the reduction, then ETH's increase
    assert len(orders) == 3
    positions = {p["symbol"]: p for p in sandbox.exchange.positions("demo", None)}
    gross = sum(Decimal(p["size"]) * Decimal(p["markPrice"]) for p in positions.values())
    assert gross <= gross_cap
    assert Decimal(positions["ETH_USDT"]["size"]) == 4


def test_leverage_that_needs_the_margin_a_reduction_frees_runs_after_it(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    sandbox.create_account("tight", "tight-key", "tight-secret", balance=Decimal(1200))
    sandbox.exchange.place_order(
        "tight",
        {
            "symbol": "BTC_USDT",
            "side": "buy",
            "orderType": "market",
            "size": Decimal("0.02"),
            "leverage": 10,
        },
    )  # margin 90 of 1200; lowering to 2x first would need 450 - 90 = 360 more
    sandbox.exchange.place_order(
        "tight",
        {
            "symbol": "ETH_USDT",
            "side": "buy",
            "orderType": "market",
            "size": Decimal("3.5"),
            "leverage": 10,
        },
    )  # another 875 of margin: about 230 left free; after the reduction, 275 for the 180
    (tmp_path / "desired.yaml").write_text(
        "version: 1\naccount: {user_id: tight}\n"
        "symbols:\n  BTC_USDT:\n    position: {side: long, size: 0.01, leverage: 2}\n"
    )
    env = sandbox_env(
        sandbox,
        LEVRET_API_KEY_ID="tight-key",
        LEVRET_API_KEY_SECRET="tight-secret",
        LEVRET_USER_ID="tight",
    )
    code, text = run_cli(tmp_path, env, "apply", "-f", "desired.yaml", "--auto-approve")
    assert code == 0, text
    sent = [path for path, status in _writes(sandbox) if status == 200]
    assert sent[-2:] == [
        "/api/v1/order",
        next(path for path in sent if path.endswith("/leverage")),
    ]
    (btc,) = sandbox.exchange.positions("tight", "BTC_USDT")
    assert btc["leverage"] == 2 and Decimal(btc["size"]) == Decimal("0.01")


def test_a_margin_cut_under_the_liquidation_floor_is_refused_before_anything_is_sent(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    _write(
        tmp_path,
        """\
policy: {min_liquidation_distance: 2}
symbols:
  BTC_USDT:
    position: {side: long, size: 0.2, leverage: 100, margin: 100}
""",
    )
    code, text = run_cli(
        tmp_path, sandbox_env(sandbox), "apply", "-f", "desired.yaml", "--auto-approve"
    )
    assert code == 4, text
    assert "from its liquidation price, under policy.min_liquidation_distance 2%" in text
    assert _writes(sandbox) == []
