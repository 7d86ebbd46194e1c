"""`reconciler drift` and the pull-request flow the GitOps workflows run, against the sandbox."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from reconciler.levret.requests import calls_for
from reconciler.model.desired import loads
from reconciler.model.intents import PlaceOrder
from reconciler.model.plan import Action, Phase, Plan
from reconciler.render.plan import MARKDOWN_LIMIT
from reconciler.run.accounts import AccountFile, Outcome, render_group
from reconciler.run.drift import ASPECTS, detect, parse_ignore, render_drift_markdown
from tests.cli.cli_support import Invoke, make_invoke, point_at, writes
from tests.signing import call

DESIRED = """\
version: 1
account:
  user_id: demo
policy:
  max_leverage: 20
symbols:
  BTC_USDT:
    position: {side: long, size: 0.5, leverage: 10, take_profit: 47000, stop_loss: 44000}
    orders:
      - {side: buy, price: 42000, size: 0.1}
      - {side: sell, price: 52000, size: 0.1, reduce_only: true}
  ETH_USDT:
    position: {side: short, notional: 20000}
  SOL_USDT:
    position: {side: flat}
    orders: []
"""


@pytest.fixture
def cli(sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Invoke:
    point_at(monkeypatch, sandbox, tmp_path)
    (tmp_path / "desired.yaml").write_text(DESIRED)
    return make_invoke(capsys)


def test_pull_request_flow_end_to_end(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    # The PR job: a markdown plan for the comment, exit 2 = changes, the JSON plan saved.
    planned = cli(
        "plan", "-f", "desired.yaml", "--format", "markdown", "--detailed-exitcode",
        "--out", "plan.json",
    )  # fmt: skip
    assert planned.code == 2, planned.err
    assert planned.out.startswith("### Plan for `demo`")
    assert json.loads(Path("plan.json").read_text())["actions"]
    assert writes(sandbox) == []

    # The merge job applies exactly the reviewed plan.
    applied = cli("apply", "plan.json", "-f", "desired.yaml")
    assert applied.code == 0, applied.err
    assert "converged" in applied.err

    # The drift job: nothing to report.
    sandbox.clear_requests()
    clean = cli("drift", "-f", "desired.yaml")
    assert clean.code == 0, clean.out + clean.err
    assert "No drift" in clean.out
    assert writes(sandbox) == []

    # Someone places an order by hand, outside git.
    response, body = call(
        sandbox.base_url, "POST", "/api/v1/order",
        {"userId": "demo", "symbol": "BTC_USDT", "side": "buy", "orderType": "limit",
         "size": Decimal("0.01"), "price": 40000},
    )  # fmt: skip
    assert response.status_code == 200, body
    drifted = cli("drift", "-f", "desired.yaml", "--format", "markdown")
    assert drifted.code == 2
    assert "`BTC_USDT` | orders" in drifted.out
    assert "cancel buy 0.01 @ 40000" in drifted.out

    as_json = json.loads(cli("drift", "-f", "desired.yaml", "--format", "json").out)
    assert as_json["drift"] is True
    assert [(d["symbol"], d["aspect"]) for d in as_json["differences"]] == [("BTC_USDT", "orders")]

    ignored = cli("drift", "-f", "desired.yaml", "--ignore", "BTC_USDT:orders")
    assert ignored.code == 0
    assert "1 ignored" in ignored.out


def test_drift_works_with_a_read_only_key_and_sends_no_post(cli, sandbox, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LEVRET_API_KEY_ID", "demo-read")
    monkeypatch.setenv("LEVRET_API_KEY_SECRET", "demo-read-secret")
    sandbox.clear_requests()
    result = cli("drift", "-f", "desired.yaml")
    assert result.code == 2, result.err
    for symbol in ("BTC_USDT", "ETH_USDT", "SOL_USDT"):
        assert symbol in result.out
    log = sandbox.requests()
    assert log and all(entry["method"] == "GET" for entry in log)
    assert {entry["keyId"] for entry in log if entry["keyId"]} == {"demo-read"}
    assert all(entry["status"] == 200 for entry in log)


def test_ignore_rules_hide_only_what_they_name(cli) -> None:  # type: ignore[no-untyped-def]
    everything = json.loads(cli("drift", "-f", "desired.yaml", "--format", "json").out)
    aspects = {(d["symbol"], d["aspect"]) for d in everything["differences"]}
    assert ("BTC_USDT", "tpsl") in aspects and ("SOL_USDT", "orders") in aspects

    result = cli(
        "drift", "-f", "desired.yaml", "--format", "json",
        "--ignore", "*:tpsl", "--ignore", "SOL_USDT", "--ignore", "ETH_USDT:position,leverage",
    )  # fmt: skip
    left = {(d["symbol"], d["aspect"]) for d in json.loads(result.out)["differences"]}
    assert left == {a for a in aspects if a[1] != "tpsl" and a[0] not in ("SOL_USDT", "ETH_USDT")}
    assert result.code == 2

    everything_ignored = cli("drift", "-f", "desired.yaml", "--ignore", "*")
    assert everything_ignored.code == 0


def test_a_bad_ignore_rule_is_a_usage_error(cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox.clear_requests()
    result = cli("drift", "-f", "desired.yaml", "--ignore", "BTC_USDT:price")
    assert result.code == 1
    assert "unknown aspect 'price'" in result.err
    assert sandbox.requests() == []


@pytest.mark.parametrize(
    ("text", "symbol", "aspects"),
    [
        ("BTC_USDT", "BTC_USDT", set(ASPECTS)),
        ("BTC_USDT:orders", "BTC_USDT", {"orders"}),
        ("*:tpsl", "*", {"tpsl"}),
        ("*_USDT:leverage, margin", "*_USDT", {"leverage", "margin"}),
        ("ETH_USDT:*", "ETH_USDT", set(ASPECTS)),
    ],
)
def test_parse_ignore(text: str, symbol: str, aspects: set[str]) -> None:
    rule = parse_ignore(text)
    assert rule.symbol == symbol
    assert rule.aspects == aspects


@pytest.mark.parametrize("text", [":orders", "BTC_USDT:", "BTC_USDT:size", "X:orders,nope"])
def test_parse_ignore_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ignore(text)


# -- size limits for GitHub: a comment (and an issue body) holds at most 65,536 characters ----


def _fifty_symbols(sandbox: Any) -> str:
    specs = [
        {"symbol": f"S{index:02d}_USDT", "tickSize": Decimal("0.001"), "stepSize": Decimal("0.1"),
         "minSize": Decimal("0.1"), "maxLeverage": 20, "markPrice": Decimal(10 + index)}
        for index in range(50)
    ]  # fmt: skip
    sandbox.control("POST", "symbols", {"symbols": specs})
    lines = ["version: 1", "account: {user_id: demo}", "symbols:"]
    for index in range(50):
        mark = 10 + index
        lines.append(f"  S{index:02d}_USDT:")
        lines.append(
            f"    position: {{side: long, size: 20, leverage: 5, take_profit: {mark * 2}, "
            f"stop_loss: {mark // 2}}}"
        )
        lines.append("    orders:")
        lines.extend(
            f"      - {{side: buy, price: {mark - 1 - rung * 0.5}, size: 1}}" for rung in range(6)
        )
    return "\n".join(lines) + "\n"


def test_markdown_of_a_fifty_symbol_plan_fits_one_comment(cli, sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "fifty.yaml").write_text(_fifty_symbols(sandbox))
    planned = cli("plan", "-f", "fifty.yaml", "--format", "markdown", "--detailed-exitcode")
    assert planned.code == 2, planned.err
    assert len(planned.out) < MARKDOWN_LIMIT
    assert "S00_USDT" in planned.out
    drifted = cli("drift", "-f", "fifty.yaml", "--format", "markdown")
    assert drifted.code == 2
    assert len(drifted.out) < MARKDOWN_LIMIT
    assert "S49_USDT" in drifted.out


def _plan(user: str, symbols: int, calls: int) -> Plan:
    actions = tuple(
        Action(
            intent=PlaceOrder(
                symbol=f"S{s:03d}_USDT",
                side="buy",
                order_type="limit",
                size=Decimal(1),
                price=Decimal(s + 1),
                take_profit=Decimal(10**9 + c),  # a long call, as a ladder of many fields is
            ),
            phase=Phase.PLACE_ORDERS,
            after={"side": "buy", "price": Decimal(s + 1), "size": Decimal(1)},
            reason=f"place buy 1 @ {s + 1} rung {c}",
        )
        for s in range(symbols)
        for c in range(calls)
    )
    return Plan(user_id=user, fingerprint="f" * 64, symbol_fingerprints={}, marks={},
                actions=actions)  # fmt: skip


def test_drift_markdown_of_a_huge_report_is_cut_under_the_limit() -> None:
    report = detect(_plan("demo", 300, 10))
    text = render_drift_markdown(report)
    assert len(text) < MARKDOWN_LIMIT
    assert "more" in text


def test_grouped_markdown_of_many_big_accounts_stays_under_the_limit() -> None:
    from reconciler.render.plan import render_markdown

    outcomes = [
        Outcome(AccountFile(Path(f"accounts/a{n}.yaml"), loads("version: 1\n")), code=2,
                plan=_plan(f"user{n}", 200, 5))
        for n in range(4)
    ]  # fmt: skip
    text = render_group(
        outcomes,
        lambda o: render_markdown(o.plan, call_of=calls_for(o.plan.user_id)) if o.plan else "",
        "markdown",
    )
    assert len(text) < MARKDOWN_LIMIT
    for n in range(4):
        assert f"## accounts/a{n}.yaml (account user{n}, exit 2)" in text


TRUTHFUL = """\
version: 1
account:
  user_id: demo
