"""Plans as text (a trading desk's ticket), markdown (PR comments) and JSON (machines).

Renderers are pure: a plan in, a string out. Colour is opt-in (`color=True` adds ANSI
escapes); nothing here looks at a terminal. Every call is shown as the venue will send it,
through the venue's `call_of`, so the renderers know no venue. The JSON form is the
saved-plan format described in `docs/plan-format.md`;
`load_plan(render_json(plan, call_of=...), calls_for=...) == plan`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from reconciler.jsonnum import decimal_text, dumps, loads
from reconciler.model.intents import Intent
from reconciler.model.plan import Action, CallOf, Plan, PositionView, Request, SymbolChange

__all__ = [
    "FORMAT_VERSION",
    "MARKDOWN_LIMIT",
    "PlanFormatError",
    "load_plan",
    "plan_to_data",
    "render_json",
    "render_markdown",
    "render_text",
]

FORMAT_VERSION = 2
MARKDOWN_LIMIT = 65_536
_MARKDOWN_BUDGET = 60_000  # leave room for the closing lines and a host's own framing
_CALLS_SHOWN = (20, 8, 3, 0)  # calls listed per symbol, tried in turn until the text fits

_RESET = "\x1b[0m"
_STYLES = {
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
    "red": "\x1b[31m",
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "cyan": "\x1b[36m",
}
_RISK_STYLE = {"reduce": "green", "increase": "red", "neutral": "yellow"}
_RISK_WORDS = {"reduce": "risk down", "increase": "risk up", "neutral": "risk unchanged"}


# -- shared wording --------------------------------------------------------------------------


def _num(value: Decimal | int | None, none: str = "-") -> str:
    if value is None:
        return none
    if isinstance(value, int):
        return str(value)
    return decimal_text(value)


def _money(value: Decimal | None) -> str:
    if value is None:
        return "-"
    return f"{value.quantize(Decimal('0.01')):,f}"


def _position(view: PositionView) -> str:
    return "flat" if view.side == "flat" else f"{view.side} {_num(view.size)}"


def _tpsl(view: PositionView) -> str:
    return f"{_num(view.take_profit, 'none')} / {_num(view.stop_loss, 'none')}"


def _liquidation(view: PositionView) -> str:
    """`40,725.00 (9.50% away)`: the price, and how far the mark must move to reach it."""
    if view.side == "flat":
        return "-"
    if view.liquidation_price is None:
        return "none"
    away = view.liquidation_distance
    return f"{_money(view.liquidation_price)}" + (f" ({away:f}% away)" if away is not None else "")


def _leverage(view: PositionView) -> str:
    return f"{view.leverage}x" if view.leverage is not None else "-"


def _rows(change: SymbolChange) -> list[tuple[str, str, str]]:
    """(field, before, after) for every field a reviewer checks, changed or not."""
    before, after = change.before, change.after
    churn = f" (-{change.orders_cancelled} +{change.orders_placed})"
    moved = change.orders_cancelled or change.orders_placed
    orders = (
        "orders",
        str(change.orders_before),
        str(change.orders_after) + (churn if moved else ""),
    )
    if before.side == after.side == "flat":
        return [("position", "flat", "flat"), orders]
    return [
        ("position", _position(before), _position(after)),
        ("notional", _money(before.notional), _money(after.notional)),
        ("leverage", _leverage(before), _leverage(after)),
        ("margin", _money(before.margin), _money(after.margin)),
        ("TP / SL", _tpsl(before), _tpsl(after)),
        ("liq price", _liquidation(before), _liquidation(after)),
        orders,
    ]


def _call_text(call: Request) -> str:
    text = f"{call.method} {call.path}"
    return text if call.body is None else text + " " + dumps(call.body).decode("utf-8")


def _request_text(action: Action, call_of: CallOf) -> str:
    text = _call_text(call_of(action.intent))
    for undo in action.on_failure:
        text += f"\n       if it certainly fails: {_call_text(call_of(undo))}"
    return text


def _summary_line(plan: Plan) -> str:
    if plan.is_empty:
        return f"No changes: {plan.empty_reason or 'nothing to do'}."
    changed = len(plan.summary.symbols_changed)
    calls = len(plan.actions)
    return (
        f"{calls} call{'s' * (calls != 1)} on {changed} symbol{'s' * (changed != 1)}; "
        f"gross exposure {_money(plan.summary.gross_before)} -> "
        f"{_money(plan.summary.gross_after)} USDT; estimated fees "
        f"{_money(plan.summary.estimated_fees)} USDT; orders to place "
        f"{plan.summary.orders_to_place}, to cancel {plan.summary.orders_to_cancel}."
    )


def _numbered(plan: Plan) -> dict[str, list[tuple[int, Action]]]:
    by_symbol: dict[str, list[tuple[int, Action]]] = {}
    for number, action in enumerate(plan.actions, start=1):
        by_symbol.setdefault(action.symbol, []).append((number, action))
    return by_symbol


def _changes(plan: Plan) -> list[SymbolChange]:
    """The plan's changes, plus a bare entry for any symbol with actions but no change row."""
    known = {change.symbol: change for change in plan.changes}
    for action in plan.actions:
        known.setdefault(action.symbol, SymbolChange(symbol=action.symbol))
    return [known[symbol] for symbol in sorted(known)]


