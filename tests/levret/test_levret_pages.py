"""Walking a paged listing: page 1 says how many pages there are, the rest go at once.

A mock transport with an async handler stands in for the exchange, so the tests can see how
many page reads are out together. Concurrency is proved with a barrier that only a walk with
every later page in flight can pass (a walk one page at a time would wait there until the
guard's timeout, and fail).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

import httpx
import pytest

from reconciler.levret.client import PAGES_AT_ONCE, LevretClient
from reconciler.levret.errors import AuthError, UnstableListing
from reconciler.levret.fields import Entity, WireFormatError
from reconciler.levret.parse import PARSERS, ReadItems
from reconciler.levret.settings import ClientSettings
from reconciler.model.account import Order
from tests.levret.test_levret_client_retries import ORDER

# Long enough for any honest walk on a loaded machine; only a walk that never sends the
# pages the barrier waits for reaches it.
GUARD_S = 10.0

Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


def orders(count: int) -> list[dict[str, Any]]:
    return [{**ORDER, "id": str(i)} for i in range(count)]


def page_of(
    items: list[dict[str, Any]], request: httpx.Request, total: int | None = None
) -> httpx.Response:
    number = int(request.url.params["page"])
    size = int(request.url.params["pageSize"])
    data = {
        "items": items[(number - 1) * size : number * size],
        "page": number,
        "pageSize": size,
        "total": len(items) if total is None else total,
    }
    return httpx.Response(200, json={"success": True, "data": data})


def page_number(request: httpx.Request) -> int:
    return int(request.url.params["page"])


def client_for(handler: Handler) -> LevretClient:
    settings = ClientSettings(api_key_id="k1", api_key_secret="unit-secret", user_id="u1")
    return LevretClient(settings, transport=httpx.MockTransport(handler))


async def ids(client: LevretClient, page_size: int) -> list[str]:
    return [order.id async for order in client.iter_open_orders(page_size=page_size)]


@pytest.mark.anyio
async def test_the_pages_after_the_first_are_read_together() -> None:
    items = orders(10)  # five pages of two
    later_pages = asyncio.Barrier(4)
    seen: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(page_number(request))
        if page_number(request) > 1:
            await asyncio.wait_for(later_pages.wait(), GUARD_S)
        return page_of(items, request)

    async with client_for(handler) as client:
        got = await ids(client, page_size=2)
    assert got == [str(i) for i in range(10)]  # in the listing's order, each once
    assert seen[0] == 1 and sorted(seen[1:]) == [2, 3, 4, 5]


@pytest.mark.anyio
async def test_no_more_than_a_batch_of_pages_is_out_at_once() -> None:
    items = orders(PAGES_AT_ONCE * 2 + 3)  # page size 1: two full batches after page 1 and more
    out = 0
    most_out = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal out, most_out
        out += 1
        most_out = max(most_out, out)
        await asyncio.sleep(0)  # let the other sends of the batch start (a yield, not a wait)
        out -= 1
        return page_of(items, request)

    async with client_for(handler) as client:
        got = await ids(client, page_size=1)
    assert got == [str(i) for i in range(len(items))]
    assert 1 < most_out <= PAGES_AT_ONCE


@pytest.mark.anyio
async def test_a_total_that_changes_during_the_walk_starts_it_again() -> None:
    items = orders(6)
    walks = 0
    requests: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal walks
        number = page_number(request)
        requests.append(number)
        if number == 1:
            walks += 1
        if walks == 1 and number == 3:
            # An order filled mid-walk: this page already counts one fewer.
            return page_of(items[1:], request)
        return page_of(items, request)

    async with client_for(handler) as client:
        got = await ids(client, page_size=2)
    assert got == [str(i) for i in range(6)]
    assert walks == 2 and len(requests) == 6


@pytest.mark.anyio
async def test_a_total_that_keeps_changing_is_refused() -> None:
    count = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        return page_of(orders(4), request, total=4 + count)  # every answer another total

    async with client_for(handler) as client:
        with pytest.raises(UnstableListing, match="changed between page reads 4 times"):
            await ids(client, page_size=2)


@pytest.mark.anyio
async def test_a_total_larger_than_the_items_costs_at_most_one_batch() -> None:
    items = orders(3)
    requests: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        requests.append(page_number(request))
        return page_of(items, request, total=1_000_000)  # says a million, holds three

    async with client_for(handler) as client:
        got = await ids(client, page_size=1)
    assert got == ["0", "1", "2"]
    assert len(requests) == 1 + PAGES_AT_ONCE  # page 1, then one batch with empty pages


@pytest.mark.anyio
async def test_a_failed_page_read_fails_the_walk_with_its_own_error() -> None:
    items = orders(8)

    async def handler(request: httpx.Request) -> httpx.Response:
        if page_number(request) == 3:
            body = {"success": False, "error": {"code": "INVALID_API_KEY", "message": "no"}}
            return httpx.Response(401, json=body)
        return page_of(items, request)

    async with client_for(handler) as client:
        with pytest.raises(AuthError):  # not an ExceptionGroup of page reads
            await ids(client, page_size=2)


@pytest.mark.anyio
async def test_a_listing_walked_again_reads_its_pages_and_one_more_with_the_first() -> None:
    items = orders(8)  # four pages of two
    second_walk = False
    every_page = asyncio.Barrier(5)

    async def handler(request: httpx.Request) -> httpx.Response:
        if second_walk:  # page 1 too waits for the others: all five are out together
            await asyncio.wait_for(every_page.wait(), GUARD_S)
        return page_of(items, request)

    async with client_for(handler) as client:
        first = await ids(client, page_size=2)
        items = orders(10)  # grown by a page since (apply placed orders)
        second_walk = True
        again = await ids(client, page_size=2)
    assert first == [str(i) for i in range(8)]
    assert again == [str(i) for i in range(10)]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("before", "after", "reads"), [(8, 5, 5), (8, 8, 5), (8, 10, 5), (4, 9, 5), (4, 13, 7)]
)
async def test_a_listing_that_changed_since_is_still_read_whole(
    before: int, after: int, reads: int
) -> None:
    items = orders(before)
    requests: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        requests.append(page_number(request))
        return page_of(items, request)

    async with client_for(handler) as client:
        await ids(client, page_size=2)
        items = orders(after)
        requests.clear()
        got = await ids(client, page_size=2)
    assert got == [str(i) for i in range(after)]
    # Last time's pages and one more at once: shrunk or unchanged, empty pages too many;
    # grown by more than a page, the rest after.
    assert len(requests) == reads


@pytest.mark.anyio
async def test_a_count_known_from_the_plan_reads_every_page_with_the_first() -> None:
    items = orders(250)  # three pages of 100
    every_page = asyncio.Barrier(4)  # the three and one more, all out together

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.wait_for(every_page.wait(), GUARD_S)
        return page_of(items, request)

    async with client_for(handler) as client:
        client.expect_open_orders(250)
        got = [order.id async for order in client.iter_open_orders()]
    assert got == [str(i) for i in range(250)]


@pytest.mark.anyio
@pytest.mark.parametrize(("hint", "reads"), [(0, 3), (50, 3), (250, 4), (1_000, 11)])
async def test_a_wrong_count_from_the_plan_still_reads_the_listing_whole(
    hint: int, reads: int
) -> None:
    """Too few: the rest after page 1's total; too many: empty pages, all in one batch."""
    items = orders(250)
    requests: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        requests.append(page_number(request))
        return page_of(items, request)

    async with client_for(handler) as client:
        client.expect_open_orders(hint)
        got = [order.id async for order in client.iter_open_orders()]
    assert got == [str(i) for i in range(250)]
    assert sorted(requests) == list(range(1, reads + 1))


