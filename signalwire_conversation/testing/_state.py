"""The emulator's in-memory backend: subscribers, tokens, groups, messages, relay sessions.

Nothing here knows HTTP or sockets (moto's ``models.py``). One re-entrant lock guards it all;
``changed`` (a condition on that lock) is notified on every change so waiters need not poll.
A relay session reaches its socket only through the ``sink`` and ``closer`` callables the
server layer gives it, and delivery never blocks on the network (the sink enqueues).
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ._tokens import b64url, mint_sat

__all__ = [
    "BinaryFrame",
    "OutFrame",
    "Subscriber",
    "ConnectionInfo",
    "EventRecord",
    "RecordedRequest",
    "Store",
    "Session",
    "FailRule",
]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_encode_str: Callable[[str], str] = json.encoder.encode_basestring  # what _dumps does to a str

#: Messages handed to the sockets at once by ``post_many`` (the writers start on the first ones).
PUSH_CHUNK = 512


def _uuid() -> str:
    """A random (version 4) UUID string; cheaper than ``str(uuid.uuid4())``."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


class SequentialIds:
    """Cheap uuid-shaped (version 4 layout) ids, unique per instance: a random prefix drawn once
    and a 48-bit counter as the last group. For event, message and ping ids, minted by the
    thousand: no system call and no hashing per id. Thread-safe (``itertools.count`` under the GIL).
    """

    __slots__ = ("prefix", "_next")

    def __init__(self) -> None:
        h = os.urandom(10).hex()
        self.prefix = f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{'89ab'[int(h[15], 16) & 3]}{h[16:19]}-"
        self._next = itertools.count(1).__next__

    def __call__(self) -> str:
        return f"{self.prefix}{self._next():012x}"


class BinaryFrame(bytes):
    """Bytes to send as a websocket *binary* frame (plain ``bytes`` go out as a text frame, as is)."""

    __slots__ = ()


#: What a session's sink takes: ``str`` (a text frame), ``bytes`` (a text frame with exactly
#: these bytes, valid UTF-8 or not) or :class:`BinaryFrame` (a binary frame).
OutFrame = Union[str, bytes]


def _json_value(value: Any) -> str:
    """``_dumps(value)``, without the encoder's generic path for the common ``str``/``None``."""
    if value is None:
        return "null"
    if type(value) is str:
        return _encode_str(value)
    return _dumps(value)


def _json_float(value: float) -> str:
    return float.__repr__(value) if math.isfinite(value) else _dumps(value)


@dataclass(frozen=True)
class Subscriber:
    """A subscriber of the emulator, with the token it was created with."""

    #: The name given to :meth:`Emulator.add_subscriber` (unique in one emulator).
    name: str
    #: ``subscriber/info.id`` and ``authorization.fabric_subscriber.subscriber_id``.
    subscriber_id: str
    #: The subscriber's fabric address (``subscriber/info.fabric_addresses[0].id``).
    address_id: str
    #: A valid SAT for this subscriber (the first one issued).
    token: str = field(repr=False)
    display_name: str = ""
    email: str = ""

    def __repr__(self) -> str:
        return (
            f"Subscriber(name={self.name!r}, subscriber_id={self.subscriber_id!r}, "
            f"address_id={self.address_id!r}, token={self.token[:6]!r}…)"
        )


@dataclass(frozen=True)
class EventRecord:
    """One ``signalwire.event`` the emulator sent on a connection."""

    connection_id: str
    event_id: str
    event_type: str
    message_id: Optional[str]
    sent_at: float
    acked: bool = False


@dataclass(frozen=True)
class ConnectionInfo:
    """A snapshot of one websocket connection, as the emulator saw it."""

    id: str
    subscriber: Optional[Subscriber]
    #: ``params`` of the last ``signalwire.connect`` on this connection (``None`` before one).
    connect_params: Optional[Dict[str, Any]]
    #: ``params`` of every ``signalwire.connect`` on this connection, in order.
    connect_history: Tuple[Dict[str, Any], ...]
    authenticated: bool
    #: Whether the last successful connect resumed a session (``protocol`` + ``authorization_state``).
    resumed: bool
    protocol: Optional[str]
    authorization_state: Optional[str]
    acked: Tuple[str, ...]
    unacked: Tuple[str, ...]
    events_sent: int
    pings_sent: int
    pings_answered: int
    client_pings: int
    reauthentications: int
    #: Events withheld from this connection while it was half-open (see ``stop_pinging``).
    events_withheld: int
    half_open: bool
    closed: bool
    remote: str
    path: str
    opened_at: float


