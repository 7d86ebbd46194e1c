"""Rules 1–3 and 5: the wanted size of a position, then the calls that reach it."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Literal

from reconciler.model.desired import (
    DesiredPosition,
)
from reconciler.model.intents import (
    NEW_POSITION,
    AdjustMargin,
    ClosePosition,
    Intent,
    SetLeverage,
    SetTpSl,
)
from reconciler.model.plan import Action, Phase, Risk
from reconciler.plan.actions import (
    make_action,
    market_order,
    position_view,
)
from reconciler.plan.liquidation import distance_percent
from reconciler.plan.model import (
    Context,
    Holding,
    SymbolPlan,
    Target,
    mark_of,
    money,
    round_down,
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
        size = round_down(amount / mark, spec.step_size)
        if size < spec.min_size:
            infeasible.append(
                desired.problem(
                    (*path, field_name),
                    f"{amount:f} USDT at mark {mark:f} is {size:f}, "
                    f"below the minimum size {spec.min_size:f}",
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
#
# The calls of one symbol come in this order, each in its phase (see `Phase`): a reduction
# or a close; the leverage, with a margin top-up right after it when the raise would leave
# less margin than the end needs; margin moved before an increase it funds; the increase or
# the opening order, carrying TP/SL and followed at once by its own top-up or trim; then any
# TP/SL change that no order carried. `reconciler.plan.prefix` checks the states between.


def plan_position(
    context: Context, symbol: str, current: Holding | None, target: Target, sp: SymbolPlan
) -> Holding | None:
    """Append the position's calls to `sp`; return the predicted position afterwards."""
    within = context.within_tolerance(symbol, current, target.signed)
    if target.signed == 0:
        if current is None or within:
            return current
        sp.add(close_position(context, symbol, current, "desired flat"), None)
        return None
    flips = current is not None and current.side != target.side  # never within tolerance
    if flips and current is not None and armed(context, symbol, current):
        reason = f"flip to {target.side} {target.size:f}: close first"
        sp.add(close_position(context, symbol, current, reason), None)
        current = None
    if current is None or current.side != target.side:
        holding = open_position(context, symbol, current, target, sp)
        phase = sp.actions[-1].phase  # the top-up completes the opening order's step
        holding = margin_after_increase(context, symbol, holding, target, sp, phase)
        return set_tpsl(context, symbol, holding, target, sp)
    holding = current
    if not within and target.size < holding.size:
        holding = resize(context, symbol, holding, target, sp)
    grows = not within and target.size > holding.size
    added = _margin_an_increase_adds(context, symbol, holding, target) if grows else Decimal(0)
    levered = set_leverage(context, symbol, holding, target, sp)
    if levered is not holding:
        holding = top_up(context, symbol, holding, levered, target, added, sp)
    else:
        holding = margin_before_increase(context, symbol, holding, target, added, sp)
    if grows:
        holding = resize(context, symbol, holding, target, sp)
        holding = margin_after_increase(context, symbol, holding, target, sp, Phase.INCREASE)
    else:
        holding = margin_after_increase(context, symbol, holding, target, sp, Phase.MARGIN)
    return set_tpsl(context, symbol, holding, target, sp)


def armed(context: Context, symbol: str, holding: Holding) -> bool:
    """Could something close `holding` on its own before a one-order flip executes?

    A TP or SL on it, a resting reduce-only order, or a liquidation price within the
    policy's distance. A one-order flip raced by such a close opens the whole order's size on
    the other side (a sell of 0.5 meant to turn long 0.3 into short 0.2 leaves short 0.5), so
    such a flip is a close followed by an open: one call more, and no state beyond the ends.
    """
    if holding.take_profit is not None or holding.stop_loss is not None:
        return True
    if any(order.reduce_only for order in context.snapshot.orders(symbol)):
        return True
    floor = context.desired.policy.min_liquidation_distance
    if floor is None:
        return False
    distance = distance_percent(holding, mark_of(context, symbol), context.maintenance_rate)
    return distance is not None and distance < floor


