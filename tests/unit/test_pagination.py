"""Page: lazy iteration, links, limit, since/until, empty and repeated pages, display."""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from signalwire_conversation import Client, Page

from .helpers import BASE, message

URL = f"{BASE}/api/fabric/messages"


def page_body(items: List[Dict[str, Any]], next_: Optional[str] = None, prev: Optional[str] = None) -> Dict[str, Any]:
    links: Dict[str, str] = {}
    if next_:
        links["next"] = next_
    if prev:
        links["prev"] = prev
    return {"data": items, "links": links}


def q(call: Any) -> Dict[str, List[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def serve(rsps: responses.RequestsMock, pages: Dict[str, Dict[str, Any]], url: str = URL) -> None:
    """Answer GET ``url`` strictly by its ``p`` query value ("" for the first page)."""

    def answer(request: Any) -> Any:
        values = parse_qs(urlsplit(request.url).query).get("p", [""])
        assert len(values) == 1, f"p sent twice: {request.url}"
        if values[0] not in pages:
            return (599, {}, json.dumps({"error": f"unexpected page {request.url}"}))
        return (200, {"Content-Type": "application/json"}, json.dumps(pages[values[0]]))

    rsps.add_callback("GET", re.compile(re.escape(url) + r"(\?.*)?$"), callback=answer)


def test_lazy_iteration_fetches_only_when_needed(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([message(1, 30), message(2, 29)], next_=f"{URL}?p=2"),
        "2": page_body([message(3, 28)], next_="/api/fabric/messages?p=3"),
        "3": page_body([message(4, 27)]),
    })
    page = client.conversation.get_messages()
    assert len(rsps.calls) == 1
    it = iter(page)
    assert [next(it).id, next(it).id] == ["m1", "m2"]
    assert len(rsps.calls) == 1  # the second page is not fetched before it is needed
    assert next(it).id == "m3"
    assert len(rsps.calls) == 2
    assert [m.id for m in it] == ["m4"]
    assert len(rsps.calls) == 3


def test_next_link_absolute_is_followed_verbatim(client: Client, rsps: responses.RequestsMock) -> None:
    # the space host (docs/protocol.md §1.5), under the base URL's parent domain
    other = "https://space.swire.io/api/fabric/messages?page_number=1&page_token=PA1"
    serve(rsps, {
        "": page_body([message(1, 10)], next_=other),
    })
    rsps.get(other, json=page_body([message(2, 9)]))
    assert [m.id for m in client.conversation.get_messages()] == ["m1", "m2"]
    second = rsps.calls[1].request
    assert urlsplit(second.url).netloc == "space.swire.io"
    assert q(rsps.calls[1]) == {"page_number": ["1"], "page_token": ["PA1"]}
    assert second.headers["Authorization"].startswith("Bearer ")


def test_relative_next_link_joined_to_base(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {"": page_body([], next_="/api/fabric/messages?p=x"), "x": page_body([message(1, 1)])})
    assert [m.id for m in client.conversation.get_messages()] == ["m1"]
    assert rsps.calls[1].request.url.startswith(f"{BASE}/api/fabric/messages?")


def test_filters_kept_on_every_page(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([message(1, 150)], next_=f"{URL}?p=t2&page_size=7"),
        "t2": page_body([message(2, 140)], next_=f"{URL}?p=t3"),
        "t3": page_body([]),
    })
    list(client.conversation.get_messages(page_size=7, since=100, until=200))
    first, second, third = (q(c) for c in rsps.calls)
    assert first == {"page_size": ["7"], "since": ["100"], "until": ["200"]}
    # the link's own page_size is not duplicated; missing filters are added
    assert second == {"p": ["t2"], "page_size": ["7"], "since": ["100"], "until": ["200"]}
    assert third == {"p": ["t3"], "page_size": ["7"], "since": ["100"], "until": ["200"]}