policy:
  max_leverage: 20
symbols:
  BTC_USDT:
    position: {side: long, size: 0.5, leverage: 10, margin: 2500}
  LTC_USDT:
    position: {side: long, notional: 10}
"""


def test_drift_live_is_the_account_as_read_and_infeasible_symbols_are_reported(  # type: ignore[no-untyped-def]
    cli, sandbox
) -> None:
    """The demo BTC position is 0.2 with 900 margin; the margin call comes after a planned
    increase to 0.5 (2250), yet live must say 900. LTC's 10 USDT is below the minimum size 0.5: no
    call can make it, and drift says so instead of reporting no difference."""
    Path("truthful.yaml").write_text(TRUTHFUL)
    drifted = cli("drift", "-f", "truthful.yaml", "--format", "json")
    assert drifted.code == 2, drifted.err
    report = json.loads(drifted.out)
    by_aspect = {(d["symbol"], d["aspect"]): d for d in report["differences"]}
    margin = by_aspect[("BTC_USDT", "margin")]
    assert Decimal(str(margin["live"]["margin"])) == Decimal(900)
    assert Decimal(str(margin["wanted"]["margin"])) == Decimal(2500)
    position = by_aspect[("BTC_USDT", "position")]
    assert Decimal(str(position["live"]["size"])) == Decimal("0.2")
    ltc = by_aspect[("LTC_USDT", "position")]
    assert ltc["infeasible"] is True and "minimum size" in ltc["fix"]
    text = cli("drift", "-f", "truthful.yaml")
    assert "BTC_USDT margin: live margin=900" in text.out
    assert "LTC_USDT position: cannot be made exactly" in text.out
    assert writes(sandbox) == []
