"""One call of a plan: make its intent concrete, send it once, and find out what it did.

`Calls` is the part of the engine that handles a single action: fill in the new position's
id, take the baseline settlement will compare against, journal the exact call, carry the
intent out through the venue, classify the outcome, settle an unknown one from reads alone
(never by sending it again), and undo a half-done step once its second call certainly failed.
The engine (`reconciler.apply.engine`) decides which action runs when.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Generic, TypeVar, assert_never

import anyio
import anyio.lowlevel

from reconciler.apply.events import ActionFinished, ActionStarted, ProgressSink, Settling
from reconciler.apply.journal import Journal, Outcome
from reconciler.apply.outcome import Outcome as CallOutcome
from reconciler.apply.outcome import classify
from reconciler.apply.readahead import PositionReadAhead
from reconciler.apply.report import ActionResult
from reconciler.apply.settle import (
    Baseline,
    SettleConfig,
    needs_baseline,
    recent_fill_order_ids,
    settle,
    take_baseline,
)
from reconciler.apply.venue import Venue
from reconciler.apply.visibility import Expectation, VisibilityTracker, expectation_for
from reconciler.errors import OrderNotOpen, OutcomeUnknown, TransportError, VenueError
from reconciler.model.account import CancelAllResult, Order, Position
from reconciler.model.intents import Answer, CancelOrder, Intent, with_position
from reconciler.model.plan import Action
from reconciler.model.snapshot import Snapshot

__all__ = ["Calls"]

log = logging.getLogger("reconciler.apply")

C = TypeVar("C", bound=Venue)

_CALL_OUTCOMES: dict[CallOutcome, Outcome] = {
    CallOutcome.ACCEPTED: "accepted",
    CallOutcome.REJECTED: "rejected",
    CallOutcome.NOT_SENT: "not_sent",
    CallOutcome.UNKNOWN: "unknown",
}


class Calls(Generic[C]):
    """The state one call needs and leaves: what the account is known to hold, what was sent."""

    def __init__(
        self,
        *,
        client: C,
        journal: Journal,
        progress: ProgressSink,
        settle_config: SettleConfig,
        visibility: VisibilityTracker,
        now_ms: Callable[[], int],
    ) -> None:
        self.client = client
        self.journal = journal
        self.progress = progress
        self.settle_config = settle_config
        self.visibility = visibility
        self.now_ms = now_ms
        # Orders this apply knows the origin of: never mistaken for an unknown call's effect.
        self.known_order_ids: set[str] = set()
        # Symbols no later pass may touch: a refusal or an outcome nobody could settle.
        self.excluded: dict[str, str] = {}
        self._pass_number = 0
        self._results: dict[int, ActionResult] = {}
        self._next_extra_index = 0  # compensating calls, numbered after the plan's own
        # Settlement baselines of the current pass (see `baseline`).
        self._pass_snapshot: Snapshot | None = None
        self._recent_fills: dict[str, frozenset[str]] | None = None
        self._recent_fills_lock = anyio.Lock()
        self._baselines: dict[str, Baseline] = {}
        # Positions read one round trip before the phase whose first call needs them.
        self.read_ahead = PositionReadAhead(self._read_fresh_position, self._read_fresh_positions)

    def _record_result(self, result: ActionResult, *, final: bool = True) -> ActionResult:
        """Journal a call's result; `final=False` when settlement will decide it."""
        self._results[result.index] = result
        self.journal.append(
            "result",
            pass_number=result.pass_number,
            index=result.index,
            symbol=result.action.symbol,
            kind=result.action.kind,
            outcome=result.outcome,
            status=result.status,
            code=result.code,
            detail=result.detail,
            latency_ms=None if result.latency_ms is None else round(result.latency_ms, 3),
        )
        if final:
            self._announce(result)
        return result

    def _announce(self, result: ActionResult) -> None:
        self.progress(
            ActionFinished(
                pass_number=result.pass_number,
                index=result.index,
                action=result.action,
                outcome=result.outcome,
                detail=result.detail,
                latency_ms=result.latency_ms,
            )
        )

    def _not_sent(self, index: int, action: Action, why: str) -> ActionResult:
        return self._record_result(
            ActionResult(self._pass_number, index, action, "not_sent", detail=why)
        )

    async def _undo(self, action: Action, failed: ActionResult) -> None:
        """Put back what the call before `action` changed, once `action` certainly failed.

        Only a call proved not executed (refused, settled absent, or never sent) is undone;
        an unknown one may have worked, and an undo on top of it could be the riskier state.
        The undo's calls run in order and stop at the first that is not plainly accepted.
        """
        if failed.outcome not in ("rejected", "settled_not_executed", "not_sent"):
            return
        for intent in action.on_failure:
            undo = Action(
                intent=intent,
                phase=action.phase,
                risk="reduce",
                reason=f"undo, as {action.reason} was {failed.outcome}",
            )
            index = self._next_extra_index
            self._next_extra_index += 1
            if (await self.execute(index, undo)).outcome != "accepted":
                return

    # ---- one call

    async def execute(self, index: int, action: Action) -> ActionResult:
        """Send one planned call exactly as planned and find out what it did."""
        # The last point where Ctrl-C stops this call: the send below is shielded.
        await anyio.lowlevel.checkpoint_if_cancelled()
        try:
            intent = await self._resolve(action)
        except _CannotSend as exc:
            return self._not_sent(index, action, str(exc))
        baseline: Baseline | None = None
        if needs_baseline(action):
            try:
                baseline = await self.baseline(action)
            except VenueError as exc:
                return self._not_sent(index, action, f"could not read the state first: {exc}")
            except _CannotSend as exc:
                return self._not_sent(index, action, str(exc))
            moved = _moved_since_plan(action, baseline)
            if moved is not None:
                return self._not_sent(index, action, moved)
        # From here the call is in flight: cancellation waits for it and its journal records.
        with anyio.CancelScope(shield=True):
            result = await self._send(index, action, intent, baseline)
        return result

    def reads_position_first(self, action: Action) -> bool:
        """Whether `execute` starts `action` with a fresh read of its position (`_resolve`,
        `baseline`): a position id to fill in, a margin move, a market order of a pass
        with a snapshot (without one, `take_baseline` reads the symbol whole)."""
        if action.on_new_position or action.kind == "adjust_margin":
            return True
        return action.intent.is_market and self._pass_snapshot is not None

    async def baseline(self, action: Action) -> Baseline:
        """What settlement of `action` compares against, read as seldom as is safe.

        A margin move is judged by its exact change, so its position is read just before it,
        and so is a market order's (`_moved_since_plan` checks it is what the order was sized
        from). Which orders are old needs no read per call: with one call in flight per
        symbol, every order this apply placed since the pass began is in `known_order_ids`
        (accepted answers, settled ones) or has stopped the symbol for the pass. So the pass's
        snapshot (open orders, and the position a limit order's evidence starts from) plus
        one read of the account's recent fills, taken at the pass's first order, serve every
        order of the pass; without a snapshot the symbol is read in full at its first order
        of the pass. An old id missed this way can only show settlement one candidate more
        (a match, or an unexplained order that keeps the outcome unknown), never an executed
        call as absent.
        """
        if action.kind != "place_order":
            return Baseline(position=await self._fresh_position(action.symbol))
        snapshot = self._pass_snapshot
        if snapshot is None:
            cached = self._baselines.get(action.symbol)
            if cached is None:
                cached = await take_baseline(
                    self.client, action, now_ms=self.now_ms(), config=self.settle_config
                )
                self._baselines[action.symbol] = cached
                return cached
            old, position = cached.old_order_ids, cached.position
        else:
            recent_fills = await self.recent_fills()
            old = frozenset(order.id for order in snapshot.orders(action.symbol))
            old |= recent_fills.get(action.symbol, frozenset())
            position = snapshot.positions.get(action.symbol)
        if action.intent.is_market:
            position = await self._fresh_position(action.symbol)
        return Baseline(position=position, old_order_ids=old)

    async def recent_fills(self) -> dict[str, frozenset[str]]:
        """The pass's one read of the account's recent fills, made by whoever asks first."""
        async with self._recent_fills_lock:
            if self._recent_fills is None:
                self._recent_fills = await recent_fill_order_ids(
                    self.client, now_ms=self.now_ms(), config=self.settle_config
                )
            return self._recent_fills

    async def prefetch_recent_fills(self) -> None:
        """Make the pass's read of recent fills while its first phases run, so that its first
        order does not wait a round trip for it. Read earlier, it misses only fills made
        between the read and that order, of orders the pass's snapshot did not show open; such
        a fill can only add a candidate to an unknown order's settlement, never make an
        executed call look absent (see `baseline`). A failed read is left to the first order,
        whose baseline reads again and is not sent if that fails too."""
        try:
            await self.recent_fills()
        except VenueError as exc:
            log.debug("reading recent fills ahead of the first order failed: %s", exc)

    async def _fresh_position(self, symbol: str) -> Position | None:
        """The symbol's position once the read shows this run's accepted writes on it: read
        ahead of the phase (`reconciler.apply.readahead`) if it was, else now."""
        usable, position = await self.read_ahead.take(symbol)
        if usable:
            return position
        try:
            return await self._read_fresh_position(symbol)
        except TimeoutError as exc:
            raise _CannotSend(str(exc)) from None

    async def _read_fresh_position(self, symbol: str) -> Position | None:
        return await self.visibility.fresh_position(self.client, symbol)

    async def _read_fresh_positions(self, symbols: list[str]) -> dict[str, Position | None]:
        return await self.visibility.fresh_positions(self.client, symbols)

    async def _resolve(self, action: Action) -> Intent:
        """The intent to carry out: the planned one, with the new position's id filled in."""
        if not action.on_new_position:
            return action.intent
        try:
            position = await self._fresh_position(action.symbol)
        except VenueError as exc:
            raise _CannotSend(f"could not read the position id: {exc}") from exc
        if position is None:
            raise _CannotSend(f"no open {action.symbol} position to fill the position id with")
        return with_position(action.intent, position.id)

    async def _send(
        self, index: int, action: Action, intent: Intent, baseline: Baseline | None
    ) -> ActionResult:
        number = self._pass_number
        request = self.client.request_for(intent)
        self.journal.append(
            "intent",
            pass_number=number,
            index=index,
            symbol=action.symbol,
            kind=action.kind,
            phase=action.phase.name.lower(),
            risk=action.risk,
            reason=action.reason,
            notional=action.notional,
            before=action.before,
            after=action.after,
            intent=intent.model_dump(mode="python"),
            request={"method": request.method, "path": request.path, "body": request.body},
            baseline=None if baseline is None else baseline.to_record(),
        )
        # Write-ahead: the intent is on disk before the call is sent, and with it every record
        # appended before it, so also the result of the symbol's call before this one.
        await self.journal.sync()
        self.progress(ActionStarted(number, index, action, request.path))
        sent_at_ms = self.now_ms()
        started = time.perf_counter()
        try:
            answer = await self.client.execute(intent)
        except Exception as exc:
            latency_ms = (time.perf_counter() - started) * 1000
            return await self._failed(
                index, action, intent, request.path, baseline, exc, sent_at_ms, latency_ms
            )
        latency_ms = (time.perf_counter() - started) * 1000
        if isinstance(answer, Order):
            # Orders the venue told us about (placed, closing) are ours, not unknown effects.
            self.known_order_ids.add(answer.id)
        accepted_at_s = self.visibility.clock()
        self.visibility.expect(expectation_for(action, intent, answer, accepted_at_s=accepted_at_s))
        detail = _describe_answer(answer)
        return self._record_result(
            ActionResult(
                number,
                index,
                action,
                "accepted",
                detail=detail,
                path=request.path,
                status=200,
                latency_ms=latency_ms,
            )
        )

    async def _failed(
        self,
        index: int,
        action: Action,
        intent: Intent,
        path: str,
        baseline: Baseline | None,
        exc: Exception,
        sent_at_ms: int,
        latency_ms: float,
    ) -> ActionResult:
        number = self._pass_number
        outcome = _CALL_OUTCOMES[classify(exc)]
        status = exc.status if isinstance(exc, VenueError) else None
        code = exc.code if isinstance(exc, VenueError) else None
        message = str(exc) if isinstance(exc, VenueError) else f"{type(exc).__name__}: {exc}"
        if outcome == "rejected" and not (
            isinstance(intent, CancelOrder) and isinstance(exc, OrderNotOpen)
        ):
            # A cancel refused because the order is no longer open (it filled while the cancel
            # was on its way) left nothing resting, which is what it was for: the symbol is not
            # left alone, and the next pass re-plans from what the fill did.
            self.excluded[action.symbol] = f"{action.kind} refused: {code or message}"
        elif outcome == "not_sent" and not (isinstance(exc, TransportError) and not exc.sent):
            self.excluded[action.symbol] = f"{action.kind} could not be sent: {message}"
        result = self._record_result(
            ActionResult(
                number,
                index,
                action,
                outcome,
                detail=message,
                path=path,
                status=status,
                code=code,
                latency_ms=latency_ms,
            ),
            final=outcome != "unknown",
        )
        if outcome != "unknown":
            return result
        if isinstance(exc, OutcomeUnknown):
            sent_at_ms = min(sent_at_ms, exc.sent_at_ms)
        return await self._settle(result, intent, baseline, sent_at_ms)

    async def _settle(
        self, unknown: ActionResult, intent: Intent, baseline: Baseline | None, sent_at_ms: int
    ) -> ActionResult:
        action = unknown.action
        self.progress(Settling(unknown.pass_number, unknown.index, action))
        settlement = await settle(
            self.client,
            action,
            intent,
            sent_at_ms=sent_at_ms,
            baseline=baseline,
            known_order_ids=self.known_order_ids,
            config=self.settle_config,
            lag_allowance_s=self.visibility.lag_allowance_s(),
            clock_ms=self.now_ms,
        )
        self.known_order_ids |= settlement.order_ids
        for order_id in sorted(settlement.order_ids):
            # Seen once by settlement; later reads must show it too before they are trusted.
            self.visibility.expect(
                Expectation(
                    action.symbol,
                    action.kind,
                    self.visibility.clock(),
                    order_id=order_id,
                    order_resting=True,
                    seen_before=True,
                )
            )
        self.journal.append(
            "settlement",
            pass_number=unknown.pass_number,
            index=unknown.index,
            symbol=action.symbol,
            kind=action.kind,
            outcome=settlement.outcome,
            reads=settlement.reads,
            sent_at_ms=sent_at_ms,
            evidence=settlement.evidence,
        )
        if settlement.executed is None:
            self.excluded[action.symbol] = (
                f"outcome of {action.kind} could not be settled from the account; check it by hand"
            )
        detail = {
            "settled_executed": "the account shows it took effect",
            "settled_not_executed": "the account shows it did not take effect",
            "unknown": "the account does not show whether it took effect",
        }[settlement.outcome]
        result = ActionResult(
            unknown.pass_number,
            unknown.index,
            action,
            settlement.outcome,
            detail=f"{unknown.detail}; {detail}",
            path=unknown.path,
            status=unknown.status,
            code=unknown.code,
            latency_ms=unknown.latency_ms,
            settlement=settlement,
        )
        self._results[unknown.index] = result
        self._announce(result)
        return result