def test_empty_middle_page_does_not_stop(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([message(1, 3)], next_=f"{URL}?p=2"),
        "2": page_body([], next_=f"{URL}?p=3"),
        "3": page_body([message(3, 1)]),
    })
    assert [m.id for m in client.conversation.get_messages()] == ["m1", "m3"]
    pages = list(client.conversation.get_messages().pages())
    assert [len(p.data) for p in pages] == [1, 0, 1]


def test_stops_when_no_next_link(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([message(1, 3)], prev=f"{URL}?p=0"),
    })
    page = client.conversation.get_messages()
    assert page.has_next is False and page.has_prev is True
    assert page.next_page() is None
    assert [m.id for m in page] == ["m1"]
    assert len(rsps.calls) == 1


def test_repeated_next_link_does_not_loop(client: Client, rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture) -> None:
    serve(rsps, {
        "": page_body([message(1, 3)], next_=f"{URL}?p=2"),
        "2": page_body([message(2, 2)], next_=f"{URL}?p=2"),
    })
    with caplog.at_level(logging.WARNING, logger="signalwire_conversation"):
        assert [m.id for m in client.conversation.get_messages()] == ["m1", "m2"]
    assert len(rsps.calls) == 2
    assert "repeats a page already fetched" in caplog.text


def test_cycle_back_to_first_page_is_refused(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([message(1, 3)], next_=f"{URL}?p=2"),
        "2": page_body([message(2, 2)], next_=URL),
    })
    assert [m.id for m in client.conversation.get_messages()] == ["m1", "m2"]
    assert len(rsps.calls) == 2


def test_next_page_twice_on_same_page_is_fine(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([message(1, 3)], next_=f"{URL}?p=2"),
        "2": page_body([message(2, 2)]),
    })
    page = client.conversation.get_messages()
    a, b = page.next_page(), page.next_page()
    assert a is not None and b is not None and a.data[0].id == b.data[0].id == "m2"


def test_prev_page(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([message(3, 1)], prev=f"{URL}?p=1"),
        "1": page_body([message(1, 3), message(2, 2)], next_=f"{URL}?p=2"),
    })
    page = client.conversation.get_messages(limit=1)
    assert page.has_prev is True
    prev = page.prev_page()
    assert prev is not None
    assert urlsplit(rsps.calls[1].request.url).query.startswith("p=1")
    # a fresh limit budget: the previous page gets its own 1 item
    assert [m.id for m in prev.data] == ["m1"]


def test_prev_page_none_without_link(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([message(1, 1)]),
    })
    page = client.conversation.get_messages()
    assert page.has_prev is False and page.prev_page() is None


def test_limit_caps_total_items_across_pages(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([message(i, 100 - i) for i in range(3)], next_=f"{URL}?p=2"),
        "2": page_body([message(i, 100 - i) for i in range(3, 6)], next_=f"{URL}?p=3"),
        "3": page_body([message(i, 100 - i) for i in range(6, 9)]),
    })
    got = [m.id for m in client.conversation.get_messages(limit=4, page_size=3)]
    assert got == ["m0", "m1", "m2", "m3"]
    assert len(rsps.calls) == 2  # the third page is never fetched


def test_limit_trims_data_and_clears_has_next(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([message(i, 100 - i) for i in range(5)], next_=f"{URL}?p=2"),
    })
    page = client.conversation.get_messages(limit=2, page_size=5)
    assert [m.id for m in page.data] == ["m0", "m1"]
    assert page.has_next is False and page.next_page() is None
    assert page.links["next"].endswith("p=2")  # the wire's link is still visible


def test_limit_exact_page_boundary(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([message(0, 5), message(1, 4)], next_=f"{URL}?p=2"),
        "2": page_body([message(2, 3)]),
    })
    assert [m.id for m in client.conversation.get_messages(limit=2)] == ["m0", "m1"]
    assert len(rsps.calls) == 1


