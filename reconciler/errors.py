"""The one root of every error the reconciler raises on purpose.

The CLI maps these to exit codes in one place (`reconciler.cli.root`), so each subclass carries
its exit code rather than every command deciding it again.

    ReconcilerError                 exit 1
    ├── SpecError                   exit 1   bad desired-state file (all problems at once)
    ├── LockUnavailable             exit 1   the lock server cannot be reached or used
    ├── PreconditionFailed          exit 3   stale plan, moved mark, changed fingerprint
    ├── PolicyViolation             exit 4   plan breaks a policy: nothing is sent
    ├── PartialApply                exit 5   some actions failed or did not converge
    ├── LockHeld                    exit 6   another apply holds the account lock
    └── Declined                    exit 7   the user did not answer `yes`

Exchange errors (`reconciler.levret.errors.LevretError`) also derive from the root. The codes
are the members of `reconciler.exitcodes.ExitCode`, whose docstrings say what each means.
"""

from __future__ import annotations

from reconciler.exitcodes import ExitCode


class ReconcilerError(Exception):
    """Base class; `exit_code` is what the CLI exits with when this reaches it."""

    exit_code: ExitCode = ExitCode.ERROR


class SpecError(ReconcilerError):
    """The desired-state file is invalid; `problems` lists every one with its location."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class LockUnavailable(ReconcilerError):
    """The account lock could not be taken *or refused*: its server is unreachable or misused."""


class PreconditionFailed(ReconcilerError):
    exit_code = ExitCode.STALE_PLAN


class PolicyViolation(ReconcilerError):
    exit_code = ExitCode.POLICY_VIOLATION

    def __init__(self, violations: list[str]) -> None:
        self.violations = violations
        super().__init__("\n".join(violations))


class PartialApply(ReconcilerError):
    exit_code = ExitCode.PARTIAL_APPLY


class LockHeld(ReconcilerError):
    exit_code = ExitCode.LOCK_HELD


class Declined(ReconcilerError):
    exit_code = ExitCode.DECLINED
