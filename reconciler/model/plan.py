"""Actions and plans: the frozen values that flow from the planner to the renderer and apply.

An action is one call's worth of change: its intent (what to do, in the domain's words, see
`reconciler.model.intents`) plus everything a reviewer needs to judge it (before and after,
notional, risk direction, reason). A venue turns the intent into the exact call (`CallOf`),
which the saved plan shows beside it. A plan is an ordered tuple of actions plus the facts it
was computed from, so a saved plan can be checked for staleness before anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from enum import IntEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from reconciler.model.intents import Intent, IntentKind

__all__ = [
    "Action",
    "ActionKind",
    "CallOf",
    "Phase",
    "Plan",
    "PlanSummary",
    "PositionView",
    "ReadHint",
    "Request",
    "Risk",
    "SymbolChange",
]

ActionKind = IntentKind
Risk = Literal["reduce", "increase", "neutral"]


class Phase(IntEnum):
    """Execution order across symbols, so that no intermediate state is riskier than the
    start or the end (see `reconciler.plan.prefix`).

    Orders are cancelled and positions reduced first (less exposure, margin freed); leverage
    changes come after the reductions whose freed margin a lowering needs, and before the
    increases a raise frees margin for; margin moves come before the increases they fund;
    increases carry their TP/SL in the order body; resting orders are placed last.
    """

    CANCEL_ORDERS = 1
    REDUCE = 2
    LEVERAGE = 3
    MARGIN = 4
    INCREASE = 5
    TPSL = 6
    PLACE_ORDERS = 7

    @property
    def label(self) -> str:
        """Lower-case name, as written in the JSON plan (`cancel_orders`, `reduce`, ...)."""
        return self.name.lower()


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Request(Frozen):
    """An exact call as a venue sends it: method, path below its API prefix, JSON body.

    The core never reads one; it is shown (plan, journal) and sent as the venue made it.
    """

    method: Literal["GET", "POST"]
    path: str
    body: dict[str, Any] | None = None


# A venue's mapping from an intent to its exact call, for showing a plan.
CallOf = Callable[[Intent], Request]


class Action(Frozen):
    intent: Intent
    phase: Phase
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)
    notional: Decimal = Decimal(0)
    risk: Risk = "neutral"
    reason: str
    # Carried out in order when this call is certainly not executed (refused, or proved
    # absent): they put back what the call just before it on the same symbol changed, e.g.
    # the leverage a margin top-up was to follow and the margin above its requirement, so a
    # failure between the two leaves the symbol as it started.
    on_failure: tuple[Intent, ...] = ()
    # Within its phase, wave 0 runs (every symbol) before wave 1: a symbol whose calls of the
    # phase raise the account's worst-case exposure waits until those that lower it are done,
    # since the symbols of one wave run concurrently, in any interleaving.
    wave: Literal[0, 1] = 0

    @field_validator("phase", mode="before")
    @classmethod
    def _phase_by_name(cls, value: object) -> object:
        """A saved JSON plan names phases (`"reduce"`); accept the name as well as the number."""
        if isinstance(value, str) and value.upper() in Phase.__members__:
            return Phase[value.upper()]
        return value

    @field_serializer("phase")
    def _phase_name(self, phase: Phase) -> str:
        """Phases are written by name everywhere (plan JSON, journal), never as a number."""
        return phase.label

    @property
    def kind(self) -> ActionKind:
        return self.intent.kind

    @property
    def symbol(self) -> str:
        return self.intent.symbol

    @property
    def on_new_position(self) -> bool:
        """True when the intent names the position this plan opens (its id is not known)."""
        return self.intent.on_new_position


class PlanSummary(Frozen):
    gross_before: Decimal = Decimal(0)
    gross_after: Decimal = Decimal(0)
    estimated_fees: Decimal = Decimal(0)
    orders_to_place: int = 0
    orders_to_cancel: int = 0
    symbols_changed: tuple[str, ...] = ()
    symbols_unchanged: tuple[str, ...] = ()


class PositionView(Frozen):
    """A position as a reviewer reads it; `notional` is size at the plan's mark."""

    side: Literal["long", "short", "flat"] = "flat"
    size: Decimal = Decimal(0)
    notional: Decimal | None = None
    leverage: int | None = None
    margin: Decimal | None = None
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    liquidation_price: Decimal | None = None
    # Percent of the mark between the mark and the liquidation price (None: never liquidated).
    liquidation_distance: Decimal | None = None


class SymbolChange(Frozen):
    """Before and after of one symbol the plan changes, predicted after every action."""

    symbol: str
    mark: Decimal | None = None
    before: PositionView = PositionView()
    after: PositionView = PositionView()
    orders_before: int = 0
    orders_after: int = 0
    orders_cancelled: int = 0
    orders_placed: int = 0


class ReadHint(Frozen):
    """What the read a plan was made from held, so that apply's first read asks for all of it
    in one round trip instead of learning it step by step (the count of open orders tells how
    many pages to read with page 1; the symbols, which marks and book tops to read beside the
    account). A hint for speed only: apply reads for itself everything it relies on, and a
    wrong hint costs a round trip or a wasted public read, never a check."""

    open_orders: int = Field(default=0, ge=0)
    market_stats: tuple[str, ...] = ()
    books: tuple[str, ...] = ()


class Plan(Frozen):
    # 2: actions carry typed intents (1 carried the exchange's requests; refused on load).
    format_version: Literal[2] = 2
    user_id: str
    created_at_ms: int | None = None  # stamped by the command, the planner has no clock
    fingerprint: str
    symbol_fingerprints: dict[str, str]
    # The desired state the plan was made for: a saved plan must be applied with the same
    # file, since the verification passes after it re-plan from that file.
    desired_fingerprint: str | None = None
    marks: dict[str, Decimal]
    read_hint: ReadHint | None = None  # None: a plan saved before plans carried one
    actions: tuple[Action, ...]
    violations: tuple[str, ...] = ()
    # Symbols whose change cannot be made exactly (below the minimum size, off the step): reported
    # and left alone, while the rest of the plan goes ahead.
    infeasible: tuple[str, ...] = ()
    summary: PlanSummary = PlanSummary()
    empty_reason: str | None = None  # why there is nothing to do, when there is nothing
    changes: tuple[SymbolChange, ...] = ()  # one per changed symbol, in symbol order

    @property
    def is_empty(self) -> bool:
        return not self.actions
