"""``Page[T]``: one page of a list answer, and lazy iteration over all the later ones.

The wire envelope is ``{"data": [...], "links": {"next"?, "prev"?, ...}}`` (docs/protocol.md §1.5).
Rules:

- ``next``/``prev`` links are followed verbatim when absolute, joined to the base URL when
  relative. An absolute link is followed only to the base URL's origin or, over ``https``, to a
  host in the base URL's parent domain (the live backend may name the space host); any other
  link raises :class:`~signalwire_conversation.ResponseValidationError` from ``next_page()``
  (and from iteration) instead of sending the token there (see
  :func:`signalwire_conversation.transport.link_allowed`). The caller's filters (``page_size``, ``since``, ``until``) are kept on every page:
  any the link does not already carry are added to it.
- Pagination stops only when there is no ``next`` link: an empty page in the middle does not
  end it. A ``next`` link already fetched in this chain is not fetched again: iteration stops
  there and a warning is logged (a server bug must not hang a loop forever).
- ``limit`` caps the number of items the whole iteration yields (client side): ``.data`` of
  each page holds only what is left of the budget, and once it is spent ``has_next`` is
  ``False``. ``page_size`` is the per-request size sent as ``page_size``.
- ``since``/``until`` (epoch seconds) are sent as query parameters and also enforced here:
  items outside the window are left out of ``.data``. Messages come newest first, so a page
  that holds an item older than ``since`` is the last one (``has_next`` is ``False``). Items
  without a timestamp are kept.
- ``prev_page()`` starts a fresh window: its ``limit`` budget is whole again.
- ``len(page)`` and ``bool(page)`` describe this page only. Iterating a page again starts over
  from it: later pages are fetched again, never cached.
"""

from __future__ import annotations

from itertools import chain as _itertools_chain
from typing import (
    Any,
    Callable,
    FrozenSet,
    Generic,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    TypeVar,
)
from urllib.parse import parse_qsl, urlsplit

import attrs

from . import _logging
from ._timestamps import MILLISECONDS_THRESHOLD
from .errors import ResponseValidationError

__all__ = ["Page"]

T = TypeVar("T")

logger = _logging.get_logger("signalwire_conversation.pagination")

#: Fetch a page: ``(url_or_path, params) -> decoded JSON body``.
Fetcher = Callable[[str, Mapping[str, Any]], Any]


class _Chain(Generic[T]):
    """What every page of one listing shares: how to fetch, decode and filter.

    (Plain classes here and for Page, not attrs ones: each attrs class costs ~0.5 ms at import.)
    """

    __slots__ = ("fetch", "decode", "url_of", "decode_all", "params", "limit", "since", "until",
                 "timestamp", "item_name")

    def __init__(
        self,
        *,
        fetch: Fetcher,
        decode: Callable[[Any], T],
        url_of: Callable[[str], str],
        params: Mapping[str, Any],
        decode_all: Optional[Callable[[List[Any]], List[T]]] = None,
        limit: Optional[int] = None,
        since: Optional[float] = None,
        until: Optional[float] = None,
        timestamp: Optional[Callable[[T], Optional[float]]] = None,
        item_name: str = "item",
    ) -> None:
        self.fetch = fetch
        self.decode = decode
        self.url_of = url_of
        #: decodes a whole page at once (same result as ``decode`` item by item), when available
        self.decode_all = decode_all
        self.params = params
        self.limit = limit
        self.since = since
        self.until = until
        self.timestamp = timestamp
        self.item_name = item_name


