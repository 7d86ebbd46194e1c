"""Drift: how the live account differs from its desired-state file, without changing anything.

Drift is the plan read the other way round. The planner already knows the smallest set of
calls that would make the account match the file; every such call is evidence of one
difference, so a drift report is the plan's actions described as "live X, file Y". Reusing
the planner means `drift` and `plan` can never disagree about whether an account matches.

Known noise is filtered with ignore rules (`--ignore`), written `SYMBOL[:ASPECT[,ASPECT...]]`:

- `SYMBOL` is a symbol name or a shell-style pattern (`BTC_USDT`, `*_USDT`, `*`);
- `ASPECT` is one of `position`, `leverage`, `margin`, `tpsl`, `orders` (or `*`, the default);
- `BTC_USDT` ignores everything on BTC_USDT, `BTC_USDT:orders` only its resting orders,
  `*:tpsl` take-profit and stop-loss everywhere, `ETH_USDT:leverage,margin` both.

Each action belongs to exactly one aspect, decided by its phase (see `Phase`), so a rule
never hides more than it names. Pure: no IO, so tests need no exchange.

"Live" is the account as read, never a value projected after earlier planned calls: an
action's own `before` is the state the planner expects just before that call (a margin
change after a planned increase sees the increased margin), so live position values come
from the plan's per-symbol `changes[].before`, which is the account as read. A symbol whose
change cannot be made exactly (below the minimum size, off the step) has no action, yet differs
from the file: it is reported as `infeasible`, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any, Literal

from reconciler.jsonnum import decimal_text, dumps
from reconciler.model.plan import Action, Phase, Plan, PositionView
from reconciler.render.plan import MARKDOWN_LIMIT

__all__ = [
    "ASPECTS",
    "Difference",
    "DriftReport",
    "IgnoreRule",
    "aspect_of",
    "detect",
    "parse_ignore",
    "render_drift",
]

Aspect = Literal["position", "leverage", "margin", "tpsl", "orders"]
ASPECTS: tuple[Aspect, ...] = ("position", "leverage", "margin", "tpsl", "orders")

_ASPECT_OF_PHASE: dict[Phase, Aspect] = {
    Phase.CANCEL_ORDERS: "orders",
    Phase.LEVERAGE: "leverage",
    Phase.REDUCE: "position",
    Phase.INCREASE: "position",
    Phase.MARGIN: "margin",
    Phase.TPSL: "tpsl",
    Phase.PLACE_ORDERS: "orders",
}

_SHOWN_IN_MARKDOWN = 400  # differences listed before "... and N more"


def aspect_of(action: Action) -> Aspect:
    """Which part of a symbol's state the action would change."""
    return _ASPECT_OF_PHASE[action.phase]


@dataclass(frozen=True)
class IgnoreRule:
    """One `--ignore` rule: a symbol pattern and the aspects it hides."""

    symbol: str
    aspects: frozenset[Aspect]
    text: str

    def hides(self, symbol: str, aspect: Aspect) -> bool:
        return aspect in self.aspects and fnmatchcase(symbol, self.symbol)


def parse_ignore(text: str) -> IgnoreRule:
    """Parse `SYMBOL[:ASPECT[,ASPECT...]]`; `ValueError` names what is wrong."""
    symbol, colon, aspects_text = text.strip().partition(":")
    if not symbol:
        raise ValueError(f"{text!r}: give a symbol or a pattern such as '*' before the ':'")
    if colon and not aspects_text.strip():
        raise ValueError(f"{text!r}: name the aspects after the ':' (or leave out the ':')")
    if not colon or aspects_text.strip() == "*":
        return IgnoreRule(symbol, frozenset(ASPECTS), text)
    aspects: set[Aspect] = set()
    for part in aspects_text.split(","):
        name = part.strip()
        if name == "*":
            aspects.update(ASPECTS)
            continue
        matched = [aspect for aspect in ASPECTS if aspect == name]
        if not matched:
            raise ValueError(f"{text!r}: unknown aspect {name!r} (one of {', '.join(ASPECTS)})")
        aspects.update(matched)
    return IgnoreRule(symbol, frozenset(aspects), text)


