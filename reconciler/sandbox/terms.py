"""Trading terms the sandbox applies, changeable while it runs.

Faults and the control API tune these at runtime (a fee change, slippage, partial fills),
so they live in one mutable object the engine reads on every fill rather than in the
database: they are settings of the emulator, not state of the accounts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal

__all__ = ["DEFAULT_LEVERAGE", "TradingConfig"]

DEFAULT_LEVERAGE = 10


@dataclass
class TradingConfig:
    taker_fee: Decimal = Decimal("0.0005")
    maker_fee: Decimal = Decimal("0.0002")
    slippage_bps: Decimal = Decimal(0)
    maintenance_margin_rate: Decimal = Decimal("0.005")
    # When set, a marketable limit order fills only this share at once and the rest rests.
    partial_fill_ratio: Decimal | None = None
    # Realism (docs/sandbox.md "A book with depth"): takers walk the synthetic book ...
    book_depth: bool = False
    # ... a mark move trades only a finite volume at each resting order's price ...
    resting_partial_fills: bool = False
    # ... and TP/SL and liquidations close through the book, not at the mark.
    stop_slippage: bool = False

    def restore_defaults(self) -> None:
        """Reset in place, because the HTTP layer may hold a reference to this object."""
        defaults = TradingConfig()
        for field in fields(self):
            setattr(self, field.name, getattr(defaults, field.name))