class Page(Generic[T]):
    """One page of results; iterating it yields its items, then lazily those of later pages.

    Read-only: setting an attribute raises ``attrs.exceptions.FrozenInstanceError``.

    Attributes:
        data: this page's items (after the ``since``/``until`` filter and the ``limit`` cap).
        links: the wire's ``links`` (``next``, ``prev``, ``self``, ``first`` when sent).
    """

    __slots__ = ("data", "links", "_chain", "_url", "_yielded_before", "_terminal", "_seen", "__weakref__")

    data: List[T]
    links: Mapping[str, str]
    _chain: "_Chain[T]"
    _url: str
    _yielded_before: int
    _terminal: bool
    _seen: FrozenSet[str]

    def __init__(
        self,
        *,
        data: List[T],
        chain: "_Chain[T]",
        url: str,
        links: Optional[Mapping[str, str]] = None,
        yielded_before: int = 0,
        terminal: bool = False,
        seen: FrozenSet[str] = frozenset(),
    ) -> None:
        init = object.__setattr__
        init(self, "data", data)
        init(self, "links", {} if links is None else links)
        init(self, "_chain", chain)
        init(self, "_url", url)
        init(self, "_yielded_before", yielded_before)
        init(self, "_terminal", terminal)
        init(self, "_seen", seen)

    def __setattr__(self, name: str, value: Any) -> None:
        raise attrs.exceptions.FrozenInstanceError()

    def __delattr__(self, name: str) -> None:
        raise attrs.exceptions.FrozenInstanceError()

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def _fetch_first(cls, chain: "_Chain[T]", path: str) -> "Page[T]":
        params = dict(chain.params)
        url = chain.url_of(path)
        return cls._load(chain, path, url, params, _request_key(url, params), yielded_before=0, seen=frozenset())

    @classmethod
    def _load(
        cls,
        chain: "_Chain[T]",
        target: str,
        url: str,
        params: Mapping[str, Any],
        key: str,
        *,
        yielded_before: int,
        seen: FrozenSet[str],
    ) -> "Page[T]":
        """Fetch ``target`` (resolved: ``url``; canonical request: ``key``) and build the page."""
        body = chain.fetch(target, params)
        items, links = _envelope(body, url)
        if chain.decode_all is not None:
            decoded = chain.decode_all(items)
        else:
            decode = chain.decode
            decoded = [decode(item) for item in items]
        kept = decoded
        past_since = False
        since, until, timestamp = chain.since, chain.until, chain.timestamp
        if timestamp is not None and (since is not None or until is not None):
            kept = []
            for item in decoded:
                ts = timestamp(item)
                if ts is not None:
                    seconds = ts / 1000.0 if ts >= MILLISECONDS_THRESHOLD else float(ts)
                    if since is not None and seconds < since:
                        past_since = True  # newest first: everything after this page is older still
                        continue
                    if until is not None and seconds > until:
                        continue
                kept.append(item)
        terminal = past_since
        if chain.limit is not None:
            budget = max(0, chain.limit - yielded_before)
            if len(kept) >= budget:
                kept = kept[:budget]
                terminal = True
        return cls(
            data=kept,
            links=links,
            chain=chain,
            url=url,
            yielded_before=yielded_before,
            terminal=terminal,
            seen=seen | {key},
        )

    # -- navigation ------------------------------------------------------------------------

    @property
    def has_next(self) -> bool:
        """Whether a later page exists and iteration would fetch it (limit/since not reached)."""
        return bool(self.links.get("next")) and not self._terminal

    @property
    def has_prev(self) -> bool:
        """Whether the server offers a previous page (``links.prev``)."""
        return bool(self.links.get("prev"))

    def next_page(self) -> Optional["Page[T]"]:
        """Fetch the next page; ``None`` when there is none (or ``limit``/``since`` was reached).

        A ``next`` link already fetched in this chain is refused: ``None`` and a warning.
        """
        if not self.has_next:
            return None
        link = self.links["next"]
        url = self._chain.url_of(link)  # refuses a link to a host the token must not go to
        params = self._params_for(link)
        key = _request_key(url, params)
        if key in self._seen:
            logger.warning(
                "pagination stopped: the server's next link %s repeats a page already fetched",
                _logging.redact(link),
            )
            return None
        return self._load(
            self._chain,
            link,
            url,
            params,
            key,
            yielded_before=self._yielded_before + len(self.data),
            seen=self._seen,
        )

    def prev_page(self) -> Optional["Page[T]"]:
        """Fetch the previous page; ``None`` when there is none. Its ``limit`` budget is whole."""
        link = self.links.get("prev")
        if not link:
            return None
        url = self._chain.url_of(link)
        params = self._params_for(link)
        return self._load(
            self._chain, link, url, params, _request_key(url, params), yielded_before=0, seen=frozenset()
        )

    def pages(self) -> Iterator["Page[T]"]:
        """This page, then each later page, fetched only when the iteration reaches it."""
        page: Optional[Page[T]] = self
        while page is not None:
            yield page
            page = page.next_page()

    def __iter__(self) -> Iterator[T]:
        """This page's items, then those of each later page, fetched when reached.

        Every iteration starts over from this page: its own items come from memory, and each
        later page is fetched again (nothing is cached, so a long listing holds one page at a
        time, and a second pass sees what the server holds now).
        """
        # (chain: the items come out of each page's list at C speed, not through a generator
        # resumed per item; the next page is still fetched only when this one is used up)
        return _itertools_chain.from_iterable(page.data for page in self.pages())

    def __len__(self) -> int:
        """The number of items on this page (``len(page.data)``), not of the whole listing."""
        return len(self.data)

    def __bool__(self) -> bool:
        """Whether this page holds any item. An empty page may still have a ``next`` page."""
        return bool(self.data)

    def _params_for(self, link: str) -> Mapping[str, Any]:
        """The caller's filters the link does not already carry (Stripe's rule: keep them)."""
        present = {name for name, _ in parse_qsl(urlsplit(link).query, keep_blank_values=True)}
        return {k: v for k, v in self._chain.params.items() if k not in present}

    # -- display ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        first = f", first={self.data[0]!r}" if self.data else ""
        return (
            f"<Page of {len(self.data)} {self._chain.item_name}(s), has_next={self.has_next}, "
            f"has_prev={self.has_prev}{first}>"
        )

    def _repr_html_(self) -> str:
        from html import escape  # (here: only notebooks need it, and it costs ~1 ms at import)

        shown: Sequence[T] = self.data[:20]
        rows: List[Mapping[str, Any]] = []
        for item in shown:
            to_dict = getattr(item, "to_dict", None)
            rows.append(to_dict() if callable(to_dict) else {"value": item})
        present = {key for row in rows for key in row}
        columns = [key for key in _PREFERRED_COLUMNS if key in present]
        for row in rows:
            for key in row:
                if key not in columns and len(columns) < 8:
                    columns.append(key)
        head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(_short(row.get(c)))}</td>" for c in columns) + "</tr>"
            for row in rows
        )
        more = len(self.data) - len(shown)
        note = f"<p>… and {more} more on this page</p>" if more > 0 else ""
        caption = (
            f"Page of {len(self.data)} {escape(self._chain.item_name)}(s); "
            f"has_next={self.has_next}, has_prev={self.has_prev}"
        )
        return f"<table><caption>{caption}</caption><tr>{head}</tr>{body}</table>{note}"