# -- text ------------------------------------------------------------------------------------


def render_text(plan: Plan, *, call_of: CallOf, color: bool = False) -> str:
    """The ticket: one block per changed symbol, the calls, totals, policy verdict."""

    def paint(text: str, *styles: str) -> str:
        if not color or not styles:
            return text
        return "".join(_STYLES[style] for style in styles) + text + _RESET

    lines = [paint(f"Plan for {plan.user_id}", "bold") + f"  (state {plan.fingerprint[:12]})"]
    if plan.is_empty:
        lines.append(_summary_line(plan))
        lines.extend(_policy_lines(plan, paint))
        return "\n".join(lines) + "\n"
    numbered = _numbered(plan)
    for change in _changes(plan):
        lines.append("")
        mark = f"  mark {_num(change.mark)}" if change.mark is not None else ""
        lines.append(paint(change.symbol, "bold", "cyan") + paint(mark, "dim"))
        for name, before, after in _rows(change):
            if before == after:
                lines.append(paint(f"  {name:<10} {before}", "dim"))
            else:
                lines.append(f"  {name:<10} {before} -> " + paint(after, "bold"))
        for number, action in numbered.get(change.symbol, []):
            risk = paint(_RISK_WORDS[action.risk], _RISK_STYLE[action.risk])
            lines.append(f"  {number:>3}. {action.reason}  [phase {action.phase.label}; {risk}]")
            lines.append(paint(f"       {_request_text(action, call_of)}", "dim"))
    lines.append("")
    unchanged = plan.summary.symbols_unchanged
    if unchanged:
        lines.append(f"Unchanged ({len(unchanged)}): {', '.join(unchanged)}")
    lines.append("Totals: " + _summary_line(plan))
    lines.extend(_policy_lines(plan, paint))
    return "\n".join(lines) + "\n"


def _policy_lines(plan: Plan, paint: Callable[..., str]) -> list[str]:
    lines = _infeasible_lines(plan, paint)
    if not plan.violations:
        return [*lines, "Policy: " + paint("ok", "green")]
    lines.append(paint(f"Policy: {len(plan.violations)} violation(s); nothing will be sent", "red"))
    lines.extend(f"  - {violation}" for violation in plan.violations)
    return lines


def _infeasible_lines(plan: Plan, paint: Callable[..., str]) -> list[str]:
    if not plan.infeasible:
        return []
    head = f"Left alone, the change cannot be made exactly ({len(plan.infeasible)}):"
    return [paint(head, "yellow"), *(f"  - {problem}" for problem in plan.infeasible)]


# -- markdown ------------------------------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _md_symbol(
    change: SymbolChange, calls: list[tuple[int, Action]], shown: int, call_of: CallOf
) -> str:
    out = [f"#### `{change.symbol}`", "", "| | before | after |", "| --- | --- | --- |"]
    for name, before, after in _rows(change):
        marker = "**" if before != after else ""
        out.append(f"| {name} | {_md(before)} | {marker}{_md(after)}{marker} |")
    out.append("")
    if not shown:
        out.append(f"{len(calls)} call{'s' * (len(calls) != 1)}: see the JSON plan.")
        out.append("")
        return "\n".join(out)
    out.append(f"<details><summary>{len(calls)} call{'s' * (len(calls) != 1)}</summary>")
    out.append("")
    for number, action in calls[:shown]:
        out.append(
            f"{number}. `{action.phase.label}` {_md(action.reason)} — "
            f"`{_request_text(action, call_of)}`"
        )
    if len(calls) > shown:
        out.append(f"\n... and {len(calls) - shown} more")
    out.extend(["", "</details>", ""])
    return "\n".join(out)


