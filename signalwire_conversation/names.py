"""Sender names: ``user_name`` from the address directory, as the official client shows them.

A stored message carries only its sender's address id (``user_id``). :class:`NameResolver`
looks the address up (``GET /api/fabric/addresses/{id}``) and takes its ``display_name``, else
its ``name``. Rules:

- answers are cached for ``ttl`` seconds (3 minutes, as the official client does), at most
  ``max_entries`` addresses (least recently used evicted first);
- one request per address at a time: threads asking for the same uncached address wait for
  the one lookup in flight;
- a failed lookup never fails the listing or the event: the name stays ``None``. An address
  the directory does not know (404) is remembered for the full ``ttl``; any other failure
  (timeout, 5xx, ...) for ``failure_ttl`` seconds (30), after which it is tried again. A lookup
  is sent once, without the retries of the client's other reads, with a short timeout (3 s to
  connect, 5 s to read): a hanging directory delays a page or a live event by seconds, not by
  the client's full timeout;
- a name the message or event already carries is kept.

The :class:`~signalwire_conversation.Client` builds one per client (``resolve_names=False``
turns it off) and fills the messages of every listing, page by page, and the live events of a
callback subscription. :meth:`NameResolver.fill` does the same for any message or event
(``client.names.fill(event)``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar
from urllib.parse import quote

import attrs

from . import _logging
from .errors import NotFoundError, SignalWireError
from .models import ConversationMessage, _set_user_name
from .transport import Transport

__all__ = ["NameResolver", "DEFAULT_NAME_TTL", "DEFAULT_FAILURE_TTL", "DEFAULT_MAX_NAMES"]

logger = _logging.get_logger("signalwire_conversation.names")

PATH_ADDRESS = "/api/fabric/addresses/{}"

#: Seconds a looked-up name is kept (the official client: 3 minutes).
DEFAULT_NAME_TTL = 180.0
#: Seconds a failed lookup (other than "no such address") is remembered before it is retried.
DEFAULT_FAILURE_TTL = 30.0
#: Addresses cached at most.
DEFAULT_MAX_NAMES = 10_000
#: ``(connect, read)`` seconds for one lookup.
DEFAULT_LOOKUP_TIMEOUT = (3.0, 5.0)
# A thread waiting for another thread's lookup of the same address gives up after this long.
_WAIT_BOUND = 300.0

M = TypeVar("M", bound=ConversationMessage)


class _Flight:
    """One lookup in flight; the threads asking for the same address wait on ``done``."""

    __slots__ = ("done", "name")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.name: Optional[str] = None


class NameResolver:
    """Address id → sender name, from ``GET /api/fabric/addresses/{id}``, cached. Thread-safe.

    Args:
        transport: the client's REST transport (its token, timeouts and error mapping).
        ttl: seconds a name is kept.
        failure_ttl: seconds a failed lookup is remembered (``None`` as the name).
        max_entries: addresses cached at most.
        timeout: ``(connect, read)`` seconds for one lookup.
        clock: the monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        ttl: float = DEFAULT_NAME_TTL,
        failure_ttl: float = DEFAULT_FAILURE_TTL,
        max_entries: int = DEFAULT_MAX_NAMES,
        timeout: Tuple[float, float] = DEFAULT_LOOKUP_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self.timeout = timeout
        self.ttl = float(ttl)
        self.failure_ttl = float(failure_ttl)
        self.max_entries = int(max_entries)
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: "OrderedDict[str, Tuple[Optional[str], float]]" = OrderedDict()
        self._flights: Dict[str, _Flight] = {}
        #: Counters: ``lookups`` sent, ``failures`` among them, cache ``hits``. They only grow.
        self.stats = {"lookups": 0, "failures": 0, "hits": 0}

    # -- lookups -------------------------------------------------------------------------------

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock, and no lookup in flight (its thread stayed in the
        parent)."""
        self._lock = threading.Lock()
        self._flights = {}

    def name_of(self, address_id: Optional[str]) -> Optional[str]:
        """The name of ``address_id`` (cached; one lookup at a time per address); never raises."""
        if not address_id:
            return None
        with self._lock:
            hit = self._cache.get(address_id)
            if hit is not None and hit[1] > self._clock():
                self._cache.move_to_end(address_id)
                self.stats["hits"] += 1
                return hit[0]
            flight = self._flights.get(address_id)
            leader = flight is None
            if flight is None:
                flight = self._flights[address_id] = _Flight()
        if not leader:
            flight.done.wait(_WAIT_BOUND)
            return flight.name
        name: Optional[str] = None
        keep = self.failure_ttl
        try:
            name, keep = self._lookup(address_id)
        finally:
            with self._lock:
                self._cache[address_id] = (name, self._clock() + keep)
                self._cache.move_to_end(address_id)
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
                del self._flights[address_id]
            flight.name = name
            flight.done.set()
        return name

    def _lookup(self, address_id: str) -> Tuple[Optional[str], float]:
        """``(name, seconds to keep it)``; failures are logged, never raised."""
        with self._lock:
            self.stats["lookups"] += 1
        try:
            body = self._transport.get(
                PATH_ADDRESS.format(quote(address_id, safe="")), max_retries=0, timeout=self.timeout
            )
        except NotFoundError:
            logger.info("no address %s in the directory; its messages show no sender name", address_id)
            return None, self.ttl
        except SignalWireError as exc:
            with self._lock:
                self.stats["failures"] += 1
            logger.warning(
                "could not look up the name of address %s (%s: %s); retrying in %.0f s",
                address_id, type(exc).__name__, exc, self.failure_ttl,
            )
            return None, self.failure_ttl
        return _name_in(body), self.ttl

    def forget(self, address_id: Optional[str] = None) -> None:
        """Drop the cached name of ``address_id`` (every name when ``None``)."""
        with self._lock:
            if address_id is None:
                self._cache.clear()
            else:
                self._cache.pop(address_id, None)

    # -- filling models ------------------------------------------------------------------------

    def fill(self, item: M) -> M:
        """``item`` (a message or an event) with ``user_name`` filled in when it had none.

        Returns ``item`` itself when it already has a name, has no ``user_id`` or the lookup
        found none; otherwise a copy with the name (models are immutable).
        """
        if item.user_name is not None or not item.user_id:
            return item
        name = self.name_of(item.user_id)
        if name is None:
            return item
        return attrs.evolve(item, user_name=name)

    def fill_page(self, items: List[M]) -> List[M]:
        """Fill ``user_name`` of freshly decoded ``items`` in place (one lookup per sender at
        most); returns ``items``. Only for models nobody else holds yet (a page being built)."""
        missing = {m.user_id for m in items if m.user_name is None}
        missing.discard(None)
        if not missing:
            return items
        names: Dict[Any, Optional[str]] = {address: self.name_of(address) for address in missing}
        for m in items:
            if m.user_name is None:
                name = names.get(m.user_id)
                if name is not None:
                    _set_user_name(m, name)
        return items

    def __repr__(self) -> str:
        with self._lock:
            cached = len(self._cache)
        return f"NameResolver(ttl={self.ttl:g}s, cached={cached})"


def _name_in(body: Any) -> Optional[str]:
    """``display_name``, else ``name``, of an address object (``None`` when neither is a
    non-empty string)."""
    if not isinstance(body, dict):
        return None
    for key in ("display_name", "name"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None
