"""Pagination across many pages against the emulator's keyset cursors and absolute links."""

from __future__ import annotations

import datetime as dt
from typing import List, Optional

import pytest

from signalwire_conversation import Page
from signalwire_conversation.testing import Emulator, Subscriber

from .conftest import ClientFactory

N = 1050
ALL_MESSAGES = "^/api/fabric/messages$"
GROUP_MESSAGES = r"^/api/fabric/conversations/[^/]+/messages$"


@pytest.fixture
def many(emu: Emulator, alice: Subscriber, bob: Subscriber) -> List[str]:
    """1,050 messages from bob to alice; their ids newest first, as the emulator stores them."""
    emu.send_messages(bob, alice.address_id, [f"msg {i}" for i in range(N)])
    return [m["id"] for m in emu.messages(emu.group_id(alice, bob.address_id))]


def test_iteration_yields_every_message_once_newest_first(
    emu: Emulator, alice: Subscriber, bob: Subscriber, many: List[str], make_client: ClientFactory
) -> None:
    client = make_client(alice)
    first = client.conversation.get_conversation_messages(bob.address_id, page_size=100)
    assert emu.request_count("GET", GROUP_MESSAGES) == 1  # lazy: only the first page so far

    messages = list(first)

    assert [m.id for m in messages] == many
    assert len(set(m.id for m in messages)) == N
    assert [m.text for m in messages] == [f"msg {i}" for i in reversed(range(N))]
    ts = [m.ts for m in messages]
    assert all(a is not None and b is not None and a >= b for a, b in zip(ts, ts[1:]))
    assert emu.request_count("GET", GROUP_MESSAGES) == 11
    # every request asked for page_size=100, cursors after the first
    queries = [q for m, p, q in emu.requests if m == "GET" and "/messages" in p]
    assert all(q.get("page_size") == "100" for q in queries)
    assert "page_token" not in queries[0] and all("page_token" in q for q in queries[1:])


def test_pages_and_neighbours(
    emu: Emulator, alice: Subscriber, bob: Subscriber, many: List[str], make_client: ClientFactory
) -> None:
    client = make_client(alice)
    first = client.conversation.get_conversation_messages(bob.address_id, page_size=100)

    pages = list(first.pages())
    assert [len(p.data) for p in pages] == [100] * 10 + [50]
    assert [m.id for p in pages for m in p.data] == many
    assert [p.has_next for p in pages] == [True] * 10 + [False]
    assert [p.has_prev for p in pages] == [False] + [True] * 10
    assert pages[-1].next_page() is None
    assert first.prev_page() is None

    second = first.next_page()
    assert second is not None
    assert [m.id for m in second.data] == many[100:200]
    back = second.prev_page()
    assert back is not None and [m.id for m in back.data] == many[:100]
    assert back.has_prev is False and back.has_next is True
    before_last = pages[-1].prev_page()
    assert before_last is not None and [m.id for m in before_last.data] == many[900:1000]


def test_the_emulator_default_page_size(
    emu: Emulator, alice: Subscriber, many: List[str], make_client: ClientFactory
) -> None:
    client = make_client(alice)
    first = client.conversation.get_messages()
    assert isinstance(first, Page) and len(first.data) == 50

    assert sum(1 for _ in first.pages()) == 21  # 1,050 / 50
    assert [m.id for m in client.conversation.get_messages()] == many
    assert emu.request_count("GET", ALL_MESSAGES) == 21 + 21


@pytest.mark.parametrize(
    "limit, page_size, requests",
    [
        (250, 100, 3),  # 100 + 100 + 50 of the third page
        (250, None, 3),  # implicit page size: min(limit, 100)
        (30, None, 1),  # one page of 30
        (100, 100, 1),  # exactly one page: the second is never fetched
        (5000, 100, 11),  # more than there is: everything
    ],
)
def test_limit_caps_the_total_and_stops_the_requests(
    emu: Emulator, alice: Subscriber, many: List[str], make_client: ClientFactory,
    limit: int, page_size: Optional[int], requests: int,
) -> None:
    client = make_client(alice)
    page = client.conversation.get_messages(limit=limit, page_size=page_size)

    got = [m.id for m in page]

    assert got == many[: min(limit, N)]
    assert emu.request_count("GET", ALL_MESSAGES) == requests
    last = list(page.pages())[-1]
    assert last.has_next is False and last.next_page() is None


