"""The watcher's parts that need no exchange: windows, breaker, gates, log lines, file re-reads."""

from __future__ import annotations

import io
import json
import logging
import os
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from reconciler.errors import SpecError
from reconciler.model.desired import Windows, loads
from reconciler.model.intents import PlaceOrder
from reconciler.model.plan import Action, Phase, Plan
from reconciler.model.windows import WindowDecision, change_allowed, check_cron, cron_matches
from reconciler.watch.breaker import CircuitBreaker
from reconciler.watch.desired_file import DesiredFile
from reconciler.watch.eventlog import EventLog, LoggingBridge
from reconciler.watch.gates import heal_held
from reconciler.watch.metrics import WatchMetrics

T0 = datetime(2030, 1, 7, 10, 30, 15, tzinfo=UTC)  # a Monday


# -- windows ---------------------------------------------------------------------------------


def test_no_windows_allow_every_change() -> None:
    assert change_allowed(None, T0).allowed
    assert change_allowed(Windows(), T0).allowed


def test_allow_rules_match_whole_minutes_in_utc() -> None:
    office = Windows(allow=("* 9-16 * * 1-5",))
    assert change_allowed(office, T0).allowed
    assert not change_allowed(office, T0.replace(hour=17)).allowed
    assert not change_allowed(office, T0 + timedelta(days=5)).allowed  # Saturday
    # The same instant written in another zone is the same decision.
    elsewhere = T0.astimezone(timezone(timedelta(hours=9)))
    assert change_allowed(office, elsewhere).allowed
    assert cron_matches("30 10 7 1 *", T0) and not cron_matches("31 10 7 1 *", T0)


def test_deny_wins_over_allow() -> None:
    windows = Windows(allow=("* * * * *",), deny=("25-35 10 * * *",))
    decision = change_allowed(windows, T0)
    assert not decision.allowed and decision.hold == "deny"
    assert decision.rule == "25-35 10 * * *"
    assert change_allowed(windows, T0.replace(minute=36)).allowed


def test_pause_until_holds_until_the_instant() -> None:
    windows = Windows(pause_until=T0 + timedelta(seconds=1))
    held = change_allowed(windows, T0)
    assert not held.allowed and held.hold == "pause"
    assert "2030-01-07T10:30:16Z" in held.reason
    assert change_allowed(windows, T0 + timedelta(seconds=1)).allowed