def render_markdown(plan: Plan, *, call_of: CallOf) -> str:
    """For PR comments and job summaries: always under `MARKDOWN_LIMIT` characters."""
    verdict = "✅ policy ok" if not plan.violations else f"⛔ {len(plan.violations)} violation(s)"
    head = [f"### Plan for `{plan.user_id}` — {verdict}", "", _md(_summary_line(plan)), ""]
    tail: list[str] = []
    if plan.infeasible:
        tail.append("**Left alone** (the change cannot be made exactly):")
        tail.extend(f"- {_md(problem)}" for problem in plan.infeasible[:50])
        tail.append("")
    if plan.violations:
        shown = plan.violations[:50]
        tail.append("**Policy violations** (nothing will be sent):")
        tail.extend(f"- {_md(violation)}" for violation in shown)
        if len(plan.violations) > len(shown):
            tail.append(f"- ... and {len(plan.violations) - len(shown)} more")
        tail.append("")
    unchanged = plan.summary.symbols_unchanged
    if unchanged:
        tail.append(
            f"Unchanged ({len(unchanged)}): " + ", ".join(f"`{s}`" for s in unchanged[:100])
        )
        if len(unchanged) > 100:
            tail[-1] += f" ... and {len(unchanged) - 100} more"
    tail.append(f"\n<sub>state `{plan.fingerprint[:12]}`</sub>")
    budget = _MARKDOWN_BUDGET - sum(len(line) + 1 for line in head + tail)
    sections = _md_sections(plan, budget, call_of)
    text = "\n".join([*head, *sections, *tail]) + "\n"
    return text[: MARKDOWN_LIMIT - 1] if len(text) >= MARKDOWN_LIMIT else text


def _md_sections(plan: Plan, budget: int, call_of: CallOf) -> list[str]:
    """Symbol sections within `budget`: fewer calls listed per symbol first, then fewer symbols."""
    numbered = _numbered(plan)
    changes = _changes(plan)
    for shown in _CALLS_SHOWN:
        sections = [_md_symbol(c, numbered.get(c.symbol, []), shown, call_of) for c in changes]
        if sum(len(section) + 1 for section in sections) <= budget:
            return sections
    kept: list[str] = []
    for index, section in enumerate(sections):
        if len(section) + 1 > budget - 80:
            kept.append(f"... and {len(changes) - index} more symbols (see the JSON plan)\n")
            break
        kept.append(section)
        budget -= len(section) + 1
    return kept


# -- json ------------------------------------------------------------------------------------


def plan_to_data(plan: Plan, *, call_of: CallOf) -> dict[str, Any]:
    """The saved-plan document as plain data (Decimals kept), in the documented key order."""
    data = plan.model_dump(
        mode="python", exclude={"violations", "changes", "empty_reason", "infeasible"}
    )
    data["actions"] = [_action_data(action, call_of) for action in plan.actions]
    data["policy"] = {"ok": not plan.violations, "violations": list(plan.violations)}
    if plan.infeasible:
        data["infeasible"] = list(plan.infeasible)
    data["empty_reason"] = plan.empty_reason
    data["changes"] = [change.model_dump(mode="python") for change in plan.changes]
    summary = data["summary"]
    summary["symbols_changed"] = list(summary["symbols_changed"])
    summary["symbols_unchanged"] = list(summary["symbols_unchanged"])
    return data


def _intent_data(intent: Intent, call_of: CallOf) -> dict[str, Any]:
    """An intent and, beside it, the exact call the venue makes of it."""
    return {
        "intent": intent.model_dump(mode="python"),
        "call": call_of(intent).model_dump(mode="python"),
    }


def _action_data(action: Action, call_of: CallOf) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": action.kind, "symbol": action.symbol}
    data.update(_intent_data(action.intent, call_of))
    data.update(action.model_dump(mode="python", exclude={"intent", "on_failure"}))
    data["phase"] = action.phase.label
    data["on_failure"] = [_intent_data(undo, call_of) for undo in action.on_failure]
    return data


