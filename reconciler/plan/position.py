"""Rules 1–3 and 5: the wanted size of a position, then the calls that reach it."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from reconciler.actions import (
    POSITION_ID_PLACEHOLDER,
    Action,
    Phase,
    Request,
    Risk,
)
from reconciler.plan.model import (
    Context,
    Holding,
    Target,
    mark_of,
    money,
    round_down,
)
from reconciler.plan.requests import (
    make_action,
    market_order,
    position_view,
)
from reconciler.spec import (
    DesiredPosition,
)

# -- rule 5: what size is wanted ---------------------------------------------------------


def resolve_target(
    context: Context,
    symbol: str,
    wanted: DesiredPosition,
    problems: list[str],
    infeasible: list[str],
) -> Target | None:
    """Turn the desired position into a signed size; notional and weight round *down*."""
    desired = context.desired
    leverage = desired.position_leverage(symbol)
    if wanted.side == "flat":
        return Target(Decimal(0), leverage, None, None, None)
    spec = context.snapshot.specs[symbol]
    path = ("symbols", symbol, "position")
    size = wanted.size
    if size is None:
        mark = context.snapshot.mark(symbol)
        if mark is None or mark <= 0:
            problems.append(desired.problem(path, "no mark price in the snapshot to size it"))
            return None
        if wanted.notional is not None:
            amount, field_name = wanted.notional, "notional"
        else:
            equity = context.snapshot.equity
            if equity is None or wanted.weight is None:
                problems.append(desired.problem(path, "no account equity in the snapshot"))
                return None
            amount, field_name = wanted.weight * equity, "weight"
        size = round_down(amount / mark, spec.stepSize)
        if size < spec.minSize:
            infeasible.append(
                desired.problem(
                    (*path, field_name),
                    f"{amount:f} USDT at mark {mark:f} is {size:f}, below minSize {spec.minSize:f}",
                )
            )
            return None
    signed = size if wanted.side == "long" else -size
    given = wanted.model_fields_set
    return Target(
        signed,
        leverage,
        wanted.margin,
        wanted.take_profit,
        wanted.stop_loss,
        keep_take_profit="take_profit" not in given,
        keep_stop_loss="stop_loss" not in given,
    )


# -- rules 1–3: the position -------------------------------------------------------------


def plan_position(
    context: Context, symbol: str, current: Holding | None, target: Target, out: list[Action]
) -> Holding | None:
    """Append the position's actions to `out`; return the predicted position afterwards."""
    within = context.within_tolerance(symbol, current, target.signed)
    if target.signed == 0:
        if current is None or within:
            return current
        out.append(close_position(context, symbol, current, "desired flat"))
        return None
    flips = current is not None and current.side != target.side
    if current is None or flips:  # another side is never within tolerance
        holding = open_position(context, symbol, current, target, out)
    else:
        holding = set_leverage(context, symbol, current, target, out)
        if not within:
            holding = resize(context, symbol, holding, target, out)
    holding = adjust_margin(context, symbol, holding, target, out)
    return set_tpsl(context, symbol, holding, target, out)


def open_position(
    context: Context, symbol: str, current: Holding | None, target: Target, out: list[Action]
) -> Holding:
    """One market order opens the position (or flips through zero) with leverage and TP/SL."""
    mark = mark_of(context, symbol)
    old = current.size if current is not None else Decimal(0)
    size = old + target.size
    grows = target.size >= old
    phase = Phase.INCREASE if grows else Phase.REDUCE
    risk: Risk = "increase" if grows else "reduce"
    reason = f"open {target.side} {target.size:f} at {target.leverage}x"
    if current is not None:
        reason = f"flip {current.side} {current.size:f} to {target.side} {target.size:f}"
    out.append(
        market_order(
            context,
            symbol,
            side="buy" if target.signed > 0 else "sell",
            size=size,
            leverage=target.leverage,
            reduce_only=False,
            take_profit=target.take_profit,
            stop_loss=target.stop_loss,
            phase=phase,
            risk=risk,
            reason=reason,
            before=position_view(current),
            after={"side": target.side, "size": target.size},
            notional=size * mark,
        )
    )
    return Holding(
        id=POSITION_ID_PLACEHOLDER,
        side=target.side,
        size=target.size,
        entry=mark,
        leverage=target.leverage,
        margin=money(mark * target.size / target.leverage),
        take_profit=target.take_profit,
        stop_loss=target.stop_loss,
    )