def test_windows_in_the_desired_state_file() -> None:
    desired = loads(
        "version: 1\n"
        "windows:\n"
        "  allow: ['*  9-16 * * 1-5']\n"
        "  deny: ['0 12 * * *']\n"
        "  pause_until: 2030-01-07T12:00:00Z\n"
    )
    assert desired.windows is not None
    assert desired.windows.allow == ("* 9-16 * * 1-5",)
    assert desired.windows.pause_until == datetime(2030, 1, 7, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("windows: {allow: ['not cron']}", "windows.allow[0]: 'not cron' is not a cron"),
        ("windows: {deny: ['* * * * * *']}", "give 5 fields"),
        ("windows: {deny: ['61 * * * *']}", "is not a valid cron expression"),
        ("windows: {pause_until: 2030-01-01T00:00:00}", "timezone"),
        ("windows: {allowed: []}", "windows.allowed: unknown field"),
    ],
)
def test_bad_windows_are_refused_with_their_place(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        loads("version: 1\n" + text + "\n", "desired.yaml")
    assert any(message in problem for problem in caught.value.problems), caught.value.problems
    assert all(problem.startswith("desired.yaml:2:") for problem in caught.value.problems)


def test_check_cron_normalises_spacing() -> None:
    assert check_cron(" */5   *  * * 1 ") == "*/5 * * * 1"


# -- the breaker -----------------------------------------------------------------------------


def test_budget_refuses_a_plan_that_does_not_fit_and_recovers_after_the_hour() -> None:
    breaker = CircuitBreaker(max_actions=3, max_notional=Decimal(1000))
    assert breaker.admit(2, Decimal(100), T0).allowed
    breaker.record(2, Decimal(100), T0, ok=True)
    refused = breaker.admit(2, Decimal(100), T0 + timedelta(minutes=1))
    assert not refused.allowed and breaker.state == "open" and breaker.open_reason == "budget"
    assert "2 action(s) would exceed 3 per hour (2 used)" in refused.reason
    assert breaker.admit(1, Decimal(100), T0 + timedelta(minutes=2)).allowed
    assert breaker.state == "closed"
    breaker.record(1, Decimal(100), T0 + timedelta(minutes=2), ok=True)
    assert breaker.used(T0 + timedelta(minutes=59)) == (3, Decimal(200))
    assert breaker.used(T0 + timedelta(hours=1)) == (1, Decimal(100))
    assert breaker.admit(2, Decimal(100), T0 + timedelta(hours=1)).allowed


def test_notional_budget_counts_absolute_values() -> None:
    breaker = CircuitBreaker(max_actions=100, max_notional=Decimal(1000))
    breaker.record(1, Decimal(-900), T0, ok=True)
    refused = breaker.admit(1, Decimal(-200), T0)
    assert not refused.allowed and "notional 200 would exceed 1000" in refused.reason


def test_in_sync_lifts_a_budget_hold_but_not_a_failure_trip() -> None:
    breaker = CircuitBreaker(max_actions=1, max_failures=2)
    assert not breaker.admit(2, Decimal(0), T0).allowed
    breaker.in_sync()
    assert breaker.state == "closed"
    assert not breaker.record(0, Decimal(0), T0, ok=False)
    assert breaker.record(0, Decimal(0), T0, ok=False)  # the second in a row trips it
    breaker.in_sync()
    assert breaker.tripped and breaker.state == "open"
    refused = breaker.admit(0, Decimal(0), T0 + timedelta(days=1))
    assert not refused.allowed and "2 failed applies in a row" in refused.reason


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(max_failures=2)
    breaker.record(1, Decimal(1), T0, ok=False)
    breaker.record(1, Decimal(1), T0, ok=True)
    assert not breaker.record(1, Decimal(1), T0, ok=False)
    assert breaker.state == "closed"


def test_breaker_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(max_actions=0)


# -- log lines -------------------------------------------------------------------------------


def test_json_log_lines_are_one_object_each_with_exact_numbers() -> None:
    out = io.StringIO()
    log = EventLog("json", stream=out, clock=lambda: T0)
    log.warning("drift", actions=2, notional=Decimal("0.10"), changes=("a", "b"), event="x")
    log.debug("hidden")
    (line,) = out.getvalue().splitlines()
    assert json.loads(line) == {
        "time": "2030-01-07T10:30:15.000Z",
        "level": "warning",
        "event": "drift",
        "actions": 2,
        "notional": "0.10",
        "changes": ["a", "b"],
        "field_event": "x",
    }


def test_text_log_lines_quote_only_what_needs_it() -> None:
    out = io.StringIO()
    EventLog("text", stream=out, clock=lambda: T0).info("heal_held", reason="window", detail="a b")
    assert (
        out.getvalue() == '2030-01-07T10:30:15.000Z INFO    heal_held reason=window detail="a b"\n'
    )


def test_logging_records_become_log_events() -> None:
    out = io.StringIO()
    logger = logging.getLogger("reconciler.test_watch_gates")
    bridge = LoggingBridge(EventLog("json", stream=out, clock=lambda: T0))
    logger.addHandler(bridge)
    try:
        logger.warning("stream: dropped %d", 3)
    finally:
        logger.removeHandler(bridge)
    event = json.loads(out.getvalue())
    assert event["event"] == "log" and event["level"] == "warning"
    assert event["message"] == "stream: dropped 3"


# -- the gates: whether a drift may be healed now ------------------------------------------------

OPEN = WindowDecision(True, "no windows configured")


def _plan(actions: int, *violations: str) -> Plan:
    intent = PlaceOrder(
        symbol="BTC_USDT", side="buy", order_type="limit", size=Decimal(1), price=Decimal(100)
    )
    action = Action(
        intent=intent,
        phase=Phase.PLACE_ORDERS,
        notional=Decimal(-100),
        reason="missing order",
    )
    return Plan(
        user_id="u1",
        fingerprint="f",
        symbol_fingerprints={},
        marks={},
        actions=(action,) * actions,
        violations=violations,
    )


def _held(
    plan: Plan,
    window: WindowDecision,
    breaker: CircuitBreaker,
    *,
    self_heal: bool = True,
    metrics: WatchMetrics | None = None,
    out: io.StringIO | None = None,
) -> tuple[str, str] | None:
    log = EventLog("json", stream=out or io.StringIO(), clock=lambda: T0)
    return heal_held(
        plan,
        window,
        T0,
        self_heal=self_heal,
        breaker=breaker,
        metrics=metrics or WatchMetrics(),
        log=log,
    )


def test_gates_refuse_in_order_report_only_policy_window_breaker() -> None:
    full = CircuitBreaker(max_actions=1)
    paused = WindowDecision(False, "pause: paused until 2030-01-07T11:00:00Z", "x")
    denied = WindowDecision(False, "deny: deny rule '* * * * *' matches", "* * * * *")
    broken = _plan(2, "max_leverage exceeded")
    assert _held(broken, paused, full, self_heal=False) == (
        "report_only",
        "run with --self-heal to heal",
    )
    assert _held(broken, paused, full) == ("policy", "max_leverage exceeded")
    assert _held(_plan(2), paused, full) == ("pause", paused.reason)
    assert _held(_plan(2), denied, full) == ("window", denied.reason)
    assert full.state == "closed"  # a closed window never asked the breaker
    held = _held(_plan(2), OPEN, full)
    assert held is not None and held[0] == "breaker" and "exceed 1 per hour" in held[1]
    assert _held(_plan(1), OPEN, full) is None  # it fits: nothing was spent by asking


def test_the_breaker_opening_is_counted_and_logged_once_while_it_stays_open() -> None:
    breaker = CircuitBreaker(max_actions=1)
    metrics = WatchMetrics(account="u1")
    out = io.StringIO()
    for _ in range(3):
        assert _held(_plan(2), OPEN, breaker, metrics=metrics, out=out) is not None
    trips = metrics.registry.get_sample_value(
        "reconciler_breaker_trips_total", {"account": "u1", "reason": "budget"}
    )
    assert trips == 1
    assert metrics.registry.get_sample_value("reconciler_breaker_open", {"account": "u1"}) == 1
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["breaker_open"]
    assert _held(_plan(1), OPEN, breaker, metrics=metrics, out=out) is None
    assert metrics.registry.get_sample_value("reconciler_breaker_open", {"account": "u1"}) == 0


# -- the desired-state file, re-read when it changes ---------------------------------------------


def test_desired_file_is_reread_on_change_and_a_bad_edit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "desired.yaml"
    path.write_text("version: 1\n")
    source = DesiredFile(path)
    assert source().windows is None
    path.write_text("version: 1\nwindows: {pause_until: 2030-01-01T00:00:00Z}\n")
    os.utime(path, ns=(1, 1))  # a new stamp even on a coarse-grained file system
    paused = source()
    assert paused.windows is not None and paused.windows.pause_until is not None
    assert source() is paused  # unchanged on disk: not parsed again
    path.write_text("version: 1\nwindows: {pause_until: soon}\n")
    os.utime(path, ns=(2, 2))
    with pytest.raises(SpecError):
        source()
    with pytest.raises(SpecError):
        source()  # still bad: still refused, so the watcher keeps saying so


def test_desired_file_narrows_to_targets(tmp_path: Path) -> None:
    path = tmp_path / "desired.yaml"
    path.write_text("version: 1\nsymbols:\n  BTC_USDT: {orders: []}\n  ETH_USDT: {orders: []}\n")
    assert list(DesiredFile(path, ["ETH_USDT"])().symbols) == ["ETH_USDT"]