def test_limit_with_next_page_by_hand(
    emu: Emulator, alice: Subscriber, many: List[str], make_client: ClientFactory
) -> None:
    client = make_client(alice)
    p1 = client.conversation.get_messages(limit=150, page_size=100)
    p2 = p1.next_page()
    assert p2 is not None
    assert len(p1.data) == 100 and len(p2.data) == 50
    assert p2.has_next is False and p2.next_page() is None
    assert [m.id for m in p1.data + p2.data] == many[:150]
    assert emu.request_count("GET", ALL_MESSAGES) == 2


# -- since / until ---------------------------------------------------------------------------

T0 = 1_700_000_000.0
COUNT = 300


@pytest.fixture
def dated(emu: Emulator, alice: Subscriber, bob: Subscriber) -> List[str]:
    """300 messages bob -> alice, message i at T0 + i; ids newest first."""
    for i in range(COUNT):
        emu.send_message(bob, alice.address_id, f"t{i}", ts=T0 + i)
    return [m["id"] for m in emu.messages(emu.group_id(alice, bob.address_id))]


def _window(ids: List[str], lo: int, hi: int) -> List[str]:
    """The ids of messages lo..hi (inclusive), newest first."""
    return ids[COUNT - 1 - hi: COUNT - lo]


@pytest.mark.parametrize("honour", [True, False], ids=["server-filters", "server-ignores"])
def test_since_until_give_exactly_the_window(
    emu: Emulator, alice: Subscriber, bob: Subscriber, dated: List[str], make_client: ClientFactory, honour: bool
) -> None:
    emu.honour_time_filters = honour
    client = make_client(alice)

    got = list(client.conversation.get_conversation_messages(
        bob.address_id, since=T0 + 100, until=T0 + 199, page_size=25
    ))

    assert [m.text for m in got] == [f"t{i}" for i in range(199, 99, -1)]  # both ends inclusive
    assert [m.id for m in got] == _window(dated, 100, 199)
    fetched = emu.request_count("GET", GROUP_MESSAGES)
    if honour:
        assert fetched == 4  # the server sent only the 100 in the window
    else:
        # pages of t299..t275, ..., t124..t100 (8 pages) hold nothing older than since;
        # the 9th (t99..t75) does: iteration stops there, 3 of the 12 pages are never fetched
        assert fetched == 9
    # the filters went out on every request, whatever the server does with them
    queries = [q for m, p, q in emu.requests if m == "GET" and p.endswith("/messages")]
    assert all(q.get("since") == "1700000100" and q.get("until") == "1700000199" for q in queries)


@pytest.mark.parametrize("honour", [True, False], ids=["server-filters", "server-ignores"])
def test_since_only_and_until_only_on_get_messages(
    emu: Emulator, alice: Subscriber, dated: List[str], make_client: ClientFactory, honour: bool
) -> None:
    emu.honour_time_filters = honour
    client = make_client(alice)

    newest = [m.id for m in client.conversation.get_messages(since=T0 + 290, page_size=100)]
    assert newest == _window(dated, 290, 299)
    assert emu.request_count("GET", ALL_MESSAGES) == 1  # t290 is on the first page either way

    oldest = [m.id for m in client.conversation.get_messages(until=T0 + 9, page_size=100)]
    assert oldest == _window(dated, 0, 9)

    aware = dt.datetime.fromtimestamp(T0 + 150, tz=dt.timezone.utc)
    with_dt = [m.id for m in client.conversation.get_messages(since=aware, limit=20, page_size=100)]
    assert with_dt == _window(dated, 280, 299)


def test_since_with_the_server_ignoring_it_and_a_limit(
    emu: Emulator, alice: Subscriber, dated: List[str], make_client: ClientFactory
) -> None:
    emu.honour_time_filters = False
    client = make_client(alice)
    page = client.conversation.get_messages(since=T0 + 50, until=T0 + 250, limit=120, page_size=50)

    got = [m.id for m in page]

    assert got == _window(dated, 131, 250)  # the 120 newest in the window
    # t299..t250 (page 1: only t250 kept), t249..t200, t199..t150, t149..t100 (limit reached)
    assert emu.request_count("GET", ALL_MESSAGES) == 4