class RecordedRequest(Tuple[str, str, Dict[str, str]]):
    """``(method, path, query)`` of one REST request (query: first value of each name)."""

    __slots__ = ()

    def __new__(cls, method: str, path: str, query: Dict[str, str]) -> "RecordedRequest":
        return tuple.__new__(cls, (method, path, query))

    @property
    def method(self) -> str:
        return self[0]

    @property
    def path(self) -> str:
        return self[1]

    @property
    def query(self) -> Dict[str, str]:
        return self[2]


@dataclass
class FailRule:
    """``fail_next``: the next ``times`` matching REST requests get ``status`` (or a reset)."""

    status: Union[int, str]
    times: int
    retry_after: Optional[float] = None
    method: Optional[str] = None
    path: Optional["re.Pattern[str]"] = None

    def matches(self, method: str, path: str) -> bool:
        if self.times <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or self.path.search(path) is not None


@dataclass
class _Token:
    token: str
    subscriber_id: str
    jti: str
    issued_at: float
    expires_at: float
    revoked: bool = False

    def valid(self, now: float) -> bool:
        return not self.revoked and now < self.expires_at


@dataclass
class _Subscriber:
    public: Subscriber
    created_at: float
    sessions: "List[Session]" = field(default_factory=list)


@dataclass
class _Message:
    key: Tuple[float, int]  # (ts, seq): the listing order
    data: Dict[str, Any]  # the wire object (never mutated after creation)


class _Timeline:
    """Messages kept sorted by (ts, seq), with parallel key lists for bisection."""

    __slots__ = ("items", "keys", "stamps")

    def __init__(self) -> None:
        self.items: List[_Message] = []
        self.keys: List[Tuple[float, int]] = []
        self.stamps: List[float] = []

    def add(self, message: _Message) -> None:
        if not self.keys or message.key > self.keys[-1]:
            self.items.append(message)
            self.keys.append(message.key)
            self.stamps.append(message.key[0])
            return
        i = bisect.bisect_right(self.keys, message.key)
        self.items.insert(i, message)
        self.keys.insert(i, message.key)
        self.stamps.insert(i, message.key[0])

    def window(self, since: Optional[float], until: Optional[float]) -> Tuple[int, int]:
        lo = 0 if since is None else bisect.bisect_left(self.stamps, since)
        hi = len(self.stamps) if until is None else bisect.bisect_right(self.stamps, until)
        return lo, max(lo, hi)


@dataclass
class _Group:
    group_id: str
    members: Tuple[str, ...]  # address ids, in the order of the first join
    name: str
    created_at: float
    seq: int
    metadata: Dict[str, Any] = field(default_factory=dict)
    timeline: _Timeline = field(default_factory=_Timeline)
    last_message_ts: Optional[float] = None
    frame_channel: str = ""  # pre-serialised constant part of this group's event frames

    def sort_key(self) -> Tuple[float, int]:
        return (self.last_message_ts if self.last_message_ts is not None else self.created_at, self.seq)


@dataclass
class _AuthState:
    state: str
    subscriber_id: str
    protocol: str
    jti: str
    revoked: bool = False