def test_since_enforced_client_side_with_early_stop(client: Client, rsps: responses.RequestsMock) -> None:
    # the server ignores `since`: the SDK still filters and stops once past it (newest first)
    serve(rsps, {
        "": page_body([message(1, 300), message(2, 250)], next_=f"{URL}?p=2"),
        "2": page_body([message(3, 210), message(4, 190), message(5, 180)], next_=f"{URL}?p=3"),
        "3": page_body([message(6, 100)]),
    })
    page = client.conversation.get_messages(since=200)
    assert [m.id for m in page] == ["m1", "m2", "m3"]
    assert len(rsps.calls) == 2


def test_until_enforced_client_side(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([message(1, 300), message(2, 250)], next_=f"{URL}?p=2"),
        "2": page_body([message(3, 200), message(4, 150)]),
    })
    assert [m.id for m in client.conversation.get_messages(until=200)] == ["m3", "m4"]


def test_page_of_only_too_new_items_is_empty_but_continues(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([message(1, 300)], next_=f"{URL}?p=2"),
        "2": page_body([message(2, 100)]),
    })
    page = client.conversation.get_messages(until=200)
    assert page.data == [] and page.has_next is True
    assert [m.id for m in page] == ["m2"]


def test_since_until_with_millisecond_timestamps(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([message(1, 1_700_000_300_000), message(2, 1_700_000_100_000), message(3, 1_699_999_000_000)]),
    })
    got = [m.id for m in client.conversation.get_messages(since=1_700_000_000, until=1_700_000_200)]
    assert got == ["m2"]


def test_items_without_ts_are_kept(client: Client, rsps: responses.RequestsMock) -> None:
    item = message(1, 0)
    del item["ts"]
    serve(rsps, {
        "": page_body([item]),
    })
    assert [m.id for m in client.conversation.get_messages(since=10)] == ["m1"]


def test_limit_and_since_together(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([message(i, 100 - i) for i in range(10)]),
    })
    got = [m.id for m in client.conversation.get_messages(limit=3, since=95, until=98)]
    assert got == ["m2", "m3", "m4"]


def test_conversations_page_iterates(client: Client, rsps: responses.RequestsMock) -> None:
    conv = f"{BASE}/api/fabric/conversations"
    serve(rsps, {"": {"data": [{"group_id": "g1"}], "links": {"next": f"{conv}?p=2"}}, "2": {"data": [{"group_id": "g2"}], "links": {}}}, url=conv)
    assert [c.id for c in client.conversation.get_conversations()] == ["g1", "g2"]


def test_repr_is_short_and_html_renders(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([message(i, 1000 - i) for i in range(100)], next_=f"{URL}?p=2"),
    })
    page = client.conversation.get_messages()
    text = repr(page)
    assert text.startswith("<Page of 100 ConversationMessage(s), has_next=True, has_prev=False")
    assert "m0" in text and "m99" not in text
    assert len(text) < 600
    html = page._repr_html_()
    assert "<table>" in html and "text 0" in html and "and 80 more" in html
    assert "<script" not in html


def test_html_escapes_content(client: Client, rsps: responses.RequestsMock) -> None:
    item = message(1, 1)
    item["text"] = "<script>alert(1)</script>"
    serve(rsps, {
        "": page_body([item]),
    })
    html = client.conversation.get_messages()._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_page_is_generic_and_exported() -> None:
    assert Page[int] is not None


# -- D6: the token follows a link only to the base URL's site -----------------------------------


@pytest.mark.parametrize("link", [
    "http://evil.example.com/api/fabric/messages?p=2",      # plain http, remote
    "https://evil.example.com/api/fabric/messages?p=2",     # another domain
    "https://swire.io.evil.example.com/api/fabric/messages?p=2",  # suffix trick
    "http://fabric.swire.io/api/fabric/messages?p=2",       # downgrade to http, same host
    "https://space.swire.io:8443/api/fabric/messages?p=2",  # same site, another port
    "//evil.example.com/api/fabric/messages?p=2",           # scheme-relative
    "https://127.0.0.1/api/fabric/messages?p=2",
])
def test_link_to_another_origin_is_refused(client: Client, rsps: responses.RequestsMock, link: str) -> None:
    from signalwire_conversation import ResponseValidationError

    rsps.get(URL, json=page_body([message(1, 3)], next_=link))
    page = client.conversation.get_messages()
    assert page.has_next
    with pytest.raises(ResponseValidationError, match="not following it with your token"):
        page.next_page()
    assert len(rsps.calls) == 1  # nothing was sent to the link


