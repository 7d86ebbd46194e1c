"""Checks of a desired-state file beyond one field at a time: across fields, and on the exchange.

`semantic_problems` runs at load: rules that compare values within the file (one amount per
position, take-profit on the right side of stop-loss, leverage under `policy.max_leverage`).
`check_against_specs` runs once the exchange's symbol specs are known (`validate` unless
`--offline`, and every plan): the symbol is listed and trading, sizes are multiples of its step
and at least its minimum, prices are multiples of its tick. Each problem names its
`file:line:col` and field.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from reconciler.model.account import SymbolSpec
from reconciler.model.desired.state import DesiredState
from reconciler.model.desired.symbols import DesiredPosition
from reconciler.yamlsource import PathKey

__all__ = ["check_against_specs", "semantic_problems"]


def semantic_problems(desired: DesiredState) -> list[str]:
    """Cross-field rules pydantic's per-field checks cannot express, each with its place."""
    problems: list[str] = []
    max_leverage = desired.policy.max_leverage
    if max_leverage is not None and desired.defaults.leverage > max_leverage:
        problems.append(
            desired.problem(
                ("defaults", "leverage"), f"{desired.defaults.leverage} exceeds policy.max_leverage"
            )
        )
    lock = desired.lock
    if lock.backend == "file" and "dsn_env" in lock.model_fields_set:
        problems.append(
            desired.problem(("lock", "dsn_env"), "only the postgres backend takes a dsn_env")
        )
    for symbol, entry in desired.symbols.items():
        base: PathKey = ("symbols", symbol)
        tolerance = entry.tolerance
        if tolerance is not None and tolerance.size is not None and tolerance.notional is not None:
            problems.append(
                desired.problem((*base, "tolerance", "notional"), "give only one of size, notional")
            )
        if entry.position is not None:
            problems.extend(_position_problems(desired, (*base, "position"), entry.position))
        for index, order in enumerate(entry.orders or ()):
            if max_leverage is not None and order.leverage and order.leverage > max_leverage:
                problems.append(
                    desired.problem(
                        (*base, "orders", index, "leverage"),
                        f"{order.leverage} exceeds policy.max_leverage {max_leverage}",
                    )
                )
    return problems


def _position_problems(
    desired: DesiredState, path: PathKey, position: DesiredPosition
) -> list[str]:
    problems: list[str] = []
    amounts = [
        name for name in ("size", "notional", "weight") if getattr(position, name) is not None
    ]
    if position.side == "flat":
        for name in (
            "size",
            "notional",
            "weight",
            "leverage",
            "margin",
            "take_profit",
            "stop_loss",
        ):
            if getattr(position, name) is not None:
                problems.append(desired.problem((*path, name), "a flat position takes no " + name))
        return problems
    if not amounts:
        problems.append(desired.problem(path, "give one of size, notional or weight"))
    elif len(amounts) > 1:
        problems.append(
            desired.problem((*path, amounts[1]), f"give only one of {', '.join(amounts)}")
        )
    max_leverage = desired.policy.max_leverage
    if max_leverage is not None and position.leverage and position.leverage > max_leverage:
        problems.append(
            desired.problem(
                (*path, "leverage"),
                f"{position.leverage} exceeds policy.max_leverage {max_leverage}",
            )
        )
    tp, sl = position.take_profit, position.stop_loss
    if tp is not None and sl is not None:
        if position.side == "long" and tp <= sl:
            problems.append(
                desired.problem(
                    (*path, "take_profit"), "a long's take_profit must be above stop_loss"
                )
            )
        if position.side == "short" and tp >= sl:
            problems.append(
                desired.problem(
                    (*path, "take_profit"), "a short's take_profit must be below stop_loss"
                )
            )
    return problems


def check_against_specs(desired: DesiredState, specs: Mapping[str, SymbolSpec]) -> list[str]:
    """Problems of the file against the exchange's symbol specs: existence, steps, ticks."""
    problems: list[str] = []
    for symbol, entry in desired.symbols.items():
        base: PathKey = ("symbols", symbol)
        spec = specs.get(symbol)
        if spec is None:
            problems.append(desired.problem(base, "the exchange does not list this symbol"))
            continue
        if spec.status != "trading":
            problems.append(desired.problem(base, f"the symbol is {spec.status}"))
        leverage = desired.position_leverage(symbol)
        if leverage > spec.max_leverage:
            where: PathKey = (*base, "position", "leverage")
            if entry.position is None or entry.position.leverage is None:
                where = ("defaults", "leverage")
            problems.append(
                desired.problem(
                    where, f"{leverage} exceeds {symbol}'s max leverage {spec.max_leverage}"
                )
            )
        position = entry.position
        if position is not None:
            path = (*base, "position")
            if position.size is not None:
                problems.extend(_size_problems(desired, (*path, "size"), position.size, spec))
            for name in ("take_profit", "stop_loss"):
                price = getattr(position, name)
                if price is not None:
                    problems.extend(_price_problems(desired, (*path, name), price, spec))
        for index, order in enumerate(entry.orders or ()):
            path = (*base, "orders", index)
            problems.extend(_size_problems(desired, (*path, "size"), order.size, spec))
            problems.extend(_price_problems(desired, (*path, "price"), order.price, spec))
            for name in ("take_profit", "stop_loss"):
                trigger = getattr(order, name)
                if trigger is not None:
                    problems.extend(_price_problems(desired, (*path, name), trigger, spec))
            if order.leverage and order.leverage > spec.max_leverage:
                problems.append(
                    desired.problem(
                        (*path, "leverage"),
                        f"{order.leverage} exceeds {symbol}'s max leverage {spec.max_leverage}",
                    )
                )
    return problems


def _size_problems(
    desired: DesiredState, path: PathKey, size: Decimal, spec: SymbolSpec
) -> list[str]:
    problems: list[str] = []
    if size % spec.step_size != 0:
        problems.append(
            desired.problem(path, f"{size} is not a multiple of the size step {spec.step_size}")
        )
    if size < spec.min_size:
        problems.append(desired.problem(path, f"{size} is below the minimum size {spec.min_size}"))
    return problems


def _price_problems(
    desired: DesiredState, path: PathKey, price: Decimal, spec: SymbolSpec
) -> list[str]:
    if price % spec.tick_size != 0:
        return [
            desired.problem(path, f"{price} is not a multiple of the tick size {spec.tick_size}")
        ]
    return []