def open_position(
    context: Context, symbol: str, current: Holding | None, target: Target, sp: SymbolPlan
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
    holding = Holding(
        id=NEW_POSITION,
        side=target.side,
        size=target.size,
        entry=mark,
        leverage=target.leverage,
        margin=money(mark * target.size / target.leverage),
        take_profit=target.take_profit,
        stop_loss=target.stop_loss,
    )
    action = market_order(
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
    sp.add(action, holding)
    return holding


def set_leverage(
    context: Context, symbol: str, holding: Holding, target: Target, sp: SymbolPlan
) -> Holding:
    """One call when the leverage differs; the exchange resets margin to entry*size/leverage."""
    if holding.leverage == target.leverage:
        return holding
    after = replace(holding, leverage=target.leverage)
    after = replace(after, margin=after.requirement)
    action = make_action(
        _leverage_intent(symbol, holding, target.leverage),
        Phase.LEVERAGE,
        before={"leverage": holding.leverage, "margin": holding.margin},
        after={"leverage": after.leverage, "margin": after.margin},
        risk="increase" if target.leverage > holding.leverage else "reduce",
        reason=f"leverage {holding.leverage}x -> {target.leverage}x",
    )
    sp.add(action, after)
    return after


def top_up(
    context: Context,
    symbol: str,
    before: Holding,
    levered: Holding,
    target: Target,
    added: Decimal,
    sp: SymbolPlan,
) -> Holding:
    """The margin the end needs, added right after the leverage change that stripped it.

    A raise sets the margin to the new, lower requirement; the end's margin must come back
    in the same step (the same chain of calls, nothing between). If the top-up is
    certainly not executed, apply sends `on_failure`: the leverage back, and the margin the
    position held above its old requirement, which returns it to its start. A lowering
    leaves more margin than before, so its top-up needs no undo (and one would be worse).
    """
    wanted = _margin_before_increase(target, added)
    if wanted is None or wanted - levered.margin <= context.margin_tolerance(symbol):
        return levered
    amount = money(wanted - levered.margin)
    after = replace(levered, margin=levered.margin + amount)
    undo: tuple[Intent, ...] = ()
    reason = f"add margin {amount:f}"
    if levered.margin < before.margin:
        undo = (_leverage_intent(symbol, before, before.leverage),)
        extra = money(before.margin - before.requirement)
        if extra > context.margin_tolerance(symbol):
            undo += (_margin_intent(symbol, before, "add", extra),)
        reason += f" (the leverage change took it; back to {before.leverage}x if this fails)"
    action = _margin_action(
        symbol, Phase.LEVERAGE, levered, "add", amount, after.margin, on_failure=undo, reason=reason
    )
    sp.add(action, after, completes=True)
    return after


def margin_before_increase(
    context: Context,
    symbol: str,
    holding: Holding,
    target: Target,
    added: Decimal,
    sp: SymbolPlan,
) -> Holding:
    """A margin add that the end needs comes before the increase, so it protects that too."""
    wanted = _margin_before_increase(target, added)
    if wanted is None or wanted - holding.margin <= context.margin_tolerance(symbol):
        return holding
    amount = money(wanted - holding.margin)
    after = replace(holding, margin=holding.margin + amount)
    sp.add(_margin_action(symbol, Phase.MARGIN, holding, "add", amount, after.margin), after)
    return after


def margin_after_increase(
    context: Context,
    symbol: str,
    holding: Holding,
    target: Target,
    sp: SymbolPlan,
    phase: Phase,
) -> Holding:
    """What still differs from the wanted margin once the size is reached, moved at once.

    After an opening order this is the top-up of a new position (the order only posts the
    initial requirement) and completes the order's step; after an increase that an earlier
    add over-funded, or on a position that stays as it is, it is a reduction.
    """
    if target.margin is None:
        return holding
    difference = target.margin - holding.margin
    if abs(difference) <= context.margin_tolerance(symbol):
        return holding
    mode: Literal["add", "reduce"] = "add" if difference > 0 else "reduce"
    amount = money(abs(difference))
    after = replace(holding, margin=target.margin)
    action = _margin_action(symbol, phase, holding, mode, amount, target.margin)
    previous = sp.actions[-1] if sp.actions else None
    follows_order = (
        previous is not None and previous.kind == "place_order" and previous.phase == phase
    )
    sp.add(action, after, completes=mode == "add" and follows_order)
    return after


def _margin_before_increase(target: Target, added: Decimal) -> Decimal | None:
    """The margin wanted just before an increase that will post `added` more of it."""
    if target.margin is None:
        return None
    return target.margin - added


def _margin_an_increase_adds(
    context: Context, symbol: str, holding: Holding, target: Target
) -> Decimal:
    """The initial margin an add of `target.size - holding.size` posts, at the new leverage."""
    mark = mark_of(context, symbol)
    return money(mark * (target.size - holding.size) / target.leverage)


def _margin_action(
    symbol: str,
    phase: Phase,
    holding: Holding,
    mode: Literal["add", "reduce"],
    amount: Decimal,
    after: Decimal,
    *,
    on_failure: tuple[Intent, ...] = (),
    reason: str | None = None,
) -> Action:
    return make_action(
        _margin_intent(symbol, holding, mode, amount),
        phase,
        before={"margin": holding.margin},
        after={"margin": after},
        risk="reduce" if mode == "add" else "increase",
        reason=reason or f"{mode} margin {amount:f}",
        on_failure=on_failure,
    )


def _margin_intent(
    symbol: str, holding: Holding, mode: Literal["add", "reduce"], amount: Decimal
) -> AdjustMargin:
    return AdjustMargin(symbol=symbol, position_id=holding.id, mode=mode, amount=amount)


def _leverage_intent(symbol: str, holding: Holding, leverage: int) -> SetLeverage:
    return SetLeverage(symbol=symbol, position_id=holding.id, leverage=leverage)


def resize(
    context: Context, symbol: str, holding: Holding, target: Target, sp: SymbolPlan
) -> Holding:
    """One market order toward the target on the same side: add at mark, or reduce pro rata.

    An add carries the TP/SL the position should have: if a stop fires while the add is on
    its way, the add opens a new position, and that one is protected from its first fill.
    """
    mark = mark_of(context, symbol)
    delta = target.size - holding.size
    grows = delta > 0
    size = abs(delta)
    take_profit = stop_loss = None
    if grows:
        entry = (holding.entry * holding.size + mark * size) / target.size
        margin = holding.margin + money(mark * size / holding.leverage)
        take_profit, stop_loss = _kept_or_wanted(holding, target)
    else:
        entry = holding.entry
        margin = money(holding.margin * target.size / holding.size)
    after = replace(holding, size=target.size, entry=entry, margin=margin)
    if take_profit is not None:
        after = replace(after, take_profit=take_profit)
    if stop_loss is not None:
        after = replace(after, stop_loss=stop_loss)
    action = market_order(
        context,
        symbol,
        side=("buy" if holding.side == "long" else "sell")
        if grows
        else ("sell" if holding.side == "long" else "buy"),
        size=size,
        leverage=holding.leverage,
        reduce_only=not grows,
        take_profit=take_profit,
        stop_loss=stop_loss,
        phase=Phase.INCREASE if grows else Phase.REDUCE,
        risk="increase" if grows else "reduce",
        reason=f"{'increase' if grows else 'reduce'} {holding.side} "
        f"{holding.size:f} -> {target.size:f}",
        before=position_view(holding),
        after={"side": holding.side, "size": target.size},
        notional=size * mark,
    )
    sp.add(action, after)
    return after


def _kept_or_wanted(holding: Holding, target: Target) -> tuple[Decimal | None, Decimal | None]:
    """The TP/SL the position ends with: the file's, or (left out of it) the live one."""
    take_profit = holding.take_profit if target.keep_take_profit else target.take_profit
    stop_loss = holding.stop_loss if target.keep_stop_loss else target.stop_loss
    return take_profit, stop_loss


def set_tpsl(
    context: Context, symbol: str, holding: Holding, target: Target, sp: SymbolPlan
) -> Holding:
    """Both prices in one call when either still differs; left out of the file means kept.

    When an earlier call of the plan changed the position (a reduction, an increase), the
    call names the position as it is then (the id placeholder, resolved by apply from a read
    just before it), not the id read before the plan: a stop that fired in between leaves no
    position to protect, or a new one.
    """
    take_profit, stop_loss = _kept_or_wanted(holding, target)
    if (holding.take_profit, holding.stop_loss) == (take_profit, stop_loss):
        return holding
    changed = any(action.kind in ("place_order", "close_position") for action in sp.actions)
    position_id = NEW_POSITION if changed else holding.id
    after = replace(holding, take_profit=take_profit, stop_loss=stop_loss)
    intent = SetTpSl(
        symbol=symbol, position_id=position_id, take_profit=take_profit, stop_loss=stop_loss
    )
    action = make_action(
        intent,
        Phase.TPSL,
        before={"take_profit": holding.take_profit, "stop_loss": holding.stop_loss},
        after={"take_profit": take_profit, "stop_loss": stop_loss},
        # removing a stop (or a take-profit) takes protection away: the gate holds it back
        risk="increase" if _removes(holding, take_profit, stop_loss) else "neutral",
        reason=_tpsl_reason(take_profit, stop_loss),
    )
    sp.add(action, after)
    return after


def _removes(holding: Holding, take_profit: Decimal | None, stop_loss: Decimal | None) -> bool:
    return (holding.stop_loss is not None and stop_loss is None) or (
        holding.take_profit is not None and take_profit is None
    )


def _tpsl_reason(take_profit: Decimal | None, stop_loss: Decimal | None) -> str:
    if take_profit is None and stop_loss is None:
        return "clear TP/SL"
    tp = f"{take_profit:f}" if take_profit is not None else "none"
    sl = f"{stop_loss:f}" if stop_loss is not None else "none"
    return f"TP {tp} / SL {sl}"


def close_position(context: Context, symbol: str, holding: Holding, why: str) -> Action:
    """Going flat is one market close of the whole position."""
    mark = mark_of(context, symbol)
    return make_action(
        ClosePosition(symbol=symbol, position_id=holding.id),
        Phase.REDUCE,
        before=position_view(holding),
        after=position_view(None),
        notional=holding.size * mark,
        risk="reduce",
        reason=f"close {holding.side} {holding.size:f} ({why})",
    )