class _CannotSend(Exception):
    """The call could not be made concrete (e.g. no position to take the id of)."""


def _moved_since_plan(action: Action, baseline: Baseline) -> str | None:
    """Why a market order must not go out: its position is no longer what it was sized from.

    A market order's size is the difference between the position the plan saw (`before`) and
    the target. If the position moved in between (liquidated, closed by TP/SL, changed by
    someone else), that size would carry the position past its target, so the order is not
    sent and the next pass re-plans from the account. The baseline is read just before the
    send, with one mutation in flight per symbol, so only an outside change can trip this.
    """
    side, size = action.before.get("side"), action.before.get("size")
    if not action.intent.is_market or side is None:
        return None
    position = baseline.position
    now_side = "flat" if position is None else position.side
    now_size = Decimal(0) if position is None else position.size
    if now_side == side and (side == "flat" or now_size == Decimal(str(size))):
        return None
    return (
        f"position is now {now_side} {now_size}, the order was sized from {side} {size}: "
        "left for the next pass to re-plan"
    )


def _describe_answer(answer: Answer) -> str:
    match answer:
        case None:
            return "already done (a retry found it settled)"
        case Order():
            return f"order {answer.id} {answer.status}"
        case CancelAllResult():
            return f"cancelled {answer.count} order(s)"
        case Position():
            return f"position {answer.id} updated"
        case _:
            assert_never(answer)