_PREFERRED_COLUMNS = ("id", "name", "ts", "user_id", "subtype", "kind", "text", "last_message_at")


def _short(value: Any, limit: int = 80) -> str:
    text = "" if value is None else (value if isinstance(value, str) else repr(value))
    return text if len(text) <= limit else text[:limit] + "…"


def _request_key(url: str, params: Mapping[str, Any]) -> str:
    """A canonical form of a request (URL + extra params) to recognise a repeated link."""
    parts = urlsplit(url)
    query = sorted(parse_qsl(parts.query, keep_blank_values=True))
    query.extend(sorted((str(k), str(v)) for k, v in params.items()))
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{sorted(query)}"


def _envelope(body: Any, url: str) -> "tuple[list[Any], dict[str, str]]":
    if not isinstance(body, dict):
        raise ResponseValidationError(
            f"GET {url}: expected a JSON object with 'data' and 'links', got {type(body).__name__}"
        )
    if "data" not in body:
        raise ResponseValidationError(f"GET {url}: the answer has no 'data' list: {_short(body, 200)}")
    data = body["data"]
    if data is None:
        data = []
    if not isinstance(data, list):
        raise ResponseValidationError(f"GET {url}: 'data' is a {type(data).__name__}, not a list")
    raw_links = body.get("links")
    links: dict[str, str] = {}
    if isinstance(raw_links, dict):
        links = {str(k): v for k, v in raw_links.items() if isinstance(v, str) and v}
    return data, links
