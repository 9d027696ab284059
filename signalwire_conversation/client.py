"""``Client``: the entry point. Holds the token, the hosts, the transport and the listener.

Nothing here starts a thread: the realtime listener is built on the first ``subscribe()`` (or
``run_forever()``), and only then does it start its threads. One ``Client`` may be shared by
many threads.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Type, Union

import requests

from . import _logging
from .config import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_TOKEN_TIMEOUT,
    TokenProvider,
    TokenSource,
    resolve_hosts,
    resolve_verify,
)
from .conversation import ConversationAPI
from .errors import SignalWireError, ValidationError
from .names import NameResolver
from .transport import DEFAULT_MAX_CONNECTIONS, TimeoutArg, Transport, resolve_max_connections
from .models import ConversationMessageEvent, event_from_message

if TYPE_CHECKING:
    from .realtime import ConnectionState, Listener, RealtimeHub
    from .tokens import SubscriberTokens

__all__ = ["Client"]

logger = _logging.get_logger("signalwire_conversation.client")

ErrorHook = Callable[[BaseException, Optional[ConversationMessageEvent]], None]
StateHook = Callable[["ConnectionState"], None]


class Client:
    """A SignalWire Conversation client.

    Args:
        token: a subscriber access token (SAT), or a zero-argument callable returning a fresh
            one (called again on a 401 and before expiry). Default: env ``SIGNALWIRE_TOKEN``.
        base_url: the REST base. Default: env ``SIGNALWIRE_BASE_URL``, else
            ``https://fabric.<domain>`` from the token's ``ch`` claim.
        relay_url: the websocket URL. Default: env ``SIGNALWIRE_RELAY_URL``, else the
            ``base_url`` host with a ``ws``/``wss`` scheme when a base URL was given, else
            ``wss://<ch>``.
        timeout: seconds, or a ``(connect, read)`` pair, for every REST call (default 5 s to
            connect, 30 s to read); ``None`` disables it (not recommended). Per-call overrides
            are possible where a method accepts ``timeout``.
        max_retries: retries after the first attempt (0 disables them); see
            :mod:`signalwire_conversation.transport` for what is retried.
        session: a ``requests.Session`` to use (say, with proxies or a custom adapter). The
            client never closes a session it did not create. Its standard adapters keep the
            per-attempt deadline (see :mod:`signalwire_conversation.transport`); its pool size
            is its own.
        max_connections: connections kept open per host (default 64): the most threads that
            can share this client without opening and discarding extra connections.
        allow_insecure: accept plain ``http``/``ws`` URLs for non-loopback hosts. Must be a
            real ``bool`` (a string such as ``"no"`` read from an environment variable is
            refused, not taken as true).
        verify: TLS verification: ``True``, ``False`` (dangerous) or a CA bundle path (a
            non-empty ``str``). One decision for REST and the websocket, made here:
            ``True`` means ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` or ``SSL_CERT_FILE`` when
            set (not read when ``session.trust_env`` is false), else the ``certifi`` bundle.
        token_timeout: how long (seconds, default 30) a token callable may take when it is
            called for a refresh; a refresh waiting longer fails with
            :class:`ConfigurationError` (other threads never wait: they keep using the current
            token). The first call, made by this constructor, runs on the calling thread.
        on_error: ``on_error(exc, event)`` receives what a subscription callback raised.
        on_state_change: ``on_state_change(state)`` receives each ``ConnectionState``.
        listener_options: extra keyword arguments for the realtime listener (ping watchdog,
            backoff, queue size; see ``docs/realtime.md``). Checked here: an unknown name or a
            bad value raises at construction, not at the first ``subscribe()``.
        resolve_names: fill ``user_name`` of listed messages and of live events delivered to a
            callback from the address directory (cached 3 minutes; see
            :mod:`signalwire_conversation.names`). ``False`` sends no lookups.
        hub: a :class:`~signalwire_conversation.RealtimeHub`: this client's realtime listener
            runs on the hub's shared threads instead of threads of its own (for many
            subscribed clients in one process; docs/realtime.md). ``None``: its own threads.

    A client that is garbage-collected without :meth:`close` closes its listener (its threads
    hold no reference to the client). In a process forked from one that used the client, the
    client starts afresh: no live connection, its own HTTP connections, a new listener on the
    first ``subscribe()`` (the parent's subscriptions stay in the parent).

    Raises:
        ValidationError: an argument of the wrong type or value (naming it).
        ConfigurationError: no usable token, or a host that is not allowed.
    """

    def __init__(
        self,
        token: Optional[TokenSource] = None,
        *,
        base_url: Optional[str] = None,
        relay_url: Optional[str] = None,
        timeout: TimeoutArg = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        session: Optional[requests.Session] = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        allow_insecure: bool = False,
        verify: Union[bool, str] = True,
        token_timeout: float = DEFAULT_TOKEN_TIMEOUT,
        on_error: Optional[ErrorHook] = None,
        on_state_change: Optional[StateHook] = None,
        listener_options: Optional[Mapping[str, Any]] = None,
        resolve_names: bool = True,
        hub: Optional["RealtimeHub"] = None,
    ) -> None:
        _check_hook(on_error, "on_error")
        if hub is not None:
            from .realtime.hub import RealtimeHub as _Hub

            if not isinstance(hub, _Hub):
                raise ValidationError("hub", f"must be a RealtimeHub or None, got {type(hub).__name__}")
            if hub.closed:
                raise ValidationError("hub", "this RealtimeHub is closed")
        self._hub = hub
        if not isinstance(resolve_names, bool):
            raise ValidationError(
                "resolve_names", f"must be True or False, got {type(resolve_names).__name__} {resolve_names!r}"
            )
        _check_hook(on_state_change, "on_state_change")
        _check_verify(verify)
        if session is not None and not isinstance(session, requests.Session):
            raise ValidationError("session", f"must be a requests.Session or None, got {type(session).__name__}")
        if not isinstance(allow_insecure, bool):
            raise ValidationError(
                "allow_insecure", f"must be True or False, got {type(allow_insecure).__name__} {allow_insecure!r}"
            )
        options = _check_listener_options(listener_options)
        resolve_max_connections(max_connections)
        # the one trust decision, for REST and the websocket alike
        verify = resolve_verify(verify, environ=None if session is None or session.trust_env else {})
        self._tokens = TokenProvider(token, timeout=token_timeout)
        hosts = resolve_hosts(
            self._tokens.header, base_url=base_url, relay_url=relay_url, allow_insecure=allow_insecure
        )
        #: The REST base URL in use (no trailing slash).
        self.base_url = hosts.base_url
        #: The websocket URL in use.
        self.relay_url = hosts.relay_url
        self._verify = verify
        self._on_error = on_error
        self._on_state_change = on_state_change
        self._listener_options = options
        if options:
            # the values are checked by the listener itself: build a throwaway one (it starts
            # no thread; the real one is still built on the first subscribe())
            from .realtime.listener import Listener as _Listener

            try:
                _Listener(tokens=self._tokens, relay_url=self.relay_url, fetch_missed=_no_fetch, **options)
            except ValidationError as exc:
                text = str(exc)
                prefix = f"{exc.parameter}: "
                raise ValidationError(
                    f"listener_options[{exc.parameter!r}]", text[len(prefix):] if text.startswith(prefix) else text
                ) from None
        self._transport = Transport(
            base_url=hosts.base_url,
            tokens=self._tokens,
            timeout=timeout,
            max_retries=max_retries,
            session=session,
            verify=verify,
            max_connections=max_connections,
        )
        self._lock = threading.Lock()
        self._listener: Optional[Listener] = None
        self._closed = False
        #: The sender-name resolver (``names.fill(message_or_event)``), ``None`` with
        #: ``resolve_names=False``.
        self.names: Optional[NameResolver] = NameResolver(self._transport) if resolve_names else None
        #: The Conversation API (``get_conversations``, ``send_message``, ``subscribe``...).
        self.conversation = ConversationAPI(self._transport, listener=_weak_listener_getter(self), names=self.names)
        # closes the listener when the client is collected unclosed
        self._parts = _Parts()
        self._finalizer = weakref.finalize(self, _collected, self._parts)
        self._finalizer.atexit = False  # at exit the daemon threads simply end
        _CLIENTS.add(self)


    @classmethod
    def for_subscriber(
        cls, reference: str, *, tokens: Optional["SubscriberTokens"] = None, **client_kwargs: Any
    ) -> "Client":
        """A client acting as the subscriber ``reference``, from the project credentials.

        Its token is ``tokens.source(reference)``: minted on first use (the subscriber is
        created if new), cached, renewed before it expires and after a 401, also while the
        realtime listener runs. ``tokens`` defaults to one :class:`~signalwire_conversation.SubscriberTokens`
        per process built from ``SIGNALWIRE_PROJECT_ID``, ``SIGNALWIRE_API_TOKEN`` and
        ``SIGNALWIRE_SPACE``. ``client_kwargs`` go to :class:`Client` (``base_url``,
        ``session``, ``resolve_names``...); not ``token``.

        Raises:
            ConfigurationError: no project credentials.
            AuthenticationError: the project credentials were refused.
        """
        if "token" in client_kwargs:
            raise ValidationError("token", "for_subscriber() gets its token from `tokens`; do not pass token=")
        from .tokens import SubscriberTokens, default_tokens

        if tokens is not None and not isinstance(tokens, SubscriberTokens):
            raise ValidationError("tokens", f"must be a SubscriberTokens or None, got {type(tokens).__name__}")
        source = (tokens if tokens is not None else default_tokens()).source(reference)
        return cls(token=source, **client_kwargs)

    # -- realtime ------------------------------------------------------------------------------

    def _get_listener(self) -> "Listener":
        """The realtime listener, built on first use (this starts no thread by itself).

        Nothing it is given refers to the client (only to the ``ConversationAPI``), so the
        listener's threads never keep an abandoned client alive.
        """
        with self._lock:
            if self._closed:
                raise SignalWireError("this client is closed; create a new Client")
            if self._listener is None:
                from .realtime import Listener  # imported here: REST-only use never needs it

                make: Callable[..., Listener] = Listener
                if self._hub is not None:
                    from .realtime.hub.listener import HubListener

                    make = functools.partial(HubListener, hub=self._hub)
                self._listener = make(
                    tokens=self._tokens,
                    relay_url=self.relay_url,
                    fetch_missed=functools.partial(_recovered_messages, self.conversation),
                    fetch_latest=functools.partial(_latest_messages, self.conversation),
                    fill_names=self.names.fill if self.names is not None else None,
                    on_error=self._on_error,
                    on_state_change=self._on_state_change,
                    verify=self._verify,
                    **self._listener_options,
                )
                self._parts.listener = self._listener
            return self._listener

    @property
    def stats(self) -> Dict[str, int]:
        """The realtime listener's counters (a copy; all zero before the first ``subscribe()``):
        ``connects``, ``disconnects``, ``delivered``, ``recovered``, ``gap_fills``,
        ``gap_fill_failures``, ``malformed``, ``duplicates``, ``dropped_on_overflow``,
        ``callback_errors``, ... (docs/realtime.md lists them all)."""
        with self._lock:
            listener = self._listener
        if listener is not None:
            return dict(listener.stats)
        from .realtime.listener import _STAT_NAMES

        return dict.fromkeys(_STAT_NAMES, 0)

    @property
    def connection_state(self) -> "ConnectionState":
        """The realtime ``ConnectionState`` (``IDLE`` until the first ``subscribe()``,
        ``CLOSED`` after :meth:`close`)."""
        from .realtime import ConnectionState

        with self._lock:
            listener = self._listener
            closed = self._closed
        if listener is not None:
            return listener.state
        return ConnectionState.CLOSED if closed else ConnectionState.IDLE

    @property
    def listener_error(self) -> Optional[SignalWireError]:
        """The fatal error that stopped the realtime listener for good, else ``None``.

        A refused token that cannot be refreshed is the usual one. It is set before
        :attr:`connection_state` becomes ``CLOSED``, so code that watches the state (or an
        ``on_state_change`` hook) can tell "the listener died" (this is set) from "the client
        was closed" (``None``). :meth:`run_forever` re-raises it.
        """
        with self._lock:
            listener = self._listener
        return listener.error if listener is not None else None

    def run_forever(self) -> None:
        """Block until :meth:`close` (from another thread or a callback) or Ctrl+C.

        Ctrl+C closes the client cleanly. A fatal listener error (such as a revoked token) is
        re-raised here.
        """
        listener = self._get_listener()
        try:
            listener.run_forever()
        except KeyboardInterrupt:
            logger.info("interrupted; closing the client")
        self.close()

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self, timeout: float = 5.0) -> None:
        """Stop the listener and close the HTTP session. Idempotent.

        What the listener already received is delivered first, within ``timeout`` seconds in
        all (threads joined within the same bound); what it could not deliver is after the
        last delivered event's ``cursor``, so ``subscribe(after=cursor)`` gets it.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            listener = self._listener
        self._finalizer.detach()
        try:
            if listener is not None:
                listener.close(timeout=timeout)
        finally:
            self._transport.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        kind = "callable" if self._tokens.refreshable else "static"
        return (
            f"Client(base_url={self.base_url!r}, relay_url={self.relay_url!r}, "
            f"token=<redacted {kind}>, {state})"
        )


# ---------------------------------------------------------------------------------------------
# What the listener is given: functions of the ConversationAPI, never of the Client
# ---------------------------------------------------------------------------------------------


def _no_fetch(since: float) -> Iterator[ConversationMessageEvent]:
    return iter(())


def _recovered_messages(conversation: ConversationAPI, since: float) -> Iterator[ConversationMessageEvent]:
    """Gap fill: the stored messages with server ``ts >= since``, newest first, as events with
    ``is_author`` set (the subscriber's own address ids are known from ``subscriber/info``)."""
    own = frozenset(conversation.get_subscriber_info().address_ids)
    for message in conversation.get_messages(since=since):
        yield event_from_message(message, is_author=(message.user_id in own) if own else None)


def _latest_messages(conversation: ConversationAPI) -> List[ConversationMessageEvent]:
    """The newest few stored messages: where the server's "now" is."""
    from .realtime.listener import LATEST_PROBE

    return [event_from_message(m) for m in conversation._latest_positions(LATEST_PROBE)]


def _weak_listener_getter(client: "Client") -> Callable[[], "Listener"]:
    ref = weakref.ref(client)

    def listener() -> "Listener":
        live = ref()
        if live is None:
            raise SignalWireError(
                "the Client of this ConversationAPI was garbage-collected (which closed its "
                "listener); keep a reference to the Client while you subscribe"
            )
        return live._get_listener()

    return listener


class _Parts:
    """What the finalizer of a collected client closes (it must not refer to the client).

    Only the listener: the HTTP transport stays usable for a ``ConversationAPI`` that outlives
    its client (``Client(...).conversation``); its connections go with it.
    """

    __slots__ = ("listener",)

    def __init__(self) -> None:
        self.listener: Optional["Listener"] = None


def _collected(parts: _Parts) -> None:
    listener = parts.listener
    if listener is not None:
        logger.info("a Client was garbage-collected without close(): closing its listener")
        listener.close(timeout=0.0)


#: every client of this process, for the at-fork hook (weak: it keeps none alive)
_CLIENTS: "weakref.WeakSet[Client]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: fresh locks (one may have been held
    at fork time) and HTTP connections of its own (pooled sockets are shared with the parent).
    The listener resets itself (realtime/listener.py)."""
    for client in list(_CLIENTS):
        client._lock = threading.Lock()
        client.conversation._after_fork()
        client._tokens._after_fork()
        if client.names is not None:
            client.names._after_fork()
        session = getattr(client._transport, "_session", None)
        adapters = getattr(session, "adapters", {})
        for adapter in list(adapters.values()):
            try:
                adapter.close()  # drops the pooled connections (in this process only)
            except Exception:  # pragma: no cover - a custom adapter
                logger.debug("could not reset an HTTP adapter after fork", exc_info=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ---------------------------------------------------------------------------------------------
# Constructor checks (before anything is built)
# ---------------------------------------------------------------------------------------------

# Listener parameters the Client passes itself (their own Client arguments set them).
_CLIENT_SET = frozenset(
    {"tokens", "relay_url", "fetch_missed", "fetch_latest", "fill_names", "on_error", "on_state_change", "verify"}
)


def _check_hook(value: Any, name: str) -> None:
    if value is not None and not callable(value):
        raise ValidationError(name, f"must be a callable or None, got {type(value).__name__}")


def _check_verify(value: Any) -> None:
    if isinstance(value, bool):
        return
    if not isinstance(value, str):
        raise ValidationError("verify", f"must be True, False or a CA bundle path (str), got {type(value).__name__}")
    if not value.strip():
        # requests would read "" as False: verification off, silently
        raise ValidationError("verify", "must be True, False or a CA bundle path, got an empty string")


def _listener_parameters() -> "frozenset[str]":
    from .realtime.listener import Listener as _Listener

    return frozenset(
        name
        for name, p in inspect.signature(_Listener.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ) - _CLIENT_SET


def _check_listener_options(value: Any) -> "dict[str, Any]":
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(
            "listener_options", f"must be a mapping of listener keyword arguments, got {type(value).__name__}"
        )
    known = _listener_parameters()
    for key in value:
        if not isinstance(key, str) or key not in known:
            hint = f" (pass {key}= to Client itself)" if key in _CLIENT_SET else ""
            raise ValidationError(
                "listener_options", f"unknown option {key!r}{hint}; known: {', '.join(sorted(known))}"
            )
    return dict(value)