@dataclass(frozen=True)
class Difference:
    """One way the account differs from the file, and the call that would remove it."""

    symbol: str
    aspect: Aspect
    live: dict[str, Any]
    wanted: dict[str, Any]
    fix: str
    infeasible: bool = False
    """No call can make it (below the minimum size, off the step): `fix` says why; left alone."""

    def describe(self) -> str:
        if self.infeasible:
            return f"{self.symbol} {self.aspect}: cannot be made exactly, left alone: {self.fix}"
        return (
            f"{self.symbol} {self.aspect}: live {_state(self.live)}, "
            f"file {_state(self.wanted)} (would {self.fix})"
        )


@dataclass(frozen=True)
class DriftReport:
    """What differs (after the ignore rules), what was ignored, and the policy verdict."""

    source: str
    user_id: str
    fingerprint: str
    differences: tuple[Difference, ...]
    ignored: tuple[Difference, ...] = ()
    violations: tuple[str, ...] = ()

    @property
    def drifted(self) -> bool:
        return bool(self.differences)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted({difference.symbol for difference in self.differences}))


def detect(plan: Plan, rules: Sequence[IgnoreRule] = (), *, source: str = "") -> DriftReport:
    """The plan's actions as differences, split by the ignore rules."""
    kept: list[Difference] = []
    ignored: list[Difference] = []
    live_views = {change.symbol: change.before for change in plan.changes}
    end_views = {change.symbol: change.after for change in plan.changes}
    found = [
        Difference(
            symbol=action.symbol,
            aspect=aspect_of(action),
            live=_as_in(action.before, live_views.get(action.symbol)),
            # the end state, not the call's own after: a margin add made before an
            # increase moves margin only part of the way to what the file wants
            wanted=_as_in(action.after, end_views.get(action.symbol)),
            fix=action.reason,
        )
        for action in plan.actions
    ]
    found.extend(_infeasible(plan))
    found.extend(_carried_tpsl(plan))
    for difference in found:
        hidden = any(rule.hides(difference.symbol, difference.aspect) for rule in rules)
        (ignored if hidden else kept).append(difference)

    def order(difference: Difference) -> tuple[str, int]:
        return difference.symbol, ASPECTS.index(difference.aspect)

    return DriftReport(
        source=source or plan.user_id,
        user_id=plan.user_id,
        fingerprint=plan.fingerprint,
        differences=tuple(sorted(kept, key=order)),  # stable: the plan's order within a symbol
        ignored=tuple(sorted(ignored, key=order)),
        violations=plan.violations,
    )


def _carried_tpsl(plan: Plan) -> list[Difference]:
    """TP/SL changes that no `set_tpsl` makes: an increase or an open carries them."""
    own = {action.symbol for action in plan.actions if action.kind == "set_tpsl"}
    found = []
    for change in plan.changes:
        before, after = change.before, change.after
        if change.symbol in own or before.side == "flat" or after.side == "flat":
            continue
        if (before.take_profit, before.stop_loss) != (after.take_profit, after.stop_loss):
            found.append(
                Difference(
                    symbol=change.symbol,
                    aspect="tpsl",
                    live={"take_profit": before.take_profit, "stop_loss": before.stop_loss},
                    wanted={"take_profit": after.take_profit, "stop_loss": after.stop_loss},
                    fix="set with the order that changes the size",
                )
            )
    return found


_POSITION_FIELDS = frozenset(PositionView.model_fields)


def _as_in(values: dict[str, Any], view: PositionView | None) -> dict[str, Any]:
    """`values`' keys with the position's own values in `view` (as read, or at the end)."""
    if view is None:
        return dict(values)
    return {
        key: getattr(view, key) if key in _POSITION_FIELDS else value
        for key, value in values.items()
    }