def set_leverage(
    context: Context, symbol: str, holding: Holding, target: Target, out: list[Action]
) -> Holding:
    """One call when the leverage differs; the exchange resets margin to entry*size/leverage."""
    if holding.leverage == target.leverage:
        return holding
    after = replace(holding, leverage=target.leverage)
    after = replace(after, margin=after.requirement)
    out.append(
        make_action(
            "set_leverage",
            symbol,
            Phase.LEVERAGE,
            Request(
                method="POST",
                path=f"/positions/{holding.id}/leverage",
                body={"leverage": target.leverage},
            ),
            before={"leverage": holding.leverage, "margin": holding.margin},
            after={"leverage": after.leverage, "margin": after.margin},
            risk="increase" if target.leverage > holding.leverage else "reduce",
            reason=f"leverage {holding.leverage}x -> {target.leverage}x",
        )
    )
    return after


def resize(
    context: Context, symbol: str, holding: Holding, target: Target, out: list[Action]
) -> Holding:
    """One market order toward the target on the same side: add at mark, or reduce pro rata."""
    mark = mark_of(context, symbol)
    delta = target.size - holding.size
    grows = delta > 0
    size = abs(delta)
    if grows:
        entry = (holding.entry * holding.size + mark * size) / target.size
        margin = holding.margin + money(mark * size / holding.leverage)
    else:
        entry = holding.entry
        margin = money(holding.margin * target.size / holding.size)
    out.append(
        market_order(
            context,
            symbol,
            side=("buy" if holding.side == "long" else "sell")
            if grows
            else ("sell" if holding.side == "long" else "buy"),
            size=size,
            leverage=holding.leverage,
            reduce_only=not grows,
            take_profit=None,
            stop_loss=None,
            phase=Phase.INCREASE if grows else Phase.REDUCE,
            risk="increase" if grows else "reduce",
            reason=f"{'increase' if grows else 'reduce'} {holding.side} "
            f"{holding.size:f} -> {target.size:f}",
            before=position_view(holding),
            after={"side": holding.side, "size": target.size},
            notional=size * mark,
        )
    )
    return replace(holding, size=target.size, entry=entry, margin=margin)


def adjust_margin(
    context: Context, symbol: str, holding: Holding, target: Target, out: list[Action]
) -> Holding:
    """One add or reduce of the difference between the predicted and the wanted margin."""
    if target.margin is None:
        return holding
    difference = target.margin - holding.margin
    if abs(difference) <= context.margin_tolerance(symbol):
        return holding
    mode = "add" if difference > 0 else "reduce"
    amount = money(abs(difference))
    out.append(
        make_action(
            "adjust_margin",
            symbol,
            Phase.MARGIN,
            Request(
                method="POST",
                path=f"/positions/{holding.id}/margin",
                body={"mode": mode, "amount": amount},
            ),
            before={"margin": holding.margin},
            after={"margin": target.margin},
            risk="reduce" if mode == "add" else "increase",
            reason=f"{mode} margin {amount:f}",
        )
    )
    return replace(holding, margin=target.margin)


def set_tpsl(
    context: Context, symbol: str, holding: Holding, target: Target, out: list[Action]
) -> Holding:
    """Both prices in one call when either differs; left out of the file means kept as is."""
    target = replace(
        target,
        take_profit=holding.take_profit if target.keep_take_profit else target.take_profit,
        stop_loss=holding.stop_loss if target.keep_stop_loss else target.stop_loss,
    )
    if (holding.take_profit, holding.stop_loss) == (target.take_profit, target.stop_loss):
        return holding
    out.append(
        make_action(
            "set_tpsl",
            symbol,
            Phase.TPSL,
            Request(
                method="POST",
                path=f"/positions/{holding.id}/tpsl",
                body={"takeProfitPrice": target.take_profit, "stopLossPrice": target.stop_loss},
            ),
            before={"take_profit": holding.take_profit, "stop_loss": holding.stop_loss},
            after={"take_profit": target.take_profit, "stop_loss": target.stop_loss},
            reason=_tpsl_reason(target),
        )
    )
    return replace(holding, take_profit=target.take_profit, stop_loss=target.stop_loss)


def _tpsl_reason(target: Target) -> str:
    if target.take_profit is None and target.stop_loss is None:
        return "clear TP/SL"
    tp = f"{target.take_profit:f}" if target.take_profit is not None else "none"
    sl = f"{target.stop_loss:f}" if target.stop_loss is not None else "none"
    return f"TP {tp} / SL {sl}"


def close_position(context: Context, symbol: str, holding: Holding, why: str) -> Action:
    """Going flat is one market close of the whole position."""
    mark = mark_of(context, symbol)
    return make_action(
        "close_position",
        symbol,
        Phase.REDUCE,
        Request(method="POST", path=f"/positions/{holding.id}/close"),
        before=position_view(holding),
        after=position_view(None),
        notional=holding.size * mark,
        risk="reduce",
        reason=f"close {holding.side} {holding.size:f} ({why})",
    )