def render_json(plan: Plan, *, call_of: CallOf, indent: int | None = 2) -> str:
    """JSON with exact numbers; `indent=None` gives the compact form."""
    data = plan_to_data(plan, call_of=call_of)
    if indent is None:
        return dumps(data).decode("utf-8")
    return "".join(_pretty(data, indent, 0)) + "\n"


def _pretty(value: Any, indent: int, level: int) -> Iterable[str]:
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    if isinstance(value, dict) and value:
        yield "{\n"
        for index, (key, item) in enumerate(value.items()):
            yield f"{pad}{json.dumps(str(key), ensure_ascii=False)}: "
            yield from _pretty(item, indent, level + 1)
            yield ",\n" if index < len(value) - 1 else "\n"
        yield end + "}"
    elif isinstance(value, list | tuple) and value:
        if all(not isinstance(item, dict | list | tuple) for item in value):
            yield "[" + ", ".join(dumps(item).decode("utf-8") for item in value) + "]"
            return
        yield "[\n"
        for index, item in enumerate(value):
            yield pad
            yield from _pretty(item, indent, level + 1)
            yield ",\n" if index < len(value) - 1 else "\n"
        yield end + "]"
    else:
        yield dumps(value).decode("utf-8")


class PlanFormatError(ValueError):
    """A saved plan this version cannot take: another format, or calls that are not its own."""


def load_plan(text: str | bytes, *, calls_for: Callable[[str], CallOf]) -> Plan:
    """Parse a saved JSON plan back into a `Plan` (numbers exact).

    `calls_for(user_id)` is the venue's `call_of` for the plan's user.

    What apply would send is the intents; the calls beside them are what a reviewer read.
    So each saved call must be exactly the call the venue makes of its intent, or the file
    was edited (or written for another venue) and is refused.
    """
    data = loads(text)
    if not isinstance(data, dict):
        raise PlanFormatError("a plan must be a JSON object")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise PlanFormatError(
            f"this plan has format_version {version!r}; this reconciler reads format_version "
            f"{FORMAT_VERSION} only (plans now carry intents): make it again with "
            "`reconciler plan -out`"
        )
    policy = data.pop("policy", None) or {}
    data["violations"] = tuple(policy.get("violations", ()))
    actions = data.get("actions")
    saved_calls: list[tuple[Any, list[Any]]] = []
    if isinstance(actions, list):
        data["actions"] = [_without_calls(item, saved_calls) for item in actions]
    plan = Plan.model_validate(data)
    call_of = calls_for(plan.user_id)
    for number, (action, (call, undo_calls)) in enumerate(
        zip(plan.actions, saved_calls, strict=True), 1
    ):
        _check_call(number, action.intent, call, call_of)
        if len(undo_calls) != len(action.on_failure):
            raise PlanFormatError(f"action {number}: an undo without its call")
        for undo, undo_call in zip(action.on_failure, undo_calls, strict=True):
            _check_call(number, undo, undo_call, call_of)
    return plan


def _without_calls(item: Any, saved_calls: list[tuple[Any, list[Any]]]) -> Any:
    """The action as `Plan` reads it (intents only); its calls are kept aside to be checked."""
    if not isinstance(item, dict):
        saved_calls.append((None, []))
        return item
    undo = item.get("on_failure")
    entries = undo if isinstance(undo, list) else []
    saved_calls.append(
        (item.get("call"), [e.get("call") if isinstance(e, dict) else None for e in entries])
    )
    action = {key: value for key, value in item.items() if key not in ("kind", "symbol", "call")}
    if isinstance(undo, list):
        action["on_failure"] = [e.get("intent") if isinstance(e, dict) else e for e in undo]
    return action


def _check_call(number: int, intent: Intent, saved: Any, call_of: CallOf) -> None:
    """Refuse a saved call unless the venue makes exactly it of the intent."""
    if saved is None:
        raise PlanFormatError(f"action {number}: no call beside its intent")
    shown = Request.model_validate(saved)
    made = call_of(intent)
    if shown != made:
        raise PlanFormatError(
            f"action {number}: the saved call {_call_text(shown)} is "
            f"not the call of its intent ({_call_text(made)}): the plan was edited"
        )