class Session:
    """One websocket connection as the backend sees it (no socket in here)."""

    def __init__(self, session_id: str, remote: str, path: str, now: float) -> None:
        self.id = session_id
        self.remote = remote
        self.path = path
        self.opened_at = now
        self.subscriber_id: Optional[str] = None
        self.token: Optional[str] = None
        self.authenticated = False
        self.resumed = False
        self.protocol: Optional[str] = None
        self.authorization_state: Optional[str] = None
        self.event_acks = True
        self.connect_history: List[Dict[str, Any]] = []
        #: event id -> (event type, message id, sent at); EventRecords are built on demand.
        self.unacked: Dict[str, Tuple[str, Optional[str], float]] = {}
        self.acked: List[str] = []
        self.events_sent = 0
        self.pending_pings: Dict[str, float] = {}
        self.pings_sent = 0
        self.pings_answered = 0
        self.client_pings = 0
        self.reauthentications = 0
        self.pending_disconnects: Dict[str, float] = {}
        self.disconnect_replies: List[str] = []
        self.events_withheld = 0
        self.half_open = False
        self.pings_paused = False
        self.closed = False
        #: Set by the server layer: enqueue one frame (never blocks); see :data:`OutFrame`.
        self.sink: Callable[[OutFrame], None] = lambda frame: None
        #: Set by the server layer: enqueue many frames in order (one lock, one wake-up).
        self.sink_many: Callable[[List[OutFrame]], None] = self._sink_each
        #: Set by the server layer: close the transport abruptly (no close frame).
        self.abort: Callable[[], None] = lambda: None
        #: Set by the server layer: close the websocket with a close frame.
        self.close_gracefully: Callable[[], None] = lambda: None

    def _sink_each(self, frames: List[OutFrame]) -> None:
        for frame in frames:
            self.sink(frame)

    @property
    def live(self) -> bool:
        """Authenticated, open and not half-open: the session gets events and pings."""
        return self.authenticated and not self.closed and not self.half_open

    def unacked_records(self) -> List[EventRecord]:
        return [EventRecord(self.id, eid, t, m, at) for eid, (t, m, at) in self.unacked.items()]

    def send_event(self, event_id: str, frame: str, event_type: str, message_id: Optional[str], now: float) -> None:
        if self.event_acks:
            self.unacked[event_id] = (event_type, message_id, now)
        self.events_sent += 1
        self.sink(frame)

    def queue_event(
        self, event_id: str, frame: str, event_type: str, message_id: Optional[str], now: float,
        pending: "Dict[Session, List[OutFrame]]",
    ) -> None:
        """:meth:`send_event`, the frame kept in ``pending`` for one ``sink_many`` later."""
        if self.event_acks:
            self.unacked[event_id] = (event_type, message_id, now)
        self.events_sent += 1
        frames = pending.get(self)
        if frames is None:
            pending[self] = [frame]
        else:
            frames.append(frame)