@pytest.mark.anyio
async def test_a_page_read_beyond_the_listing_only_has_to_be_empty() -> None:
    """The extra page a second walk reads may count another total (an order left after the
    pages that hold the items were read): not a reason to walk again."""
    items = orders(4)  # two pages of two
    requests: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        requests.append(page_number(request))
        if page_number(request) == 3:
            return page_of(items[1:], request)  # empty, and one fewer in its total
        return page_of(items, request)

    async with client_for(handler) as client:
        await ids(client, page_size=2)
        requests.clear()
        got = await ids(client, page_size=2)
    assert got == [str(i) for i in range(4)]
    assert sorted(requests) == [1, 2, 3]  # one walk, not two


@pytest.mark.anyio
async def test_items_on_a_page_beyond_the_first_pages_total_start_the_walk_again() -> None:
    items = orders(4)
    walks = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal walks
        if page_number(request) == 1:
            walks += 1
        if page_number(request) == 1 and walks == 2:
            return page_of(items, request, total=2)  # counted before two more arrived
        return page_of(items, request)

    async with client_for(handler) as client:
        await ids(client, page_size=2)
        got = await ids(client, page_size=2)
    assert got == [str(i) for i in range(4)]
    assert walks == 3  # the walk that saw page 2 full past a one-page total was redone


@pytest.mark.anyio
async def test_a_second_walk_reads_again_only_the_orders_that_changed() -> None:
    items = orders(6)

    async def handler(request: httpx.Request) -> httpx.Response:
        return page_of(items, request)

    async with client_for(handler) as client:
        first = [order async for order in client.iter_open_orders(page_size=4)]
        items[2] = {**items[2], "filledSize": 0.005, "status": "partially_filled"}
        as_listed = items[4]
        items[4] = {**as_listed, "reduceOnly": 1}  # no boolean: unreadable, never taken as true
        with pytest.raises(WireFormatError, match="reduceOnly"):
            [order async for order in client.iter_open_orders(page_size=4)]
        items[4] = as_listed
        second = [order async for order in client.iter_open_orders(page_size=4)]
    assert [order.id for order in second] == [order.id for order in first]
    # Unchanged orders are the very objects read before; the changed one is read afresh.
    assert [a is b for a, b in zip(first, second, strict=True)] == [
        True, True, False, True, True, True
    ]  # fmt: skip
    assert second[2].status == "partially_filled" and second[2].filled_size == Decimal("0.005")


