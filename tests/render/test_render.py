"""Renderers: the text ticket, markdown for PR comments, and the JSON plan round trip."""

from __future__ import annotations

from decimal import Decimal

from planner_support import SPECS, USER, desired, order, position, snapshot

from reconciler.levret.requests import calls_for
from reconciler.model.account import Order, SymbolSpec
from reconciler.model.desired import DesiredState
from reconciler.model.plan import Plan
from reconciler.model.snapshot import Snapshot
from reconciler.plan import plan
from reconciler.render.plan import (
    MARKDOWN_LIMIT,
    load_plan,
    render_json,
    render_markdown,
    render_text,
)


def _sample() -> Plan:
    want = desired("""
policy: {max_order_notional: 5000}
symbols:
  BTC_USDT:
    position: {side: long, size: 0.5, leverage: 10, margin: 2500, take_profit: 47000}
    orders: [{side: buy, price: 42000, size: 0.1}]
  SOL_USDT: {position: {side: flat}, orders: []}
  ETH_USDT: {position: {side: short, size: 1}}
""")
    live = snapshot(
        [
            position("BTC_USDT", "long", "0.3"),
            position("SOL_USDT", "short", "5"),
            position("ETH_USDT", "short", "1"),
        ],
        [
            order("SOL_USDT", "buy", "90", "1", id="s1"),
            order("SOL_USDT", "buy", "91", "1", id="s2"),
        ],
    )
    return plan(want, live)


def test_text_reads_like_a_ticket() -> None:
    text = render_text(_sample(), call_of=calls_for(USER))
    assert "BTC_USDT" in text and "long 0.3 -> long 0.5" in text
    assert "leverage   5x -> 10x" in text
    assert "TP / SL    none / none -> 47000 / none" in text
    assert "POST /order/cancelAll" in text
    assert "Unchanged (1): ETH_USDT" in text
    assert "gross exposure 16,500.00 -> 25,000.00 USDT" in text
    assert "Policy: 1 violation(s)" in text and "max_order_notional" in text


def test_colour_only_when_asked() -> None:
    result = _sample()
    assert "\x1b[" not in render_text(result, call_of=calls_for(result.user_id))
    coloured = render_text(result, call_of=calls_for(result.user_id), color=True)
    assert "\x1b[" in coloured
    assert _strip_ansi(coloured) == render_text(result, call_of=calls_for(result.user_id))


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_empty_plan_text_and_markdown_say_why() -> None:
    result = plan(desired("symbols: {}\n"), snapshot())
    assert "No changes: the desired state manages no symbols." in render_text(
        result, call_of=calls_for(result.user_id)
    )
    assert "No changes" in render_markdown(result, call_of=calls_for(result.user_id))


def test_json_round_trips_exactly() -> None:
    result = _sample().model_copy(update={"created_at_ms": 1767225600000})
    for text in (
        render_json(result, call_of=calls_for(result.user_id)),
        render_json(result, call_of=calls_for(result.user_id), indent=None),
    ):
        again = load_plan(text, calls_for=calls_for)
        assert again == result
        assert render_json(again, call_of=calls_for(again.user_id)) == render_json(
            result, call_of=calls_for(result.user_id)
        )


def test_json_has_the_documented_top_level_fields() -> None:
    import json

    data = json.loads(render_json(_sample(), call_of=calls_for(USER)))
    assert list(data)[:9] == [
        "format_version",
        "user_id",
        "created_at_ms",
        "fingerprint",
        "symbol_fingerprints",
        "desired_fingerprint",
        "marks",
        "read_hint",
        "actions",
    ]
    assert data["policy"]["ok"] is False and data["policy"]["violations"]
    assert data["actions"][0]["phase"] == "cancel_orders"
    assert "0.1" in render_json(
        _sample(), call_of=calls_for(USER)
    )  # numbers are JSON numbers, never strings
    assert '"size": "0.' not in render_json(_sample(), call_of=calls_for(USER))


def _wide() -> tuple[DesiredState, Snapshot]:
    """50 symbols, each flipping and replacing a ladder of 30 orders."""
    specs = dict(SPECS)
    symbols: dict[str, object] = {}
    positions = []
    orders: list[Order] = []
    for index in range(50):
        name = f"S{index:02d}_USDT"
        specs[name] = SymbolSpec(
            symbol=name,
            tick_size=Decimal("0.01"),
            step_size=Decimal(1),
            min_size=Decimal(1),
            max_leverage=50,
        )
        symbols[name] = {
            "position": {
                "side": "short",
                "size": 5,
                "leverage": 3,
                "take_profit": 80,
                "stop_loss": 120,
            },
            "orders": [{"side": "buy", "price": Decimal(50 + i), "size": 1} for i in range(30)],
        }
        positions.append(
            position("BTC_USDT", "long", "10", entry="100").model_copy(
                update={"symbol": name, "id": f"p{index}"}
            )
        )
        orders.extend(
            order("BTC_USDT", "sell", Decimal(150 + i), "2", id=f"{name}-{i}").model_copy(
                update={"symbol": name}
            )
            for i in range(30)
        )
    want = DesiredState.model_validate({"version": 1, "symbols": symbols})
    grouped: dict[str, list[Order]] = {}
    for item in orders:
        grouped.setdefault(item.symbol, []).append(item)
    live = Snapshot(
        user_id=USER,
        specs=specs,
        positions={p.symbol: p for p in positions},
        open_orders={k: tuple(v) for k, v in grouped.items()},
    )
    return want, live


def test_markdown_for_fifty_symbols_stays_under_the_comment_limit() -> None:
    want, live = _wide()
    result = plan(want, live)
    assert len(result.actions) == 50 * 32
    text = render_markdown(result, call_of=calls_for(result.user_id))
    assert len(text) < MARKDOWN_LIMIT
    assert "... and " in text and "more" in text
    assert "<details>" in text
    assert text.startswith("### Plan for `demo`")
