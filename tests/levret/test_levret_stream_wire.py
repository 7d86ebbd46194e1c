"""Stream events are read by the same tolerant parsers as REST answers."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from pydantic import SecretStr

from reconciler.levret.settings import ClientSettings
from reconciler.levret.stream import LevretStream
from reconciler.model.account import Position


def _stream() -> LevretStream:
    settings = ClientSettings(api_key_id="k", api_key_secret=SecretStr("s"), user_id="u")
    return LevretStream(settings)


@pytest.mark.anyio
async def test_a_snake_case_position_event_is_read() -> None:
    stream = _stream()
    await stream._handler("positionUpdate")(
        {
            "position_id": "p1",
            "symbol": "BTC_USDT",
            "side": "LONG",
            "size": "0.5",
            "entry_price": 100.5,
            "mark_price": "101",
            "leverage": "10",
            "margin": "5.025",
            "updated_at": "2023-11-14T22:13:20.123Z",
        }
    )
    event = await stream.next_event()
    assert isinstance(event.payload, Position)
    assert (event.payload.id, event.payload.side, event.payload.size) == (
        "p1",
        "long",
        Decimal("0.5"),
    )
    assert event.payload.entry_price == Decimal("100.5")
    assert event.payload.updated_at == 1_700_000_000_123


@pytest.mark.anyio
async def test_an_unreadable_event_is_dropped_with_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = _stream()
    caplog.set_level(logging.WARNING, logger="reconciler.levret")
    await stream._handler("accountData")({"walletBalance": "55.5"})
    assert stream._queue.empty()
    (record,) = caplog.records
    assert "dropping unreadable accountData" in record.getMessage()
    assert "field equity is missing" in record.getMessage()
    assert "55.5" not in record.getMessage()
