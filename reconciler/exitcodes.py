"""The exit codes of every command, and which one wins when several accounts each give one.

One contract for the whole CLI (README.md, "Exit codes"): a CI job branches on these numbers,
so they are named here once and every exit, error class and per-account outcome uses them.
It sits beside `reconciler.errors` (which carries a code per error class) below every layer,
so the engine, the workflows and the CLI all name the same members.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

__all__ = ["SEVERITY", "ExitCode", "most_severe"]


class ExitCode(IntEnum):
    """What a run of `reconciler` ended with; the process exits with the member's value."""

    OK = 0
    """Success, or nothing to change."""

    ERROR = 1
    """An error: bad input, a bad file, the network, the exchange, a lock server that cannot be
    used. The account's state is unknown to us, or the input is wrong; click's own usage errors
    exit here too (2 is taken by "changes present")."""

    CHANGES = 2
    """Information, not a failure: `plan --detailed-exitcode` has changes, `drift` found drift,
    or `apply` made every change it could and left symbols whose change cannot be made
    exactly (below the minimum size, off the step), as reported."""

    STALE_PLAN = 3
    """A saved plan is stale or a precondition failed (moved mark, changed fingerprint, a
    rehearsal that did not converge): nothing was sent; planning again fixes it."""

    POLICY_VIOLATION = 4
    """The plan breaks the file's policy: nothing was sent; a person must change the file or
    the policy."""

    PARTIAL_APPLY = 5
    """Calls were sent and the account did not converge (some failed, or were not seen in
    time): the account is somewhere nobody planned, and someone must look now."""

    LOCK_HELD = 6
    """Another apply holds the account lock (`--lock-timeout` waits for it instead): nothing
    was sent; retry later."""

    DECLINED = 7
    """The operator did not answer `yes` at the prompt: nothing was sent; their own choice."""


SEVERITY: tuple[ExitCode, ...] = (
    ExitCode.PARTIAL_APPLY,
    ExitCode.ERROR,
    ExitCode.POLICY_VIOLATION,
    ExitCode.STALE_PLAN,
    ExitCode.LOCK_HELD,
    ExitCode.DECLINED,
    ExitCode.CHANGES,
    ExitCode.OK,
)
"""The one order, most severe first, in which a run over several accounts picks its code:
5 > 1 > 4 > 3 > 6 > 7 > 2 > 0. A code that reached the exchange outranks one that did not
(5 first); not knowing the account (1) outranks a known refusal (4, 3); a fault outranks a
transient wait (6), the operator's own choice (7) and information (2). docs/gitops.md gives
the table with the reasons."""

_RANK = {code: rank for rank, code in enumerate(SEVERITY)}


def most_severe(codes: Iterable[int]) -> ExitCode:
    """The code of the run: the most severe of the accounts' codes (OK for none).

    A code outside the contract ranks as `ERROR` (it is one), but is never returned as it:
    the result is always a member.
    """
    worst = ExitCode.OK
    for code in codes:
        member = ExitCode(code) if code in _RANK else ExitCode.ERROR
        if _RANK[member] < _RANK[worst]:
            worst = member
    return worst
