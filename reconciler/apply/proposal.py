"""A saved plan is a proposal, not a script: what is sent is re-derived, never read back.

A `plan.json` is a file anyone can edit: a size changed from 0.3 to 3 in a request body
would otherwise be sent as stored, under a stale "Policy: ok". So:

- `apply PLAN.json -f FILE` plans again from the live account and FILE and executes only
  when that fresh plan has exactly the saved intents (the same calls, in the same order;
  loading already refused a saved call that is not its intent's); otherwise it refuses
  (exit 3) naming the first difference.
  What runs is the fresh plan, with its own policy verdict; the saved plan lends it only its
  creation time and marks, for apply's age and price-move checks. A plan sized by `weight`
  therefore goes stale as soon as the account's equity moved enough to change a size.
- `show PLAN.json` judges the saved *intents* by the policy (of `-f FILE` when given), and
  never trusts the saved notional, summary or verdict: an order's notional is recomputed from
  its intent (limit: size x price; market: size x the plan's mark for the symbol).

Pure: plans and the desired state in, problems out.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from reconciler.jsonnum import dumps
from reconciler.model.desired import DesiredState
from reconciler.model.intents import PlaceOrder
from reconciler.model.plan import Action, CallOf, Plan
from reconciler.plan.policy import leverage_violations

__all__ = ["first_difference", "for_execution", "saved_violations"]

# The planner rounds notional to 8 decimal places; a stored value further off was edited.
_NOTIONAL_SLACK = Decimal("0.00000001")


def first_difference(saved: Plan, fresh: Plan, call_of: CallOf) -> str | None:
    """Where a plan made now stops making the saved plan's calls, or None if it never does.

    Intents are compared, and the user: an intent names no account, so a plan saved for
    one user must not pass for another's. The message shows each as the call `call_of`
    makes of it.
    """
    if saved.user_id != fresh.user_id:
        return (
            f"the saved plan is for user {saved.user_id!r}; the account applied to is "
            f"{fresh.user_id!r}"
        )

    def _call(action: Action) -> str:
        request = call_of(action.intent)
        body = dumps(request.body).decode("utf-8") if request.body is not None else "no body"
        return f"{action.kind} {action.symbol}: {request.method} {request.path} {body}"

    for number, (old, new) in enumerate(zip(saved.actions, fresh.actions, strict=False), 1):
        if old.intent != new.intent:
            return (
                f"call {number}: the saved plan sends {_call(old)}; "
                f"a plan made now sends {_call(new)}"
            )
    if len(saved.actions) > len(fresh.actions):
        extra = saved.actions[len(fresh.actions)]
        return (
            f"call {len(fresh.actions) + 1}: the saved plan sends {_call(extra)}; "
            "a plan made now ends before it"
        )
    if len(fresh.actions) > len(saved.actions):
        extra = fresh.actions[len(saved.actions)]
        return (
            f"call {len(saved.actions) + 1}: a plan made now also sends {_call(extra)}; "
            "the saved plan ends before it"
        )
    return None


def for_execution(saved: Plan, fresh: Plan) -> Plan:
    """The fresh plan, carrying the saved plan's creation time and marks for apply's checks."""
    return fresh.model_copy(update={"created_at_ms": saved.created_at_ms, "marks": saved.marks})


def saved_violations(plan: Plan, desired: DesiredState | None) -> list[str]:
    """The policy's verdict on the saved requests themselves; without a file, consistency only."""
    problems: list[str] = []
    if desired is not None:
        wanted_user = desired.account.user_id
        if wanted_user is not None and wanted_user != plan.user_id:
            problems.append(f"the plan is for user {plan.user_id!r}, the file for {wanted_user!r}")
    for number, action in enumerate(plan.actions, 1):
        problems.extend(f"call {number}: {p}" for p in _action_problems(plan, action, desired))
    return problems


def _order_notional(plan: Plan, intent: PlaceOrder) -> Decimal | None:
    price = intent.price if intent.order_type == "limit" else plan.marks.get(intent.symbol)
    return None if price is None else intent.size * price


def _action_problems(plan: Plan, action: Action, desired: DesiredState | None) -> Iterator[str]:
    intent = action.intent
    notional = _order_notional(plan, intent) if isinstance(intent, PlaceOrder) else None
    if isinstance(intent, PlaceOrder):
        if notional is None:
            yield f"{action.symbol}: the order's notional cannot be computed from its intent"
        elif abs(notional - action.notional) > _NOTIONAL_SLACK:
            yield (
                f"{action.symbol}: the order trades {notional:f} USDT, the plan says "
                f"{action.notional:f}: the saved plan was edited"
            )
    if desired is None:
        return
    policy = desired.policy
    managed = action.symbol in desired.symbols
    if not managed and policy.unmanaged == "ignore":
        yield f"{action.symbol}: unmanaged symbol would be touched ({action.kind})"
    allowed = policy.allowed_symbols
    if managed and allowed is not None and action.symbol not in allowed:
        yield f"{action.symbol}: not in policy.allowed_symbols"
    reduce_only = isinstance(intent, PlaceOrder) and intent.reduce_only
    yield from leverage_violations(intent, policy)
    cap = policy.max_order_notional
    if cap is not None and notional is not None and not reduce_only and notional > cap:
        yield (
            f"{action.symbol}: order notional {notional:f} exceeds policy.max_order_notional "
            f"{cap:f}"
        )