def _infeasible(plan: Plan) -> list[Difference]:
    """One difference per problem the planner left alone, on the symbol it names."""
    symbols = sorted(
        {*plan.summary.symbols_changed, *plan.summary.symbols_unchanged, *plan.marks},
        key=len,
        reverse=True,  # the longest first: `BTC_USDT` must not match inside `XBTC_USDT`
    )
    found: list[Difference] = []
    for problem in plan.infeasible:
        symbol = next((name for name in symbols if _names(problem, name)), "")
        found.append(
            Difference(symbol, "position", live={}, wanted={}, fix=problem, infeasible=True)
        )
    return found


def _names(text: str, symbol: str) -> bool:
    start = text.find(symbol)
    while start >= 0:
        end = start + len(symbol)
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
            return True
        start = text.find(symbol, start + 1)
    return False


# -- rendering ---------------------------------------------------------------------------------


def _value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _state(values: dict[str, Any]) -> str:
    if not values:
        return "nothing"
    return " ".join(f"{key}={_value(value)}" for key, value in values.items())


def _headline(report: DriftReport) -> str:
    if not report.drifted:
        extra = f" ({len(report.ignored)} ignored)" if report.ignored else ""
        return f"No drift: account {report.user_id} matches {report.source}{extra}."
    count = len(report.differences)
    symbols = report.symbols
    return (
        f"Drift: account {report.user_id} differs from {report.source} in {count} "
        f"place{'s' * (count != 1)} on {len(symbols)} symbol{'s' * (len(symbols) != 1)} "
        f"({', '.join(symbols)})" + (f"; {len(report.ignored)} ignored" if report.ignored else "")
    )


def render_drift_text(report: DriftReport) -> str:
    lines = [_headline(report)]
    lines.extend(f"  - {difference.describe()}" for difference in report.differences)
    lines.extend(f"  ! policy: {violation}" for violation in report.violations)
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def render_drift_markdown(report: DriftReport) -> str:
    """For an issue body or job summary: a table, bounded like the plan's markdown."""
    icon = "⚠️" if report.drifted else "✅"
    lines = [f"### {icon} Drift for `{report.user_id}` ({_md(report.source)})", ""]
    lines.append(_md(_headline(report)))
    lines.append("")
    if report.differences:
        lines.extend(
            ["| symbol | aspect | live | file | would |", "| --- | --- | --- | --- | --- |"]
        )
        shown = report.differences[:_SHOWN_IN_MARKDOWN]
        for item in shown:
            lines.append(
                f"| `{item.symbol}` | {item.aspect} | {_md(_state(item.live))} | "
                f"{_md(_state(item.wanted))} | {_md(item.fix)} |"
            )
        if len(report.differences) > len(shown):
            lines.append(f"\n... and {len(report.differences) - len(shown)} more")
        lines.append("")
    if report.violations:
        lines.append("**Policy** (reconciling would be refused):")
        lines.extend(f"- {_md(violation)}" for violation in report.violations[:50])
        lines.append("")
    lines.append(f"<sub>state `{report.fingerprint[:12]}`</sub>")
    text = "\n".join(lines) + "\n"
    return text if len(text) < MARKDOWN_LIMIT else text[: MARKDOWN_LIMIT - 1]


def drift_data(report: DriftReport) -> dict[str, Any]:
    def item(difference: Difference) -> dict[str, Any]:
        return {
            "symbol": difference.symbol,
            "aspect": difference.aspect,
            "live": difference.live,
            "wanted": difference.wanted,
            "fix": difference.fix,
            "infeasible": difference.infeasible,
        }

    return {
        "source": report.source,
        "user_id": report.user_id,
        "drift": report.drifted,
        "fingerprint": report.fingerprint,
        "differences": [item(difference) for difference in report.differences],
        "ignored": [item(difference) for difference in report.ignored],
        "violations": list(report.violations),
    }


def render_drift_json(report: DriftReport | Iterable[DriftReport]) -> str:
    data: Any = (
        drift_data(report)
        if isinstance(report, DriftReport)
        else {"accounts": [drift_data(item) for item in report]}
    )
    return dumps(data).decode("utf-8") + "\n"


def render_drift(report: DriftReport, output_format: str) -> str:
    if output_format == "json":
        return render_drift_json(report)
    if output_format == "markdown":
        return render_drift_markdown(report)
    return render_drift_text(report)