def test_read_items_tells_apart_every_form_a_reader_tells_apart() -> None:
    read_before = ReadItems(size=3)
    calls: list[Any] = []

    def reader(entity: Entity) -> Any:
        calls.append(entity.raw["v"])
        return object()

    forms: list[Any] = [1, True, "1", Decimal("1.0"), Decimal("1")]
    first = [read_before.item(reader, Entity("GET /x", {"v": v}, kind="x")) for v in forms]
    assert calls == forms and len({id(item) for item in first}) == 5
    again = read_before.item(reader, Entity("GET /x", {"v": Decimal("1")}, kind="x"))
    assert again is first[-1] and len(calls) == 5  # the latest three are kept
    read_before.item(reader, Entity("GET /x", {"v": 1}, kind="x"))  # the oldest went first
    assert len(calls) == 6


@pytest.mark.anyio
async def test_a_walk_of_some_symbols_reads_only_theirs_and_goes_on_past_a_page_of_others() -> None:
    """A page holding none of the wanted symbols' orders is not the end of the listing: the
    walk stops at a page the exchange left empty, never at one the filter emptied. The
    others' orders are never read (one that no reader could read does not fail the walk),
    but an order without a symbol fails it, as it would unfiltered."""
    items = [{**ORDER, "id": str(i), "symbol": "ETH_USDT"} for i in range(6)]
    items[5]["symbol"] = "BTC_USDT"  # on page 3 of 3, past two pages of others
    items[1]["side"] = "sideways"  # unreadable, and not wanted
    requests: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        requests.append(page_number(request))
        return page_of(items, request)

    async with client_for(handler) as client:
        got = [
            order
            async for order in client.iter_open_orders(
                page_size=2, of_symbols=frozenset({"BTC_USDT"})
            )
        ]
        assert [order.id for order in got] == ["5"] and got[0].symbol == "BTC_USDT"
        assert sorted(requests) == [1, 2, 3]
        del items[5]["symbol"]
        with pytest.raises(WireFormatError, match="symbol"):
            [o async for o in client.iter_open_orders(page_size=2, of_symbols=frozenset())]


@pytest.mark.anyio
async def test_the_orders_a_narrowed_walk_passed_over_are_read_in_the_background(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Apply's first read keeps only its symbols' orders; the others are read afterwards,
    while the loop has time, so the whole walk after the last call finds them read."""
    items = [{**ORDER, "id": str(i), "symbol": "ETH_USDT"} for i in range(60)]
    items[0]["symbol"] = "BTC_USDT"
    read: list[str] = []
    order_reader = PARSERS[Order]

    def counting(entity: Entity) -> Order:
        read.append(entity.raw["id"])
        return order_reader(entity)

    monkeypatch.setitem(PARSERS, Order, counting)

    async def handler(request: httpx.Request) -> httpx.Response:
        return page_of(items, request)

    async with client_for(handler) as client:
        wanted = frozenset({"BTC_USDT"})
        narrowed = [order async for order in client.iter_open_orders(of_symbols=wanted)]
        assert [order.id for order in narrowed] == ["0"] and read == ["0"]
        reading = client._reading_aside
        assert reading is not None
        await reading  # 59 orders, in batches with a pause between
        assert sorted(read, key=int) == [str(i) for i in range(60)]
        whole = [order async for order in client.iter_open_orders()]
    assert [order.id for order in whole] == [str(i) for i in range(60)]
    assert len(read) == 60 and whole[0] is narrowed[0]  # none read twice


def test_items_put_aside_are_read_a_batch_at_a_time_and_an_unreadable_one_is_dropped() -> None:
    read_before = ReadItems()
    calls: list[Any] = []

    def reader(entity: Entity) -> Any:
        calls.append(entity.raw["v"])
        if entity.raw["v"] == "bad":
            raise WireFormatError("GET /x", "unreadable")
        return object()

    entities = [Entity("GET /x", {"v": v}, kind="x") for v in ["a", "bad", "c"]]
    read_before.put_aside(reader, entities)
    assert read_before.read_aside(2) is True and calls == ["a", "bad"]
    assert read_before.read_aside(2) is False and calls == ["a", "bad", "c"]
    assert read_before.read_aside(2) is False and len(calls) == 3
    kept = read_before.item(reader, Entity("GET /x", {"v": "c"}, kind="x"))
    assert len(calls) == 3 and kept is read_before.item(reader, entities[2])
