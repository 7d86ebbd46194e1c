"""Checks on request bodies and query values, each naming the offending field.

The HTTP layer hands the engine parsed JSON as it came; every shape and range rule lives
here so a malformed request is refused with `VALIDATION_ERROR` before anything is touched.
Numbers must already be numbers (`Decimal` or `int`): a string, a bool or a float is refused,
because the real exchange's clients send exact JSON numbers.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from reconciler.sandbox.accounting import is_on_grid
from reconciler.sandbox.rejection import Rejection

__all__ = ["MAX_PAGE_SIZE", "Body", "check_page", "check_user", "invalid"]

MAX_PAGE_SIZE = 100
# Far beyond any real price or size, small enough that 8-place arithmetic stays exact.
_MAX_MAGNITUDE = Decimal(10) ** 15


def invalid(message: str) -> Rejection:
    return Rejection("VALIDATION_ERROR", message)


def check_user(named: object, user_id: str) -> None:
    """A request may name a user only to name its own key's user."""
    if named is not None and named != user_id:
        raise Rejection("FORBIDDEN_SCOPE", "the API key may not act for another user")


def check_page(page: int, page_size: int) -> None:
    if page < 1:
        raise invalid("page must be at least 1")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise invalid(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")


def _as_decimal(field: str, value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise invalid(f"{field} must be a number")
    number = Decimal(value)
    if not number.is_finite() or abs(number) >= _MAX_MAGNITUDE:
        raise invalid(f"{field} is out of range")
    return number


class Body:
    """A JSON object body whose fields are read once each, with typed accessors."""

    def __init__(self, body: object, allowed: frozenset[str], user_id: str | None = None) -> None:
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise invalid("body must be a JSON object")
        unknown = sorted(str(key) for key in body if key not in allowed)
        if unknown:
            raise invalid(f"unknown field {unknown[0]}")
        self._body: dict[str, Any] = body
        if user_id is not None:
            check_user(body.get("userId"), user_id)

    def has(self, field: str) -> bool:
        return field in self._body

    def text(self, field: str) -> str:
        value = self._body.get(field)
        if value is None:
            raise invalid(f"{field} is required")
        if not isinstance(value, str) or not value:
            raise invalid(f"{field} must be a non-empty string")
        return value

    def optional_text(self, field: str) -> str | None:
        return None if self._body.get(field) is None else self.text(field)

    def choice(self, field: str, options: tuple[str, ...]) -> str:
        value = self.text(field)
        if value not in options:
            raise invalid(f"{field} must be one of {', '.join(options)}")
        return value

    def optional_number(self, field: str) -> Decimal | None:
        value = self._body.get(field)
        return None if value is None else _as_decimal(field, value)

    def number(self, field: str) -> Decimal:
        value = self.optional_number(field)
        if value is None:
            raise invalid(f"{field} is required")
        return value

    def positive(self, field: str, grid: Decimal | None = None) -> Decimal:
        value = self.number(field)
        return self._check_positive(field, value, grid)

    def optional_positive(self, field: str, grid: Decimal | None = None) -> Decimal | None:
        value = self.optional_number(field)
        return None if value is None else self._check_positive(field, value, grid)

    @staticmethod
    def _check_positive(field: str, value: Decimal, grid: Decimal | None) -> Decimal:
        if value <= 0:
            raise invalid(f"{field} must be positive")
        if grid is not None and not is_on_grid(value, grid):
            raise invalid(f"{field} must be a multiple of {grid}")
        return value

    def optional_integer(self, field: str) -> int | None:
        value = self.optional_number(field)
        if value is None:
            return None
        if value != value.to_integral_value():
            raise invalid(f"{field} must be an integer")
        return int(value)

    def integer(self, field: str) -> int:
        value = self.optional_integer(field)
        if value is None:
            raise invalid(f"{field} is required")
        return value

    def flag(self, field: str) -> bool:
        value = self._body.get(field)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise invalid(f"{field} must be true or false")
        return value