class Store:
    """All of the emulator's state. Every public method takes the lock."""

    def __init__(
        self,
        *,
        ch: str,
        base_url: str = "",
        honour_time_filters: bool = True,
        default_page_size: int = 50,
        max_page_size: int = 1000,
        ping_interval: Optional[float] = 5.0,
        sender_field: str = "from_fabric_address_id",
        project_id: Optional[str] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.ch = ch
        self.base_url = base_url
        self._wall_clock = clock
        self.ids = SequentialIds()
        self.project_id = project_id or _uuid()
        self.space_id = _uuid()
        self.node_id = _uuid()
        self.sender_field = sender_field
        self._default_honour = honour_time_filters
        self._default_page_size = default_page_size
        self._default_max_page_size = max_page_size
        self._default_ping_interval = ping_interval
        self._seq = itertools.count(1)
        self._session_seq = itertools.count(1)
        self._init_state()

    # -- lifecycle -------------------------------------------------------------------------

    def _init_state(self) -> None:
        #: Seconds added to the wall clock (a server whose clock is off; see Emulator.clock_offset).
        self.clock_offset = 0.0
        self.honour_time_filters: bool = self._default_honour
        self.default_page_size: int = self._default_page_size
        self.max_page_size: int = self._default_max_page_size
        self.ping_interval: Optional[float] = self._default_ping_interval
        self.latency: float = 0.0
        self.refuse_resumes: int = 0
        self.fail_rules: List[FailRule] = []
        self.subscribers: Dict[str, _Subscriber] = {}  # by subscriber_id
        self.by_name: Dict[str, str] = {}
        self.by_address: Dict[str, str] = {}
        self.tokens: Dict[str, _Token] = {}
        self.groups: Dict[str, _Group] = {}
        self.group_by_members: Dict[frozenset[str], str] = {}
        self.address_timelines: Dict[str, _Timeline] = {}
        self.address_groups: Dict[str, List[_Group]] = {}
        self.messages_by_id: Dict[str, Tuple[_Group, _Message]] = {}
        self.auth_states: Dict[str, _AuthState] = {}
        self.protocols: Dict[str, str] = {}  # protocol -> subscriber_id
        self.sessions: List[Session] = []  # every session since the last reset, in order
        self.requests: List[RecordedRequest] = []
        self.request_log: List[Dict[str, Any]] = []
        self._last_ts = 0.0

    def reset(self) -> List[Session]:
        """Forget everything; returns the sessions that were still open (to be closed)."""
        with self.lock:
            open_sessions = [s for s in self.sessions if not s.closed]
            self._init_state()
            self.changed.notify_all()
            return open_sessions

    def notify(self) -> None:
        with self.lock:
            self.changed.notify_all()

    def clock(self) -> float:
        """The server's "now": the wall clock plus :attr:`clock_offset`."""
        return self._wall_clock() + self.clock_offset

    def next_ts(self) -> float:
        """Now, strictly after the last stamp handed out (so listing order is posting order)."""
        now = self.clock()
        if now <= self._last_ts:
            now = self._last_ts + 1e-6
        self._last_ts = now
        return now

    # -- subscribers and tokens ------------------------------------------------------------

    def add_subscriber(
        self,
        name: str,
        token_ttl: float = 3600.0,
        *,
        display_name: Optional[str] = None,
        email: Optional[str] = None,
    ) -> Subscriber:
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty str")
        with self.lock:
            if name in self.by_name:
                raise ValueError(f"a subscriber named {name!r} already exists")
            subscriber_id = _uuid()
            address_id = _uuid()
            token = self._issue_token(subscriber_id, token_ttl)
            public = Subscriber(
                name=name,
                subscriber_id=subscriber_id,
                address_id=address_id,
                token=token,
                display_name=display_name or name[:1].upper() + name[1:],
                email=email or f"{re.sub(r'[^A-Za-z0-9._-]+', '.', name).lower()}@example.com",
            )
            self.subscribers[subscriber_id] = _Subscriber(public, self.clock())
            self.by_name[name] = subscriber_id
            self.by_address[address_id] = subscriber_id
            self.address_timelines[address_id] = _Timeline()
            self.address_groups[address_id] = []
            self.changed.notify_all()
            return public

    def _issue_token(self, subscriber_id: str, ttl: float) -> str:
        now = self.clock()
        token = mint_sat(self.ch)
        self.tokens[token] = _Token(token, subscriber_id, _uuid(), now, now + float(ttl))
        return token

    def issue_token(self, subscriber: Union[Subscriber, str], ttl: float = 3600.0) -> str:
        with self.lock:
            return self._issue_token(self.resolve(subscriber).subscriber_id, ttl)

    def revoke_token(self, token: str) -> List[Session]:
        """Revoke ``token`` and the resume states issued under it; returns its open sessions."""
        with self.lock:
            record = self.tokens.get(token)
            if record is None:
                raise KeyError("unknown token")
            record.revoked = True
            for state in self.auth_states.values():
                if state.jti == record.jti:
                    state.revoked = True
            hit = [s for s in self.sessions if not s.closed and s.token == token]
            self.changed.notify_all()
            return hit

    def resolve(self, who: Union[Subscriber, str]) -> Subscriber:
        """A subscriber from a :class:`Subscriber`, a name, a subscriber id or an address id."""
        with self.lock:
            if isinstance(who, Subscriber):
                sid = who.subscriber_id
            elif isinstance(who, str):
                sid = self.by_name.get(who) or self.by_address.get(who) or who
            else:
                raise TypeError(f"expected a Subscriber or a str, not {type(who).__name__}")
            record = self.subscribers.get(sid)
            if record is None:
                raise KeyError(f"no such subscriber: {who!r}")
            return record.public

    def token_record(self, token: str) -> Optional[_Token]:
        with self.lock:
            return self.tokens.get(token)

    def authenticate(self, token: str) -> Optional[Subscriber]:
        """The subscriber whose valid (known, unexpired, unrevoked) token this is."""
        with self.lock:
            record = self.tokens.get(token)
            if record is None or not record.valid(self.clock()):
                return None
            return self.subscribers[record.subscriber_id].public

    def token_for_subscriber(self, token: str) -> Optional[Subscriber]:
        """The owner of a known token, valid or not."""
        with self.lock:
            record = self.tokens.get(token)
            if record is None:
                return None
            return self.subscribers[record.subscriber_id].public

    def subscriber_list(self) -> List[Subscriber]:
        with self.lock:
            return [s.public for s in self.subscribers.values()]

    # -- rendering -------------------------------------------------------------------------

    def address_object(self, subscriber: Subscriber) -> Dict[str, Any]:
        created = self.subscribers[subscriber.subscriber_id].created_at
        slug = subscriber.name
        return {
            "id": subscriber.address_id,
            "name": slug,
            "display_name": subscriber.display_name,
            "resource_id": subscriber.subscriber_id,
            "type": "subscriber",
            "cover_url": None,
            "preview_url": None,
            "channels": {
                "audio": f"/private/{slug}?channel=audio",
                "messaging": f"/private/{slug}?channel=messaging",
                "video": f"/private/{slug}?channel=video",
            },
            "locked": False,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
        }

    def subscriber_info(self, subscriber: Subscriber) -> Dict[str, Any]:
        with self.lock:
            first, _, last = subscriber.display_name.partition(" ")
            return {
                "id": subscriber.subscriber_id,
                "email": subscriber.email,
                "first_name": first,
                "last_name": last,
                "display_name": subscriber.display_name,
                "job_title": None,
                "time_zone": None,
                "country": None,
                "region": None,
                "company_name": None,
                "push_notification_key": None,
                "app_settings": None,
                "fabric_addresses": [self.address_object(subscriber)],
            }

    def conversation_object(self, group: _Group, viewer: Subscriber) -> Dict[str, Any]:
        others = [a for a in group.members if a != viewer.address_id]
        last = group.last_message_ts if group.last_message_ts is not None else group.created_at
        return {
            "group_id": group.group_id,
            self.sender_field: others[0] if others else viewer.address_id,
            "name": group.name,
            "metadata": dict(group.metadata),
            "created_at": int(group.created_at * 1000),
            "last_message_at": int(last * 1000),
        }

    # -- groups ----------------------------------------------------------------------------

    def join(self, caller: Subscriber, address_ids: Sequence[str]) -> _Group:
        """The group of ``caller`` + ``address_ids`` (created on first use; idempotent)."""
        with self.lock:
            unknown = [a for a in address_ids if a not in self.by_address]
            if unknown:
                raise LookupError(unknown[0])
            ordered: List[str] = []
            for a in list(address_ids) + [caller.address_id]:
                if a not in ordered:
                    ordered.append(a)
            if ordered == [caller.address_id]:
                raise ValueError("a conversation needs at least one address besides your own")
            key = frozenset(ordered)
            gid = self.group_by_members.get(key)
            if gid is not None:
                return self.groups[gid]
            names = [self.subscribers[self.by_address[a]].public.display_name for a in ordered]
            group = _Group(
                group_id=_uuid(),
                members=tuple(ordered),
                name=", ".join(names),
                created_at=self.next_ts(),
                seq=next(self._seq),
            )
            self.groups[group.group_id] = group
            self.group_by_members[key] = group.group_id
            for a in ordered:
                self.address_groups[a].append(group)
            self.changed.notify_all()
            return group

    def group_for(self, caller: Subscriber, group_id: str) -> Optional[_Group]:
        """The group ``group_id`` if ``caller`` is a member."""
        with self.lock:
            group = self.groups.get(group_id)
            if group is None or caller.address_id not in group.members:
                return None
            return group

    def conversations_of(self, subscriber: Subscriber) -> List[_Group]:
        """The subscriber's groups, oldest activity first (the paginator reverses)."""
        with self.lock:
            return sorted(self.address_groups.get(subscriber.address_id, []), key=_Group.sort_key)

    # -- messages --------------------------------------------------------------------------

    def post(
        self,
        sender: Subscriber,
        group: _Group,
        text: Optional[str],
        *,
        metadata: Optional[Dict[str, Any]] = None,
        details: Optional[Dict[str, Any]] = None,
        subtype: str = "chat",
        kind: Optional[str] = None,
        ts: Optional[float] = None,
    ) -> Dict[str, Any]:
        """Store a message and push it to every live session of every member."""
        with self.lock:
            return self._post(sender, group, text, metadata, details, subtype, kind, ts)

    def post_many(self, sender: Subscriber, group: _Group, texts: Iterable[str]) -> List[Dict[str, Any]]:
        """Many posts under one lock; the frames reach each socket's queue in chunks."""
        with self.lock:
            out: List[Dict[str, Any]] = []
            pending: Dict[Session, List[OutFrame]] = {}
            post = self._post
            for i, text in enumerate(texts, 1):
                out.append(post(sender, group, text, None, None, "chat", None, None, notify=False, pending=pending))
                if i % PUSH_CHUNK == 0:
                    _flush(pending)
            _flush(pending)
            self.changed.notify_all()
            return out

    def _post(
        self,
        sender: Subscriber,
        group: _Group,
        text: Optional[str],
        metadata: Optional[Dict[str, Any]],
        details: Optional[Dict[str, Any]],
        subtype: str,
        kind: Optional[str],
        ts: Optional[float],
        notify: bool = True,
        pending: "Optional[Dict[Session, List[OutFrame]]]" = None,
    ) -> Dict[str, Any]:
        stamp = self.next_ts() if ts is None else float(ts)
        message_id = self.ids()
        meta = dict(metadata) if metadata else {}
        det = dict(details) if details else {}
        data: Dict[str, Any] = {
            "id": message_id,
            "group_id": group.group_id,
            self.sender_field: sender.address_id,
            "ts": stamp,
            "details": det,
            "type": "message",
            "subtype": subtype,
            "kind": kind,
            "text": text,
            "metadata": meta,
        }
        message = _Message((stamp, next(self._seq)), data)
        group.timeline.add(message)
        for a in group.members:
            self.address_timelines[a].add(message)
        if group.last_message_ts is None or stamp > group.last_message_ts:
            group.last_message_ts = stamp
        self.messages_by_id[message_id] = (group, message)
        self._push(sender, group, data, pending)
        if notify:
            self.changed.notify_all()
        return dict(data)

    def _push(
        self, sender: Subscriber, group: _Group, data: Dict[str, Any],
        pending: "Optional[Dict[Session, List[OutFrame]]]" = None,
    ) -> None:
        recipients: List[Tuple[Session, bool]] = []
        for address in group.members:
            sub = self.subscribers[self.by_address[address]]
            for session in sub.sessions:
                if session.closed or not session.authenticated:
                    continue
                if session.half_open:
                    session.events_withheld += 1
                    continue
                recipients.append((session, address == sender.address_id))
        if not recipients:
            return
        # One serialisation per message, by hand from pre-encoded constant parts (the bytes
        # json.dumps(..., separators=(",", ":"), ensure_ascii=False) would give, key order
        # included); each recipient only gets its own event id spliced in.
        if not group.frame_channel:
            group.frame_channel = (
                '","method":"signalwire.event","params":{"event_type":"conversation.message",'
                '"event_channel":' + _dumps(f"conversation.{group.group_id}")
                + ',"project_id":' + _dumps(self.project_id)
                + ',"node_id":' + _dumps(self.node_id)
            )
        ts_text = _json_float(data["ts"])
        text = data["text"]
        details = data["details"]
        metadata = data["metadata"]
        params = (
            '{"id":' + _encode_str(data["id"])
            + ',"group_id":' + _encode_str(group.group_id)
            + "," + _encode_str(self.sender_field) + ":" + _encode_str(sender.address_id)
            + ',"ts":' + ts_text
            + ',"details":' + (_dumps(details) if details else "{}")
            + ',"type":"message","subtype":' + _json_value(data["subtype"])
            + ',"kind":' + _json_value(data["kind"])
            + ',"text":' + (_encode_str(text) if type(text) is str else _dumps(text))
            + ',"metadata":' + (_dumps(metadata) if metadata else "{}")
            + ',"hidden":false,"conversation_name":' + _encode_str(group.name)
            + ',"user_name":' + _encode_str(sender.display_name)
            + "}}}"
        )
        common = group.frame_channel + ',"timestamp":"' + ts_text + '","is_author":'
        author_tail = common + 'true,"params":' + params
        other_tail = common + 'false,"params":' + params
        now = self.clock()
        message_id = data["id"]
        new_id = self.ids
        for session, is_author in recipients:
            event_id = new_id()
            frame = '{"jsonrpc":"2.0","id":"' + event_id + (author_tail if is_author else other_tail)
            if pending is None:
                session.send_event(event_id, frame, "conversation.message", message_id, now)
            else:
                session.queue_event(event_id, frame, "conversation.message", message_id, now, pending)

    def message_page_source(
        self, *, subscriber: Subscriber, group: Optional[_Group]
    ) -> _Timeline:
        with self.lock:
            if group is not None:
                return group.timeline
            return self.address_timelines[subscriber.address_id]

    def get_message(self, group: _Group, message_id: str) -> Optional[Dict[str, Any]]:
        with self.lock:
            hit = self.messages_by_id.get(message_id)
            if hit is None or hit[0] is not group:
                return None
            return hit[1].data

    def all_messages(self, group_id: Optional[str] = None) -> List[Dict[str, Any]]:
        """Every stored message (or those of one group), newest first."""
        with self.lock:
            if group_id is not None:
                items = self.groups[group_id].timeline.items
            else:
                items = sorted((m for _, m in self.messages_by_id.values()), key=lambda m: m.key)
            return [dict(m.data) for m in reversed(items)]

    # -- relay sessions --------------------------------------------------------------------

    def open_session(self, remote: str, path: str) -> Session:
        with self.lock:
            session = Session(f"conn-{next(self._session_seq)}", remote, path, self.clock())
            self.sessions.append(session)
            self.changed.notify_all()
            return session

    def close_session(self, session: Session) -> None:
        with self.lock:
            if session.closed:
                return
            session.closed = True
            session.authenticated = False
            if session.subscriber_id in self.subscribers:
                sessions = self.subscribers[session.subscriber_id].sessions
                if session in sessions:
                    sessions.remove(session)
            self.changed.notify_all()

    def new_auth_state(self, session: Session, subscriber: Subscriber, protocol: str, jti: str) -> str:
        state = "AS" + b64url(uuid.uuid4().bytes + uuid.uuid4().bytes)
        self.auth_states[state] = _AuthState(state, subscriber.subscriber_id, protocol, jti)
        self.protocols[protocol] = subscriber.subscriber_id
        return state

    def attach(self, session: Session, subscriber: Subscriber, token: str) -> None:
        """Mark ``session`` authenticated as ``subscriber`` (it now gets events)."""
        with self.lock:
            if session.subscriber_id is not None and session.subscriber_id in self.subscribers:
                old = self.subscribers[session.subscriber_id].sessions
                if session in old:
                    old.remove(session)
            session.subscriber_id = subscriber.subscriber_id
            session.token = token
            session.authenticated = True
            if not session.closed:
                self.subscribers[subscriber.subscriber_id].sessions.append(session)
            self.changed.notify_all()

    def live_sessions(self, subscriber: Optional[Union[Subscriber, str]] = None) -> List[Session]:
        """Open sessions (authenticated or not), optionally of one subscriber."""
        with self.lock:
            sid = None if subscriber is None else self.resolve(subscriber).subscriber_id
            return [s for s in self.sessions if not s.closed and (sid is None or s.subscriber_id == sid)]

    def connection_info(self, session: Session) -> ConnectionInfo:
        with self.lock:
            sub = self.subscribers.get(session.subscriber_id or "")
            return ConnectionInfo(
                id=session.id,
                subscriber=sub.public if sub is not None else None,
                connect_params=dict(session.connect_history[-1]) if session.connect_history else None,
                connect_history=tuple(dict(p) for p in session.connect_history),
                authenticated=session.authenticated and not session.closed,
                resumed=session.resumed,
                protocol=session.protocol,
                authorization_state=session.authorization_state,
                acked=tuple(session.acked),
                unacked=tuple(session.unacked),
                events_sent=session.events_sent,
                pings_sent=session.pings_sent,
                pings_answered=session.pings_answered,
                client_pings=session.client_pings,
                reauthentications=session.reauthentications,
                events_withheld=session.events_withheld,
                half_open=session.half_open,
                closed=session.closed,
                remote=session.remote,
                path=session.path,
                opened_at=session.opened_at,
            )

    # -- faults and observation ------------------------------------------------------------

    def take_failure(self, method: str, path: str) -> Optional[FailRule]:
        with self.lock:
            for rule in self.fail_rules:
                if rule.matches(method, path):
                    rule.times -= 1
                    self.fail_rules = [r for r in self.fail_rules if r.times > 0]
                    return rule
            return None

    def record_request(self, method: str, path: str, query: Dict[str, str]) -> Dict[str, Any]:
        with self.lock:
            self.requests.append(RecordedRequest(method, path, query))
            entry: Dict[str, Any] = {"method": method, "path": path, "query": query, "body": None,
                                     "status": None, "subscriber": None}
            self.request_log.append(entry)
            self.changed.notify_all()
            return entry


def _flush(pending: "Dict[Session, List[OutFrame]]") -> None:
    for session, frames in pending.items():
        session.sink_many(frames)
    pending.clear()
