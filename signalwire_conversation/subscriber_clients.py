"""``SubscriberClients``: one :class:`~signalwire_conversation.Client` per subscriber, for web backends.

A Django or Flask view acts for the signed-in user. Building a client per request would mint a
token and open connections every time; one client per subscriber, kept across requests, reuses
its token (renewed as needed), its cached group ids and sender names. This class keeps those
clients:

- made on first use with :meth:`Client.for_subscriber` from one shared
  :class:`~signalwire_conversation.SubscriberTokens`;
- all on one ``requests.Session``, hence one HTTP connection pool per host for the process,
  whatever the number of subscribers;
- at most ``max_clients`` of them: the least recently used one is evicted and closed (stopping
  its listener, if it had one). A client borrowed with :meth:`borrow` is closed only once the
  last ``with`` block using it has ended;
- thread-safe: two threads asking for the same new subscriber get the same client.

::

    clients = SubscriberClients()            # at module level: one per process

    def inbox(request):
        client = clients.get(request.user.email)
        ...

Call :meth:`close` at shutdown (or use it as a context manager).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional

import requests

from . import _logging
from .errors import SignalWireError, ValidationError
from .transport import DEFAULT_MAX_CONNECTIONS, new_session

if TYPE_CHECKING:
    from .client import Client
    from .tokens import SubscriberTokens

__all__ = ["SubscriberClients", "DEFAULT_MAX_CLIENTS"]

logger = _logging.get_logger("signalwire_conversation.subscriber_clients")

#: Clients kept at most by default.
DEFAULT_MAX_CLIENTS = 256


class SubscriberClients:
    """A bounded, thread-safe set of per-subscriber clients sharing one connection pool.

    Args:
        tokens: where the tokens come from. Default: a new :class:`SubscriberTokens` from the
            environment (``SIGNALWIRE_PROJECT_ID``, ``SIGNALWIRE_API_TOKEN``,
            ``SIGNALWIRE_SPACE``).
        max_clients: clients kept at most; the least recently used is closed beyond that.
        pool_maxsize: HTTP connections kept per host in the shared pool (the most requests
            that run at once without opening extra connections).
        **client_kwargs: passed to every :meth:`Client.for_subscriber` (``base_url``,
            ``timeout``, ``resolve_names``...); not ``token`` or ``session``.
    """

    def __init__(
        self,
        tokens: Optional["SubscriberTokens"] = None,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        pool_maxsize: int = DEFAULT_MAX_CONNECTIONS,
        **client_kwargs: Any,
    ) -> None:
        if isinstance(max_clients, bool) or not isinstance(max_clients, int) or max_clients < 1:
            raise ValidationError("max_clients", f"must be an int >= 1, got {max_clients!r}")
        if isinstance(pool_maxsize, bool) or not isinstance(pool_maxsize, int) or pool_maxsize < 1:
            raise ValidationError("pool_maxsize", f"must be an int >= 1, got {pool_maxsize!r}")
        for name in ("token", "session"):
            if name in client_kwargs:
                raise ValidationError(name, f"SubscriberClients sets {name}= itself; do not pass it")
        from .tokens import SubscriberTokens

        self._owns_tokens = tokens is None
        #: The token source shared by every client.
        self.tokens: SubscriberTokens = tokens if tokens is not None else SubscriberTokens()
        self.max_clients = max_clients
        self._client_kwargs = client_kwargs
        self._session: requests.Session = new_session(pool_maxsize=pool_maxsize)
        self._lock = threading.Lock()
        self._clients: "OrderedDict[str, Client]" = OrderedDict()
        self._creating: Dict[str, threading.Lock] = {}
        self._borrowed: Dict[int, int] = {}  # id(client) -> active borrow() blocks
        self._retired: Dict[int, "Client"] = {}  # evicted while borrowed: closed when returned
        self._closed = False

    def get(self, reference: str) -> "Client":
        """The client of subscriber ``reference``, made on first use (then the most recent).

        Use it within the request that asked for it; a client held for longer may be evicted
        (closed) meanwhile, use :meth:`borrow` for that.
        """
        from .client import Client

        with self._lock:
            self._check_open()
            client = self._clients.get(reference)
            if client is not None and not client.closed:
                self._clients.move_to_end(reference)
                return client
            creating = self._creating.get(reference)
            if creating is None:
                creating = self._creating[reference] = threading.Lock()
        with creating:
            with self._lock:
                self._check_open()
                client = self._clients.get(reference)
                if client is not None and not client.closed:
                    self._clients.move_to_end(reference)
                    return client
            try:
                client = Client.for_subscriber(
                    reference, tokens=self.tokens, session=self._session, **self._client_kwargs
                )
            except BaseException:
                with self._lock:
                    self._creating.pop(reference, None)
                raise
            evicted: List[Client] = []
            with self._lock:
                self._creating.pop(reference, None)
                closed = self._closed
                if not closed:
                    self._clients[reference] = client
                    while len(self._clients) > self.max_clients:
                        _, old = self._clients.popitem(last=False)
                        if self._borrowed.get(id(old)):
                            self._retired[id(old)] = old
                        else:
                            evicted.append(old)
            for old in evicted:
                _close(old)
            if closed:  # closed while this client was being made
                _close(client)
                raise SignalWireError("SubscriberClients is closed")
            return client

    @contextmanager
    def borrow(self, reference: str) -> Iterator["Client"]:
        """``with clients.borrow(ref) as client:`` the client is not closed by an eviction
        before the block ends (it is closed then, if it was evicted meanwhile)."""
        client = self.get(reference)
        key = id(client)
        with self._lock:
            self._borrowed[key] = self._borrowed.get(key, 0) + 1
        try:
            yield client
        finally:
            retired: Optional[Client] = None
            with self._lock:
                left = self._borrowed[key] - 1
                if left:
                    self._borrowed[key] = left
                else:
                    del self._borrowed[key]
                    retired = self._retired.pop(key, None)
            if retired is not None:
                _close(retired)

    def __contains__(self, reference: object) -> bool:
        with self._lock:
            return reference in self._clients

    def __len__(self) -> int:
        with self._lock:
            return len(self._clients)

    def close(self) -> None:
        """Close every client and the shared session (and the tokens, when made here)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            clients = list(self._clients.values()) + list(self._retired.values())
            self._clients.clear()
            self._retired.clear()
        for client in clients:
            _close(client)
        self._session.close()
        if self._owns_tokens:
            self.tokens.close()

    def __enter__(self) -> "SubscriberClients":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SubscriberClients({len(self)} of at most {self.max_clients}, tokens={self.tokens!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise SignalWireError("SubscriberClients is closed")


def _close(client: "Client") -> None:
    try:
        client.close()
    except Exception:  # closing must not fail the request that caused the eviction
        logger.exception("closing an evicted client failed")
