"""The planner's own model: a position as predicted after each step, the resolved target,
what planning one symbol produced, and the context every rule reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Literal

from reconciler.errors import SpecError
from reconciler.model.account import Position
from reconciler.model.desired import (
    DesiredState,
)
from reconciler.model.plan import (
    Action,
)
from reconciler.model.snapshot import Snapshot

TAKER_FEE_RATE = Decimal("0.0005")
DEFAULT_MAINTENANCE_RATE = Decimal("0.005")
MARGIN_QUANTUM = Decimal("0.00000001")
# Digits the planner computes with: a size of 10^15 in steps of 10^-8, valued at a price of
# 10^15, needs about 40; Python's default of 28 would raise instead of answering.
PLANNER_PRECISION = 60

Side = Literal["long", "short"]


# -- the planner's model of a position -----------------------------------------------------


@dataclass(frozen=True)
class Holding:
    """A position as the planner predicts it after each step; `id` None: opened by this plan."""

    id: str | None
    side: Side
    size: Decimal
    entry: Decimal
    leverage: int
    margin: Decimal
    take_profit: Decimal | None
    stop_loss: Decimal | None

    @property
    def signed(self) -> Decimal:
        return self.size if self.side == "long" else -self.size

    @property
    def requirement(self) -> Decimal:
        """Initial margin the exchange insists on: entry * size / leverage."""
        return money(self.entry * self.size / self.leverage)

    @classmethod
    def from_position(cls, position: Position) -> Holding:
        return cls(
            id=position.id,
            side=position.side,
            size=position.size,
            entry=position.entry_price,
            leverage=position.leverage,
            margin=position.margin,
            take_profit=position.take_profit_price,
            stop_loss=position.stop_loss_price,
        )


@dataclass(frozen=True)
class Target:
    """The resolved desired position: a signed size (0 = flat) and its attributes."""

    signed: Decimal
    leverage: int
    margin: Decimal | None
    take_profit: Decimal | None
    stop_loss: Decimal | None
    # Left out of the file: keep what a position that stays open has (a new one has none).
    keep_take_profit: bool = False
    keep_stop_loss: bool = False

    @property
    def side(self) -> Side:
        return "long" if self.signed > 0 else "short"

    @property
    def size(self) -> Decimal:
        return abs(self.signed)


@dataclass
class SymbolPlan:
    """What planning one symbol produced; `after` is the predicted position (None = none)."""

    symbol: str
    actions: list[Action] = field(default_factory=list)
    after: Holding | None = None
    problems: list[str] = field(default_factory=list)
    placed: list[int] = field(default_factory=list)  # indices of the file's orders placed
    infeasible: list[str] = field(default_factory=list)  # why the symbol is left alone
    # The position predicted after each action (parallel to `actions`), and the indices of
    # actions that complete the step of the one before them (a margin top-up right after the
    # call that set the margin): the prefix check judges the state after both.
    predicted: list[Holding | None] = field(default_factory=list)
    completes: set[int] = field(default_factory=set)

    def add(self, action: Action, holding: Holding | None, *, completes: bool = False) -> None:
        """Append `action`, after which the symbol's position is predicted to be `holding`."""
        if completes:
            self.completes.add(len(self.actions))
        self.actions.append(action)
        self.predicted.append(holding)

    def clear(self, holding: Holding | None) -> None:
        """No calls after all: the symbol stays as `holding` (the live position)."""
        self.actions, self.predicted, self.completes, self.placed = [], [], set(), []
        self.after = holding


@dataclass(frozen=True)
class Context:
    desired: DesiredState
    snapshot: Snapshot

    maintenance_rate: Decimal = DEFAULT_MAINTENANCE_RATE  # see `reconciler.plan.liquidation`

    @property
    def user_id(self) -> str:
        return self.snapshot.user_id

    def margin_tolerance(self, symbol: str) -> Decimal:
        own = self.desired.symbols.get(symbol)
        if own is not None and own.tolerance is not None and own.tolerance.margin is not None:
            return own.tolerance.margin
        return self.desired.defaults.tolerance.margin

    def within_tolerance(self, symbol: str, current: Holding | None, target: Decimal) -> bool:
        """Is the position `current` close enough to the signed `target` to leave it alone?

        Never across sides (flat counts as a side), never by the minimum size or more; else by the
        symbol's size tolerance in contracts, or its (else the default) notional one in USDT
        at the mark.
        """
        now = current.signed if current is not None else Decimal(0)
        if (now > 0) != (target > 0) or (now < 0) != (target < 0):
            return False
        difference = abs(target - now)
        if difference == 0:
            return True
        spec = self.snapshot.specs.get(symbol)
        if spec is not None and difference >= spec.min_size:
            return False
        own = self.desired.symbols.get(symbol)
        tolerance = own.tolerance if own is not None else None
        if tolerance is not None and tolerance.size is not None:
            return difference <= tolerance.size
        notional = self.desired.defaults.tolerance.notional
        if tolerance is not None and tolerance.notional is not None:
            notional = tolerance.notional
        mark = self.snapshot.mark(symbol) or (current.entry if current is not None else None)
        return mark is not None and difference * mark <= notional


def round_down(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def mark_of(context: Context, symbol: str) -> Decimal:
    mark = context.snapshot.mark(symbol)
    if mark is None:
        # The reader must supply a mark for every symbol `needs()` names; a position has one.
        raise SpecError([f"{symbol}: no mark price in the snapshot"])
    return mark


def money(value: Decimal) -> Decimal:
    """Money to 8 decimal places: what the planner predicts and what it asks to move."""
    rounded = value.quantize(MARGIN_QUANTUM, rounding=ROUND_HALF_EVEN).normalize()
    exponent = rounded.as_tuple().exponent
    return rounded.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else rounded
