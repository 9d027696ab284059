"""The public face of the emulator: :class:`Emulator` (start/stop, seeding, faults, observation)."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import ssl
import threading
import time
from types import TracebackType
from typing import Any, Callable, Dict, Iterable, List, Optional, Type, Union

from ._errors import HTTPError, error_body
from ._http import Request, Response
from ._identity import TOKEN_PATHS, Identity
from ._relay import Relay
from ._rest import RestContext
from ._routes import Router
from ._state import (
    BinaryFrame,
    ConnectionInfo,
    EventRecord,
    FailRule,
    OutFrame,
    RecordedRequest,
    Session,
    Store,
    Subscriber,
)

__all__ = ["Emulator", "CONTROL_PREFIX"]

logger = logging.getLogger("signalwire_conversation.testing")

#: Where the HTTP control API lives (loopback peers only).
CONTROL_PREFIX = "/__emulator__"

SubscriberRef = Union[Subscriber, str]

_MIN_GAP = 0.0005  # seconds between two runs of a wait_for predicate, at least


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class Emulator:
    """A local SignalWire Conversation backend: REST and the relay websocket on one port.

    >>> from signalwire_conversation.testing import Emulator
    >>> with Emulator() as emu:
    ...     alice = emu.add_subscriber("alice")
    ...     bob = emu.add_subscriber("bob")
    ...     message = emu.send_message(bob, alice.address_id, "hi")
    ...     emu.base_url.startswith("http://127.0.0.1:")
    True

    ``ping_interval`` is in seconds (``None`` or 0: no server pings). With
    ``honour_time_filters=False`` the REST lists ignore ``since``/``until``, as the live backend
    may. ``ssl_context`` (a server-side :class:`ssl.SSLContext`) serves https/wss instead.
    ``sender_field`` names the sender on the wire: ``"from_fabric_address_id"`` (v4, default)
    or ``"from_address_id"`` (the @signalwire/client 0.0.1 dialect). ``ch`` is the routing-host
    claim put in the tokens' header; the default, ``puc.localhost:PORT``, makes clients that
    derive their hosts from it build ``https://fabric.localhost:PORT`` and
    ``wss://puc.localhost:PORT`` (an IP literal would give them an invalid ``fabric.0.0.1``), so
    point clients at :attr:`base_url` / :attr:`relay_url` explicitly.

    The public surface (docs/emulator.md has the details):

    - lifecycle and addresses: :meth:`start`, :meth:`stop`, ``with``, :attr:`running`,
      :attr:`base_url`, :attr:`relay_url`, :attr:`control_url`, :attr:`ch`, :attr:`project_id`,
      :meth:`info`; settings changeable at run time: :attr:`latency`, :attr:`ping_interval`,
      :attr:`honour_time_filters`, :attr:`default_page_size`, :attr:`clock_offset`;
    - subscribers and tokens: :meth:`add_subscriber`, :meth:`subscriber`, :attr:`subscribers`,
      :meth:`issue_token`, :meth:`revoke_token`;
    - project credentials (the token endpoints ``/api/fabric/subscribers/tokens``,
      ``.../tokens/refresh`` and ``/api/fabric/guests/tokens``, HTTP Basic): :attr:`project_id`,
      :attr:`api_token` (``api_token=`` sets it), :attr:`space_url`, :meth:`environment`,
      :attr:`identity` (lifetimes, :meth:`~Identity.expire_refresh_tokens`);
    - traffic: :meth:`send_message`, :meth:`send_messages`, :meth:`join`, :meth:`group_id`,
      :meth:`messages`, :meth:`send_raw` (text, raw bytes or ``binary=True``);
    - faults: :meth:`fail_next`, :attr:`latency`, :meth:`refuse_resume`,
      :meth:`drop_connections`, :meth:`stop_pinging` / :meth:`start_pinging`,
      :meth:`disconnect`, :meth:`clear_faults`, :meth:`reset`;
    - observation: :attr:`requests`, :attr:`request_log`, :meth:`request_count`,
      :attr:`connections` (open ones), :attr:`all_connections` (every connection since the last
      reset, closed ones included), :meth:`unacked_events`, :meth:`wait_for`,
      :meth:`wait_connected` (until a subscriber has N authenticated connections).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: Optional[ssl.SSLContext] = None,
        ping_interval: Optional[float] = 5.0,
        honour_time_filters: bool = True,
        default_page_size: int = 50,
        max_page_size: int = 1000,
        sender_field: str = "from_fabric_address_id",
        control_api: bool = True,
        project_id: Optional[str] = None,
        ch: Optional[str] = None,
        api_token: Optional[str] = None,
    ) -> None:
        if sender_field not in ("from_fabric_address_id", "from_address_id"):
            raise ValueError("sender_field must be 'from_fabric_address_id' or 'from_address_id'")
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.control_api = control_api
        self._ch = ch
        self._store = Store(
            ch="",
            honour_time_filters=honour_time_filters,
            default_page_size=default_page_size,
            max_page_size=max_page_size,
            ping_interval=ping_interval,
            sender_field=sender_field,
            project_id=project_id,
        )
        self._relay = Relay(self._store)
        self._identity = Identity(self._store, api_token)
        self._router = Router()
        self._server: Any = None
        self._lifecycle = threading.Lock()
        self._stop_event = threading.Event()
        from ._control import Control

        self._control = Control(self)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> "Emulator":
        """Bind, start serving, return ``self`` (idempotent). After this the URLs are known."""
        with self._lifecycle:
            if self._server is not None:
                return self
            from ._server import Server

            server = Server(
                host=self.host,
                port=self.port,
                ssl_context=self.ssl_context,
                store=self._store,
                relay=self._relay,
                http_app=self._http_app,
            )
            self._stop_event.clear()
            _, self.port = server.start()
            self._server = server
            self._store.ch = self._ch or f"puc.localhost:{self.port}"
            self._store.base_url = self.base_url
            return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and drop every connection (abruptly, like a crashed server). Idempotent."""
        with self._lifecycle:
            server, self._server = self._server, None
            if server is None:
                return
            self._stop_event.set()
            with self._store.lock:
                for session in self._store.sessions:
                    self._store.close_session(session)
            server.stop(timeout)

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self.running else "stopped"
        return f"<Emulator {where}>"

    # -- addresses --------------------------------------------------------------------------

    @property
    def _public_host(self) -> str:
        host = self.host
        if host in ("", "0.0.0.0"):
            return "127.0.0.1"
        if host == "::":
            return "[::1]"
        return f"[{host}]" if ":" in host else host

    def _require_started(self) -> None:
        if self._server is None:
            raise RuntimeError("the emulator is not started: call start() or use it as a context manager")

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https`` with TLS): the REST base URL."""
        self._require_started()
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self._public_host}:{self.port}"

    @property
    def relay_url(self) -> str:
        """``ws://127.0.0.1:PORT`` (``wss`` with TLS): the websocket URL (no path)."""
        self._require_started()
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{self._public_host}:{self.port}"

    @property
    def ch(self) -> str:
        """The ``ch`` claim of this emulator's tokens."""
        self._require_started()
        return self._store.ch

    @property
    def control_url(self) -> str:
        """The HTTP control API (the interop harness's ``CONTROL_URL``)."""
        return self.base_url + CONTROL_PREFIX

    # -- settings ---------------------------------------------------------------------------

    @property
    def latency(self) -> float:
        """Seconds added before every REST answer (not the control API)."""
        return self._store.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        self._store.latency = float(seconds)

    @property
    def ping_interval(self) -> Optional[float]:
        """Seconds between server ``signalwire.ping`` frames (``None``/0: none)."""
        return self._store.ping_interval

    @ping_interval.setter
    def ping_interval(self, seconds: Optional[float]) -> None:
        self._store.ping_interval = seconds
        if self._server is not None:
            self._server.wake_pinger()

    @property
    def clock_offset(self) -> float:
        """Seconds the server's clock is ahead of this machine's (negative: behind), from -3600
        to 3600. It moves every server-side time: message ``ts``, token expiry, the ``Date``
        header, ping timestamps; a client must compare server times with server times only."""
        return self._store.clock_offset

    @clock_offset.setter
    def clock_offset(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not -3600 <= seconds <= 3600:
            raise ValueError(f"clock_offset must be a number of seconds from -3600 to 3600, got {seconds!r}")
        with self._store.lock:
            self._store.clock_offset = float(seconds)

    @property
    def honour_time_filters(self) -> bool:
        return self._store.honour_time_filters

    @honour_time_filters.setter
    def honour_time_filters(self, value: bool) -> None:
        self._store.honour_time_filters = bool(value)

    @property
    def default_page_size(self) -> int:
        return self._store.default_page_size

    @default_page_size.setter
    def default_page_size(self, value: int) -> None:
        self._store.default_page_size = int(value)

    @property
    def project_id(self) -> str:
        """The project id of the project credentials (HTTP Basic user of the token endpoints)."""
        return self._store.project_id

    # -- project credentials (docs/emulator.md, "Project credentials") ----------------------

    @property
    def api_token(self) -> str:
        """The project's API token (HTTP Basic password of the token endpoints)."""
        return self._identity.api_token

    @property
    def space_url(self) -> str:
        """What ``SIGNALWIRE_SPACE`` is for this emulator: its base URL."""
        return self.base_url

    @property
    def identity(self) -> Identity:
        """The token endpoints' settings and controls: ``token_ttl``, ``refreshed_ttl``,
        ``refresh_ttl`` (seconds), :meth:`~Identity.expire_refresh_tokens`,
        :meth:`~Identity.allowed_addresses`."""
        return self._identity

    def environment(self) -> Dict[str, str]:
        """The ``SIGNALWIRE_*`` variables that point the SDK at this emulator with the project
        credentials (``SIGNALWIRE_BASE_URL``/``_RELAY_URL`` because the tokens' ``ch`` claim
        names no reachable host)."""
        return {
            "SIGNALWIRE_PROJECT_ID": self.project_id,
            "SIGNALWIRE_API_TOKEN": self.api_token,
            "SIGNALWIRE_SPACE": self.space_url,
            "SIGNALWIRE_BASE_URL": self.base_url,
            "SIGNALWIRE_RELAY_URL": self.relay_url,
        }

    # -- subscribers and tokens -------------------------------------------------------------

    def add_subscriber(
        self,
        name: str,
        token_ttl: float = 3600.0,
        *,
        display_name: Optional[str] = None,
        email: Optional[str] = None,
    ) -> Subscriber:
        """A new subscriber with one address and a token valid for ``token_ttl`` seconds."""
        self._require_started()
        return self._store.add_subscriber(name, token_ttl, display_name=display_name, email=email)

    def subscriber(self, ref: SubscriberRef) -> Subscriber:
        """Look a subscriber up by name, subscriber id or address id (``KeyError`` if none)."""
        return self._store.resolve(ref)

    @property
    def subscribers(self) -> List[Subscriber]:
        return self._store.subscriber_list()

    def issue_token(self, subscriber: SubscriberRef, ttl: float = 3600.0) -> str:
        """Another valid token for the same subscriber (negative ``ttl``: already expired)."""
        self._require_started()
        return self._store.issue_token(subscriber, ttl)

    def revoke_token(self, token: str, *, drop: bool = True) -> None:
        """Make ``token`` (and the resume states issued under it) invalid; with ``drop``, its
        live connections are dropped too, so a client must reconnect and fails to."""
        sessions = self._store.revoke_token(token)
        if drop:
            self._abort(sessions)

    # -- traffic ----------------------------------------------------------------------------

    def _group_for(self, sender: Subscriber, address_id: str) -> Any:
        store = self._store
        with store.lock:
            group = store.groups.get(address_id)
            if group is not None and sender.address_id in group.members:
                return group
            if address_id not in store.by_address:
                raise KeyError(f"no such address or group: {address_id!r}")
            return store.join(sender, [address_id])

    def group_id(self, a: SubscriberRef, address_id: str) -> str:
        """The group id of the conversation between ``a`` and ``address_id`` (joined as needed)."""
        return str(self._group_for(self._store.resolve(a), address_id).group_id)

    def join(self, a: SubscriberRef, address_ids: Iterable[str]) -> str:
        """The group id of ``a`` + ``address_ids`` (a group chat when there are several)."""
        return self._store.join(self._store.resolve(a), list(address_ids)).group_id

    def send_message(
        self,
        sender: SubscriberRef,
        address_id: str,
        text: Optional[str],
        *,
        metadata: Optional[Dict[str, Any]] = None,
        details: Optional[Dict[str, Any]] = None,
        subtype: str = "chat",
        kind: Optional[str] = None,
        ts: Optional[float] = None,
    ) -> Dict[str, Any]:
        """``sender`` posts ``text`` to its conversation with ``address_id`` (an address or a
        group id), as ``POST /api/fabric/messages`` would: stored, and pushed as
        ``conversation.message`` to every live session of every member (``is_author`` true on
        the sender's own). ``ts`` backdates the message (seconds; default: now). Returns the
        stored message."""
        who = self._store.resolve(sender)
        group = self._group_for(who, address_id)
        return self._store.post(who, group, text, metadata=metadata, details=details,
                                subtype=subtype, kind=kind, ts=ts)

    def send_messages(self, sender: SubscriberRef, address_id: str, texts: Iterable[str]) -> List[Dict[str, Any]]:
        """Many :meth:`send_message` at once (one lock, frames serialised once per message)."""
        who = self._store.resolve(sender)
        group = self._group_for(who, address_id)
        return self._store.post_many(who, group, texts)

    def messages(self, group_id: Optional[str] = None) -> List[Dict[str, Any]]:
        """Every stored message, or those of one group, newest first."""
        return self._store.all_messages(group_id)

    # -- faults -----------------------------------------------------------------------------

    def _sessions(self, subscriber: Optional[SubscriberRef]) -> List[Session]:
        return self._store.live_sessions(subscriber)

    def _abort(self, sessions: Iterable[Session]) -> int:
        count = 0
        for session in sessions:
            self._store.close_session(session)
            session.abort()
            count += 1
        return count

    def drop_connections(self, subscriber: Optional[SubscriberRef] = None) -> int:
        """Close open websocket connections abruptly (no close frame); returns how many."""
        return self._abort(self._sessions(subscriber))

    def stop_pinging(self, subscriber: Optional[SubscriberRef] = None, *, half_open: bool = True) -> int:
        """Make the open connections look dead to their clients; returns how many.

        With ``half_open`` (the default) the TCP connection stays up but nothing gets through
        any more: no pings, no events (messages are still stored, to be fetched over REST), no
        answers, not even websocket Pongs, and what the client sends is discarded, as on a
        half-open link. With ``half_open=False`` only the server pings stop. Connections opened
        later are normal; :meth:`start_pinging` restores these ones.
        """
        with self._store.lock:
            sessions = self._sessions(subscriber)
            for session in sessions:
                if half_open:
                    session.half_open = True
                session.pings_paused = True
            self._store.notify()
            return len(sessions)

    def start_pinging(self) -> None:
        """Undo :meth:`stop_pinging` on every open connection."""
        with self._store.lock:
            for session in self._sessions(None):
                session.half_open = False
                session.pings_paused = False
            self._store.notify()

    def fail_next(
        self,
        status: Union[int, str],
        times: int = 1,
        retry_after: Optional[float] = None,
        method: Optional[str] = None,
        path: Optional[str] = None,
    ) -> None:
        """The next ``times`` REST requests (matching ``method`` and the ``path`` regex, when
        given) get ``status`` with the backend's error body, and ``Retry-After`` when given.
        ``status="reset"`` closes the connection without an answer instead."""
        if isinstance(status, str) and status != "reset":
            raise ValueError("status must be an HTTP status code or 'reset'")
        if isinstance(status, int) and not 100 <= status <= 599:
            raise ValueError("status must be between 100 and 599")
        rule = FailRule(status, int(times), retry_after, method, re.compile(path) if path is not None else None)
        with self._store.lock:
            self._store.fail_rules.append(rule)

    def refuse_resume(self, times: int = 1) -> None:
        """Refuse the next ``times`` resume attempts (connect with ``protocol``), with JSON-RPC
        error -32003 "Requester validation failed": the client must connect fresh."""
        with self._store.lock:
            self._store.refuse_resumes += int(times)

    def clear_faults(self) -> None:
        """Forget pending ``fail_next``/``refuse_resume``, zero the latency, restart pings."""
        with self._store.lock:
            self._store.fail_rules = []
            self._store.refuse_resumes = 0
            self._store.latency = 0.0
        self.start_pinging()

    def send_raw(
        self, frame: Union[str, bytes], subscriber: Optional[SubscriberRef] = None, *, binary: bool = False
    ) -> int:
        """Send ``frame`` as is to every open connection (not half-open ones), or those of
        ``subscriber``; returns how many got it.

        A ``str`` goes out as a text frame (UTF-8). ``bytes`` go out as a text frame carrying
        exactly those bytes, valid UTF-8 or not, as a broken server would send them. With
        ``binary=True`` the frame is a binary frame instead (``str`` is UTF-8 encoded first).
        """
        out: OutFrame
        if binary:
            out = BinaryFrame(frame.encode("utf-8") if isinstance(frame, str) else frame)
        elif isinstance(frame, (str, bytes)):
            out = frame
        else:
            raise TypeError("frame must be str or bytes")
        sessions = [s for s in self._sessions(subscriber) if not s.half_open]
        for session in sessions:
            session.sink(out)
        return len(sessions)

    def disconnect(
        self, subscriber: Optional[SubscriberRef] = None, *, close: bool = True, timeout: float = 5.0
    ) -> int:
        """Send a server ``signalwire.disconnect`` to the authenticated connections; with
        ``close``, wait (up to ``timeout``) for each reply, then close them with a close frame.
        Returns how many were sent."""
        sessions = [s for s in self._sessions(subscriber) if s.live]
        for session in sessions:
            session.sink(self._relay.disconnect_frame(session))
        if close:
            try:
                self.wait_for(lambda: all(not s.pending_disconnects or s.closed for s in sessions), timeout)
            except TimeoutError:
                pass
            for session in sessions:
                session.close_gracefully()
        return len(sessions)

    # -- observation ------------------------------------------------------------------------

    @property
    def requests(self) -> List[RecordedRequest]:
        """Every REST request since the last reset: ``(method, path, query)`` tuples."""
        with self._store.lock:
            return list(self._store.requests)

    @property
    def request_log(self) -> List[Dict[str, Any]]:
        """Every REST request with its parsed ``body``, ``status`` and ``subscriber`` name."""
        with self._store.lock:
            return [dict(e) for e in self._store.request_log]

    def request_count(self, method: Optional[str] = None, path: Optional[str] = None) -> int:
        """How many REST requests matched ``method`` and the ``path`` regex (``re.search``)."""
        pattern = re.compile(path) if path is not None else None
        return sum(
            1
            for m, p, _ in self.requests
            if (method is None or m == method.upper()) and (pattern is None or pattern.search(p))
        )

    @property
    def connections(self) -> List[ConnectionInfo]:
        """The open websocket connections, oldest first."""
        with self._store.lock:
            return [self._store.connection_info(s) for s in self._store.sessions if not s.closed]

    @property
    def all_connections(self) -> List[ConnectionInfo]:
        """Every websocket connection since the last reset, closed ones included."""
        with self._store.lock:
            return [self._store.connection_info(s) for s in self._store.sessions]

    def unacked_events(
        self, subscriber: Optional[SubscriberRef] = None, *, include_closed: bool = False
    ) -> List[EventRecord]:
        """Events sent and not acked yet, on open connections (or all with ``include_closed``)."""
        store = self._store
        with store.lock:
            sid = None if subscriber is None else store.resolve(subscriber).subscriber_id
            out: List[EventRecord] = []
            for session in store.sessions:
                if (session.closed and not include_closed) or (sid is not None and session.subscriber_id != sid):
                    continue
                out.extend(session.unacked_records())
            return out

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, *, message: str = "") -> None:
        """Return once ``predicate()`` is true; ``TimeoutError`` after ``timeout`` seconds.

        The predicate runs outside the emulator's lock (it may call the emulator or a client);
        waits wake on every emulator change and at least every 20 ms. A predicate is not run
        again sooner than its own last run time, nor than 0.5 ms, after the previous run, so a
        costly one (say ``unacked_events()`` over 40,000 events) does not starve the server
        threads whose changes wake it.
        """
        deadline = time.monotonic() + timeout
        changed = self._store.changed
        turns = int(min(timeout, 86400.0) / _MIN_GAP) + 2  # each turn takes >= _MIN_GAP
        for _ in range(turns):
            started = time.monotonic()
            if predicate():
                return
            cost = time.monotonic() - started
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with changed:
                changed.wait(min(remaining, 0.02))
            gap = max(cost, _MIN_GAP) - (time.monotonic() - started - cost)
            if gap > 0:
                time.sleep(min(gap, max(0.0, deadline - time.monotonic())))  # a rate limit
        if predicate():
            return
        raise TimeoutError(message or f"condition not met within {timeout} s")

    def wait_connected(
        self, subscriber: SubscriberRef, count: int = 1, timeout: float = 5.0
    ) -> List[ConnectionInfo]:
        """Wait until ``subscriber`` has at least ``count`` open, authenticated connections
        (a ``signalwire.connect`` accepted: every message posted from now on is pushed to them);
        returns their snapshots, oldest first. ``TimeoutError`` after ``timeout`` seconds."""
        sid = self._store.resolve(subscriber).subscriber_id
        found: List[ConnectionInfo] = []

        def ready() -> bool:
            nonlocal found
            with self._store.lock:
                found = [
                    self._store.connection_info(s)
                    for s in self._store.sessions
                    if not s.closed and s.authenticated and s.subscriber_id == sid
                ]
            return len(found) >= count

        self.wait_for(ready, timeout, message=(
            f"{subscriber if isinstance(subscriber, str) else subscriber.name!r} has "
            f"fewer than {count} authenticated connection(s) after {timeout} s"
        ))
        return found

    def reset(self) -> None:
        """Back to empty: no subscribers, messages, connections (dropped), faults or records.
        Settings passed to the constructor are restored."""
        sessions = self._store.reset()
        self._identity.reset()
        for session in sessions:
            session.closed = True
            session.abort()
        if self._server is not None:
            self._server.wake_pinger()

    # -- the HTTP side ----------------------------------------------------------------------

    def _http_app(self, request: Request) -> Optional[Response]:
        if request.path == CONTROL_PREFIX or request.path.startswith(CONTROL_PREFIX + "/"):
            if not self.control_api:
                return Response(404, error_body(404))
            if not _is_loopback(request.remote[0]):
                return Response(403, error_body(403))
            return self._control.handle(request)
        if not request.path.startswith("/api/"):
            return Response(404, error_body(404))
        return self._rest(request)

    def _rest(self, request: Request) -> Optional[Response]:
        store = self._store
        entry = store.record_request(request.method, request.path, {k: v[0] for k, v in request.query.items()})
        try:
            entry["body"] = request.json()
        except (ValueError, UnicodeDecodeError):
            entry["body"] = request.body.decode("utf-8", "replace")
        response: Optional[Response]
        try:
            rule = store.take_failure(request.method, request.path)
            if rule is not None:
                if rule.status == "reset":
                    return None
                assert isinstance(rule.status, int)
                headers: Dict[str, str] = {}
                if rule.retry_after is not None:
                    ra = rule.retry_after
                    headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
                raise HTTPError(rule.status, headers=headers)
            if request.path.rstrip("/") in TOKEN_PATHS:  # project credentials, not a SAT
                response = self._identity.handle(request)
            else:
                response = self._as_subscriber(request, entry)
        except HTTPError as exc:
            response = Response(exc.status, exc.body, exc.headers)
        except Exception:  # a bug in the emulator: say so, as the backend would
            logger.exception("emulator: %s %s failed", request.method, request.path)
            response = Response(500, error_body(500))
        latency = store.latency
        if latency > 0:
            self._stop_event.wait(latency)
        response.headers.setdefault("X-Request-Id", store.ids())
        response.date = store.clock()
        with store.lock:
            entry["status"] = response.status
        return response

    def _as_subscriber(self, request: Request, entry: Dict[str, Any]) -> Response:
        """A request made with a SAT: authenticated, guest limits applied, routed."""
        caller = self._authenticate(request)
        entry["subscriber"] = caller.name
        self._identity.guard(caller, request)
        handler, params = self._router.match(request.method, request.path)
        host = request.headers.get("host")
        scheme = "https" if self.ssl_context is not None else "http"
        base = f"{scheme}://{host}" if host else self.base_url
        response = handler(RestContext(self._store, base), request, caller, params)
        return self._identity.filter(caller, request, response)

    def _authenticate(self, request: Request) -> Subscriber:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        caller = self._store.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if caller is None:
            raise HTTPError(401, headers={"WWW-Authenticate": 'Bearer realm="signalwire"'})
        return caller

    def info(self) -> Dict[str, Any]:
        """URLs and subscribers (with their tokens), as ``run_emulator --json`` prints them."""
        return {
            "base_url": self.base_url,
            "relay_url": self.relay_url,
            "control_url": self.control_url,
            "project_id": self.project_id,
            "api_token": self.api_token,
            "space": self.space_url,
            "subscribers": [
                {
                    "name": s.name,
                    "display_name": s.display_name,
                    "subscriber_id": s.subscriber_id,
                    "address_id": s.address_id,
                    "token": s.token,
                }
                for s in self.subscribers
            ],
        }

    def _json(self) -> str:
        return json.dumps(self.info())
