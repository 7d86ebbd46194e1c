"""Where the rate reserve and the parallelism come from: option, else file, else 10 % / 16."""

from __future__ import annotations

import click
import pytest

from reconciler.errors import SpecError
from reconciler.model.desired import chosen_parallelism, loads
from reconciler.run.connection import RATE_RESERVE_META, Endpoint, client_settings

ENV = {"LEVRET_API_KEY_ID": "k", "LEVRET_API_KEY_SECRET": "s", "LEVRET_USER_ID": "u"}
WHERE = Endpoint("https://api.levret.io/api/v1")


def test_the_reserve_is_the_option_else_the_file_else_ten_percent() -> None:
    plain = loads("version: 1\n")
    configured = loads("version: 1\nrate_limit: {reserve: 25}\n")
    assert client_settings(WHERE, plain, environ=ENV).rate_reserve == pytest.approx(0.10)
    assert client_settings(WHERE, configured, environ=ENV).rate_reserve == pytest.approx(0.25)
    with click.Context(click.Command("plan")) as context:
        context.meta[RATE_RESERVE_META] = 0.0
        assert client_settings(WHERE, configured, environ=ENV).rate_reserve == 0.0


@pytest.mark.parametrize("bad", ["-1", "100", "'ten'"])
def test_a_reserve_outside_zero_to_a_hundred_is_refused_with_its_place(bad: str) -> None:
    with pytest.raises(SpecError, match=r"<string>:2:23: rate_limit.reserve: must be"):
        loads(f"version: 1\nrate_limit: {{reserve: {bad}}}\n")


def test_parallelism_is_the_option_else_the_file_else_sixteen() -> None:
    assert chosen_parallelism(loads("version: 1\n"), None) == 16
    configured = loads("version: 1\napply: {parallelism: 3}\n")
    assert chosen_parallelism(configured, None) == 3
    assert chosen_parallelism(configured, 8) == 8
    with pytest.raises(SpecError, match=r"apply\.parallelism"):
        loads("version: 1\napply: {parallelism: 0}\n")
