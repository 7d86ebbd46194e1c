"""The whole desired-state file as one model, the values derived from it, and its identity.

`DesiredState` keeps the YAML document it was loaded from, so any check, here or later
against the exchange's symbol specs, can name the `file:line:col` of the value it refuses.
`fingerprint` is what a saved plan records to notice that the file changed since.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Literal

from pydantic import Field, PrivateAttr

from reconciler.defaults import DEFAULT_PARALLELISM
from reconciler.model.desired.fields import FileModel, SymbolName
from reconciler.model.desired.sections import (
    Account,
    ApplySettings,
    Defaults,
    LockSettings,
    Policy,
    RateLimitSettings,
    Windows,
)
from reconciler.model.desired.symbols import DesiredOrder, DesiredSymbol
from reconciler.yamlsource import PathKey, SourceDocument

__all__ = ["DesiredState", "chosen_parallelism", "fingerprint", "format_path"]


class DesiredState(FileModel):
    """The whole file. `symbols` lists the managed symbols; any other symbol is unmanaged."""

    version: Literal[1]
    account: Account = Account()
    defaults: Defaults = Defaults()
    policy: Policy = Policy()
    symbols: dict[SymbolName, DesiredSymbol] = Field(default_factory=dict)
    windows: Windows | None = None
    lock: LockSettings = LockSettings()
    apply: ApplySettings = ApplySettings()
    rate_limit: RateLimitSettings = RateLimitSettings()

    _source: SourceDocument | None = PrivateAttr(default=None)

    # -- derived values the planner shares -------------------------------------------------

    def position_leverage(self, symbol: str) -> int:
        """The leverage wanted for the symbol's position: its own, else the default."""
        entry = self.symbols.get(symbol)
        if entry is not None and entry.position is not None and entry.position.leverage:
            return entry.position.leverage
        return self.defaults.leverage

    def order_leverage(self, symbol: str, order: DesiredOrder) -> int:
        return order.leverage or self.position_leverage(symbol)

    # -- where things are in the file --------------------------------------------------------

    def attach_source(self, source: SourceDocument) -> None:
        """Remember the document this state was validated from, for `where` (loading only)."""
        self._source = source

    @property
    def filename(self) -> str:
        return self._source.filename if self._source else "<desired>"

    def where(self, path: PathKey) -> str:
        """`file:line:col` of the value at `path`, or of its nearest ancestor in the file."""
        if self._source is None:
            return self.filename
        line, column = self._source.where(path)
        return f"{self.filename}:{line}:{column}"

    def problem(self, path: PathKey, message: str) -> str:
        return f"{self.where(path)}: {format_path(path)}: {message}"


def format_path(path: Iterable[str | int]) -> str:
    """`symbols.BTC_USDT.orders[0].price` from `("symbols", "BTC_USDT", "orders", 0, "price")`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(document)"


def fingerprint(desired: DesiredState) -> str:
    """SHA-256 of what the file asks for, not how it is written (comments, order, spelling).

    `lock`, `apply` and `rate_limit` say how apply runs, not what the account should hold:
    changing them between plan and apply does not make a saved plan stale. A TP/SL left out
    (kept) is not `null` (cleared).
    """
    data = desired.model_dump(mode="json", exclude={"lock", "apply", "rate_limit"})
    for symbol, entry in desired.symbols.items():
        if entry.position is not None:
            for name in ("take_profit", "stop_loss"):
                if name not in entry.position.model_fields_set:
                    data["symbols"][symbol]["position"][name] = "keep"
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def chosen_parallelism(desired: DesiredState, option: int | None) -> int:
    """`--parallelism`, else the file's `apply.parallelism`, else the default (16)."""
    if option is not None:
        return option
    return desired.apply.parallelism or DEFAULT_PARALLELISM