@pytest.mark.parametrize("link", [
    f"{URL}?p=2",                                           # the base URL's origin
    "https://fabric.swire.io:443/api/fabric/messages?p=2",  # the same, explicit port
    "https://space.swire.io/api/fabric/messages?p=2",       # the space host (docs/protocol.md §1.5)
    "https://swire.io/api/fabric/messages?p=2",
    "/api/fabric/messages?p=2",                             # relative
])
def test_link_within_the_site_is_followed(client: Client, rsps: responses.RequestsMock, link: str) -> None:
    target = link.split("?")[0] if link.startswith("https://") else URL
    rsps.get(URL, json=page_body([message(1, 3)], next_=link), match=[responses.matchers.query_string_matcher("")])
    rsps.get(target, json=page_body([message(2, 2)]), match=[responses.matchers.query_string_matcher("p=2")])
    assert [m.id for m in client.conversation.get_messages()] == ["m1", "m2"]
    assert rsps.calls[1].request.headers["Authorization"].startswith("Bearer ")


def test_loopback_base_allows_its_exact_origin_only() -> None:
    from signalwire_conversation.transport import link_allowed

    base = "http://127.0.0.1:8080"
    assert link_allowed(base, "http://127.0.0.1:8080/api/x?p=2")
    assert not link_allowed(base, "http://127.0.0.1:8081/api/x")
    assert not link_allowed(base, "http://localhost:8080/api/x")
    assert not link_allowed(base, "https://127.0.0.1:8080/api/x")
    assert not link_allowed("https://fabric.swire.io", "https://[::1]/x")
    assert not link_allowed("https://signalwire.com", "https://evil.com/x")


def test_len_and_bool_describe_this_page_only(client: Client, rsps: responses.RequestsMock) -> None:
    serve(rsps, {
        "": page_body([], next_=f"{URL}?p=2"),  # an empty page in the middle of a listing
        "2": page_body([message(1, 30), message(2, 29)], next_=f"{URL}?p=3"),
        "3": page_body([message(3, 28)]),
    })
    first = client.conversation.get_messages()
    assert len(first) == 0 and not first and first.has_next
    second = first.next_page()
    assert second is not None
    assert len(second) == 2 and bool(second) is True
    assert len(rsps.calls) == 2  # len() and bool() fetch nothing
    assert [m.id for m in first] == ["m1", "m2", "m3"]  # the listing goes on past the empty page


def test_iterating_a_page_twice_fetches_the_later_pages_again(
    client: Client, rsps: responses.RequestsMock
) -> None:
    serve(rsps, {
        "": page_body([message(1, 30)], next_=f"{URL}?p=2"),
        "2": page_body([message(2, 29)]),
    })
    page = client.conversation.get_messages()
    assert len(rsps.calls) == 1
    assert [m.id for m in page] == ["m1", "m2"]
    assert len(rsps.calls) == 2
    assert [m.id for m in page] == ["m1", "m2"]  # the same results ...
    assert len(rsps.calls) == 3  # ... the second page asked for again, the first served from memory
    assert [urlsplit(c.request.url).query for c in rsps.calls[1:]] == ["p=2", "p=2"]
    # a limit budget is counted per iteration, not spent by the first one
    limited = client.conversation.get_messages(limit=2)
    assert [m.id for m in limited] == ["m1", "m2"]
    assert [m.id for m in limited] == ["m1", "m2"]


def test_a_page_is_read_only(client: Client, rsps: responses.RequestsMock) -> None:
    import attrs

    serve(rsps, {"": page_body([message(1, 30)])})
    page = client.conversation.get_messages()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        page.data = []  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        del page.links
    assert [m.id for m in page] == ["m1"]
