"""The relay: one listener per subscriber, cluster-wide, publishing every message to a stream.

Run any number of relays with the same token (on as many machines as you like). They share one
lease in Redis; the holder is **active**: it subscribes and appends every new message to the
stream; the others are **standby** and take over when the lease expires (the holder died or
lost Redis) or is released (the holder stopped cleanly).

Two threads per relay:

* the *keeper* owns the lease: it acquires it while standby (waking exactly when the other
  holder's lease would expire) and renews it every ``lease_ttl / 3`` while active;
* the *worker* (the thread that calls :meth:`Relay.run`) reacts: on becoming active it
  subscribes, fills the gap over REST from the checkpoint (the newest message appended by
  whichever relay was active before), then appends live messages in batches. It appends only
  while the lease is certainly ours, and the append script checks the lease holder itself, so a
  relay that lost the lease (paused, partitioned) appends nothing, whatever it believes.

If the client's realtime listener dies for good (its token was revoked mid-run and cannot be
refreshed), this relay would receive nothing more while still holding the lease: it notices at
once (through :meth:`Relay.on_connection_state`, or within ``LISTENER_CHECK`` seconds by
itself), stops appending, releases the lease so that a standby (perhaps with a valid token)
takes over, and :meth:`Relay.run` raises the listener's error.

Live messages wait in a bounded buffer. If Redis is unreachable long enough to fill it, newer
messages are dropped from the buffer and recovered later over REST from the checkpoint (so
memory stays bounded and nothing is lost, as long as the backend still has the messages).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Protocol, Sequence, Union

from ..errors import (
    AuthenticationError,
    ConfigurationError,
    PermissionDeniedError,
    RealtimeError,
    SignalWireError,
)
from ..models import ConversationMessageEvent, event_from_message
from ._redis import UNAVAILABLE, Backoff, Redis, RedisError, connect, describe, error_text
from .lease import Lease, new_holder_token
from .stream import DEFAULT_MAXLEN, DEFAULT_SEEN_TTL, Checkpoint, Fenced, StreamWriter

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client
    from ..realtime import ConnectionState

__all__ = ["Relay", "RelayState", "LeaseGate", "default_stream_name", "DEFAULT_LEASE_TTL"]

logger = logging.getLogger("signalwire_conversation.fanout.relay")

#: Default lease lifetime, seconds: a dead relay is replaced within about this long.
DEFAULT_LEASE_TTL = 10.0
DEFAULT_BUFFER_SIZE = 10_000
DEFAULT_BATCH_SIZE = 200
STREAM_PREFIX = "signalwire:conversation:"
#: A standby asks for the lease at least this often (seconds), whatever the TTL.
STANDBY_POLL = 1.0
#: An active relay looks at its client's listener at least this often (seconds), for a listener
#: that died without telling (``on_connection_state`` makes it immediate).
LISTENER_CHECK = 0.25
#: With a gate: a relay that handed its lease over does not ask for it again for this long
#: (seconds), so that the relay it was handed to gets it.
HANDOVER_COOLDOWN = 3.0
#: With a gate that allows only its slack: how long a lease must have been seen free before a
#: relay already at its share takes it (relays under their share take it first).
SLACK_GRACE = 1.5

# Errors that no retry will fix: the relay stops (and says why).
_FATAL = (AuthenticationError, PermissionDeniedError, ConfigurationError)


def default_stream_name(address_id: str) -> str:
    """``signalwire:conversation:{<address id>}``: the stream of one subscriber's messages.

    The braces are a Redis Cluster hash tag: the stream's keys (``:lease``, ``:checkpoint``,
    ``:seen:<id>``) are all named after it, so they share one slot.
    """
    return STREAM_PREFIX + "{" + address_id + "}"


class LeaseGate(Protocol):
    """What a :class:`Relay` asks before taking a free lease and while holding one (the fleet's
    fair share, :class:`~signalwire_conversation.fanout.Fleet`). Never consulted to keep a
    lease: a gate can only make a relay take less, or hand a lease over cleanly."""

    #: Held while a relay decides and asks Redis for a lease (one decision at a time).
    lock: threading.Lock

    def may_take(self) -> Optional[bool]:
        """``True``: take a free lease; ``None``: only one seen free for ``SLACK_GRACE``
        seconds (the slack); ``False``: do not ask."""

    def taken(self) -> None:
        """The relay just took a lease (called under :attr:`lock`)."""

    def should_hand_over(self) -> bool:
        """Asked by an active relay between batches: ``True`` to hand its lease over now."""

    def handed_over(self) -> None:
        """The relay released the lease it was told to hand over."""


class RelayState(enum.Enum):
    """``STARTING`` (resolving the stream, reaching Redis), ``STANDBY``, ``ACTIVE``, ``STOPPED``."""

    STARTING = "starting"
    STANDBY = "standby"
    ACTIVE = "active"
    STOPPED = "stopped"


class Relay:
    """Publish one subscriber's messages to a Redis stream, with failover between processes.

    ::

        from signalwire_conversation import Client
        from signalwire_conversation.fanout import Relay

        relay = Relay(Client(token), "redis://localhost:6379/0", lease_ttl=10)
        relay.run()          # blocks; relay.stop() from another thread (or a signal handler)

    Arguments: ``client`` (a :class:`~signalwire_conversation.Client`; the relay does not close
    it), ``redis`` (a URL or a ``redis.Redis``), ``stream`` (default
    ``signalwire:conversation:{<own address id>}``), ``lease_ttl`` (seconds), ``maxlen``
    (approximate stream cap, ``None`` for none), ``seen_ttl`` (seconds a message id is
    remembered for de-duplication), ``buffer_size`` (live messages held while Redis is slow or
    down), ``batch_size`` (messages per append), ``on_state_change(state)``, ``token`` (the
    lease token, default a new ``host:pid:random``), ``gate`` (a :class:`LeaseGate` deciding
    when to take a free lease and when to hand one over: a fleet's fair share) and ``keeper``
    (``False``: no keeper thread of its own; somebody calls :meth:`lease_step`, as a fleet's
    one keeper does).

    If the client's listener dies for good (a revoked token), the relay stops: it releases the
    lease for a standby and :meth:`run` raises the listener's error. It notices within
    ``LISTENER_CHECK`` seconds; to notice at once, hand :meth:`on_connection_state` to the
    client::

        client = Client(token, on_state_change=lambda state: relay.on_connection_state(state))
        relay = Relay(client, "redis://localhost:6379/0")
    """

    def __init__(
        self,
        client: "Client",
        redis: Union[str, Redis],
        *,
        stream: Optional[str] = None,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        maxlen: Optional[int] = DEFAULT_MAXLEN,
        seen_ttl: float = DEFAULT_SEEN_TTL,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        subscribe_timeout: float = 15.0,
        backoff: "tuple[float, float]" = (0.2, 10.0),
        on_state_change: Optional[Callable[[RelayState], None]] = None,
        token: Optional[str] = None,
        gate: Optional[LeaseGate] = None,
        keeper: bool = True,
    ) -> None:
        if not lease_ttl > 0:
            raise ValueError(f"lease_ttl must be positive seconds, got {lease_ttl!r}")
        if buffer_size < 1 or batch_size < 1:
            raise ValueError("buffer_size and batch_size must be >= 1")
        self.client = client
        self.redis = connect(redis)
        self.stream = stream
        self.lease_ttl = float(lease_ttl)
        self.maxlen = maxlen
        self.seen_ttl = seen_ttl
        self.buffer_size = buffer_size
        self.batch_size = batch_size
        self.subscribe_timeout = subscribe_timeout
        self._backoff = backoff
        self._on_state_change = on_state_change
        #: This relay's lease token (``host:pid:random``), also the ``relay`` field of its entries.
        self.token = token or new_holder_token()
        self._gate = gate
        self._own_keeper = keeper
        self._lease_lock = threading.Lock()  # one lease turn, hand-over or release at a time
        self._keeper_backoff = Backoff(*backoff)
        self._redis_down = False
        self._seen_holder: Optional[str] = None
        self._quiet = logging.INFO if gate is None else logging.DEBUG
        # In a fleet the client's state changes are handed to on_connection_state (the command
        # line does): the periodic look is only a fallback, and a thousand relays wake less.
        self._listener_check = LISTENER_CHECK if gate is None else 1.0
        self._cooldown_until = 0.0  # with a gate: no acquire before this (after a hand-over)
        self._free_since: Optional[float] = None  # with a gate: the lease first seen free
        self._slack_only = False  # with a gate: the last verdict allowed only the slack
        self._handing_over = False
        #: Wall-clock time this relay last took the lease (``None`` while it holds none).
        self.lease_since: Optional[float] = None
        #: Leases handed over to balance a fleet.
        self.handovers = 0

        #: Counters: messages appended, repeats dropped by the script, messages dropped from a
        #: full buffer (recovered by gap fill), gap fills run, messages recovered by them.
        self.appended = 0
        self.duplicates = 0
        self.dropped = 0
        self.gap_fills = 0
        self.recovered = 0

        self._lease: Optional[Lease] = None
        self._held_lease = False  # ever acquired: only then is there a lease to release
        self._writer: Optional[StreamWriter] = None
        self._state = RelayState.STARTING
        self._stop = threading.Event()
        self._cond = threading.Condition()  # guards the buffer, the flags and the state
        self._buffer: Deque[ConversationMessageEvent] = deque()
        self._generation = 0  # bumped on every activation; events of an older one are ignored
        self._active = False
        self._need_gap_fill = False
        self._overflowed = False
        self._subscription: Any = None
        self._keeper: Optional[threading.Thread] = None
        self._thread: Optional[threading.Thread] = None
        self._fatal: Optional[BaseException] = None

    # -- public ----------------------------------------------------------------------------

    @property
    def state(self) -> RelayState:
        return self._state

    @property
    def holds_lease(self) -> bool:
        """Whether this relay certainly holds its stream's lease right now (no Redis call)."""
        lease = self._lease
        return lease is not None and lease.held()

    def run(self) -> None:
        """Run until :meth:`stop` (blocking). Releases the lease on the way out.

        Raises :class:`~signalwire_conversation.AuthenticationError` (or another error no retry
        can fix) when the token is refused; Redis and network outages are retried forever.
        """
        try:
            self._setup()
            if self._stop.is_set():
                return
            if self._own_keeper:
                keeper = threading.Thread(target=self._keep_lease, name="sw-fanout-lease", daemon=True)
                self._keeper = keeper
                keeper.start()
            self._work()
        finally:
            self._shutdown()
        if self._fatal is not None:
            raise self._fatal

    def start(self) -> "Relay":
        """Run in a background thread (see :meth:`run`); returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("this relay was already started")

        def target() -> None:
            try:
                self.run()
            except BaseException as exc:  # reported by stop()/wait_for_state() through _fatal
                if exc is not self._fatal:  # not logged yet
                    self._fatal = exc
                    logger.error("relay stopped: %s", error_text(exc))

        self._thread = threading.Thread(target=target, name="sw-fanout-relay", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the relay to stop, without waiting (safe in a signal handler: takes no lock)."""
        self._stop.set()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for a relay started with :meth:`start` to end; ``True`` when it has."""
        thread = self._thread
        if thread is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        # Short joins, so that signal handlers run promptly in the main thread.
        while thread.is_alive():
            if self._stop.is_set():
                with self._cond:
                    self._cond.notify_all()
            remaining = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
            if remaining <= 0:
                return False
            thread.join(remaining)
        return True

    def on_connection_state(self, state: "ConnectionState") -> None:
        """Tell the relay its client's ``ConnectionState`` changed (pass it, or a lambda calling
        it, as the client's ``on_state_change``): a listener that died is noticed at once.
        Safe on any thread; never blocks for long."""
        from ..realtime import ConnectionState  # here: importing the fan-out needs no websocket

        if state is ConnectionState.CLOSED:
            self._wake()

    @property
    def error(self) -> Optional[BaseException]:
        """The error that stopped the relay (e.g. a refused token), else ``None``."""
        return self._fatal

    def stop(self, timeout: float = 10.0) -> None:
        """Stop: stop appending, release the lease, unsubscribe. Idempotent; thread-safe."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def wait_for_state(self, state: RelayState, timeout: float = 10.0) -> bool:
        """Block until the relay is in ``state`` (``False`` when ``timeout`` passes first)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._state is not state:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._state is RelayState.STOPPED and state is not RelayState.STOPPED):
                    return False
                self._cond.wait(min(remaining, 0.5))
            return True

    def __enter__(self) -> "Relay":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Relay(stream={self.stream!r}, state={self._state.value}, token={self.token!r})"

    # -- set-up and shutdown ---------------------------------------------------------------

    def _setup(self) -> None:
        """Resolve the stream name (one REST call, retried); build the lease and the writer."""
        if self.stream is None:
            backoff = Backoff(*self._backoff)
            while not self._stop.is_set():
                try:
                    address = self.client.conversation.get_subscriber_info().address_id
                except _FATAL:
                    raise
                except SignalWireError as exc:
                    delay = backoff.next_delay()
                    logger.warning(
                        "cannot look up the subscriber's address (%s); retrying in %.1f s",
                        error_text(exc), delay,
                    )
                    self._stop.wait(delay)
                    continue
                if not address:
                    raise ConfigurationError(
                        "the subscriber has no fabric address, so the relay cannot name its "
                        "stream; pass stream=... (--stream)"
                    )
                self.stream = default_stream_name(address)
                break
            else:
                return
        assert self.stream is not None
        self._lease = Lease(self.redis, f"{self.stream}:lease", self.lease_ttl, token=self.token)
        self._writer = StreamWriter(
            self.redis, self.stream, token=self.token, maxlen=self.maxlen, seen_ttl=self.seen_ttl
        )
        self._set_state(RelayState.STANDBY, log=False)
        logger.log(
            logging.DEBUG if self._gate is not None else logging.INFO,
            "relay %s starting on stream %r at %s (lease TTL %.1f s)",
            self.token, self.stream, describe(self.redis), self.lease_ttl,
        )

    def _shutdown(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._active:
            self._flush_on_stop()
            self._deactivate("stopping")
        keeper = self._keeper
        if keeper is not None and keeper is not threading.current_thread():
            keeper.join(max(5.0, self.lease_ttl))
        if self._lease is not None and self._held_lease:
            try:
                with self._lease_lock:
                    released = self._lease.release()
                if released:
                    logger.info("relay %s released the lease", self.token)
            except UNAVAILABLE as exc:
                logger.warning("could not release the lease (%s); it expires by itself", error_text(exc))
        self._set_state(RelayState.STOPPED)

    def _flush_on_stop(self, budget: float = 2.0) -> None:
        """Append what is buffered before letting go (bounded; the next leader gap-fills anyway)."""
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline and not self._need_gap_fill:
            lease = self._lease
            if lease is None or not lease.held():
                return
            try:
                if not self._append_buffered():
                    return
            except (Fenced, *UNAVAILABLE):
                return

    # -- the keeper thread: the lease ------------------------------------------------------

    def _keep_lease(self) -> None:
        """The keeper thread of a relay that keeps its own lease."""
        while not self._stop.is_set():
            self._stop.wait(self.lease_step())

    def lease_step(self) -> float:
        """One turn of the lease keeper: renew the lease if held, else ask for it (as the gate
        allows); returns the seconds until the next turn. Called by the relay's own keeper
        thread, or, for the relays of a :class:`~.fleet.Fleet`, by the fleet's one keeper."""
        lease = self._lease
        if lease is None or self._stop.is_set():
            return STANDBY_POLL
        with self._lease_lock:
            return self._lease_turn(lease)

    def renewable(self) -> bool:
        """Whether the next lease turn is a plain renewal (a fleet batches those)."""
        return not self._handing_over and not self._stop.is_set() and self.holds_lease

    @staticmethod
    def renew_together(relays: "Sequence[Relay]", redis: Redis) -> List[float]:
        """The lease turns of ``relays`` that hold their leases, renewed in one round trip;
        per relay, the seconds until its next turn. A relay busy with its lease (a hand-over, a
        release) gets ``0`` (its own turn comes next)."""
        locked: List[Relay] = [r for r in relays if r._lease_lock.acquire(blocking=False)]
        try:
            leases = [r._lease for r in locked]
            try:
                results = Lease.renew_many([lease for lease in leases if lease is not None], redis)
            except UNAVAILABLE as exc:
                logger.debug("renewing %d leases failed: %s", len(locked), error_text(exc))
                now = time.monotonic()
                for r in locked:
                    r._redis_down = True
                    r._wake()
                # Try again with backoff, well before each lease runs out.
                return [
                    min(r._keeper_backoff.next_delay(), max(0.05, (r._lease.valid_until - now) / 3))
                    if r in locked and r._lease is not None else 0.0
                    for r in relays
                ]
            waits: Dict[int, float] = {}
            for relay, ok in zip(locked, results):
                lease = relay._lease
                assert lease is not None
                if ok:
                    relay._keeper_backoff.reset()
                    relay._redis_down = False
                    waits[id(relay)] = lease.ttl / 3
                else:
                    relay.lease_since = None
                    logger.warning("relay %s lost the lease of %r", relay.token, relay.stream)
                    relay._wake()
                    waits[id(relay)] = 0.0
            return [waits.get(id(r), 0.0) for r in relays]
        finally:
            for r in locked:
                r._lease_lock.release()

    def _lease_turn(self, lease: Lease) -> float:
        backoff = self._keeper_backoff
        wait = lease.ttl / 3
        try:
            if self._handing_over:
                pass  # the worker releases it
            elif lease.held():
                if not lease.renew():
                    self.lease_since = None
                    logger.warning("relay %s lost the lease of %r to %r", self.token, self.stream, lease.holder())
                    self._wake()
                    return 0.0
            elif self._gate is not None:
                if self._gated_acquire(lease):
                    self._took_lease()
                    self._seen_holder = None
                elif self._slack_only:
                    # At its share: a look at the lease (a GET) every TTL / 3 is enough (the
                    # share grows before a dead relay's leases expire, see Fleet).
                    wait = max(wait, SLACK_GRACE)
                elif lease.other_remaining is not None:
                    wait = min(wait, STANDBY_POLL, lease.other_remaining + 0.005)
                else:
                    wait = min(wait, STANDBY_POLL)
            elif lease.acquire():
                self._took_lease()
                self._seen_holder = None
            elif lease.other_remaining is not None:
                # Wake just after the other holder's lease would expire, and at least
                # every STANDBY_POLL seconds (a released lease is taken over at once).
                wait = min(wait, STANDBY_POLL, lease.other_remaining + 0.005)
                holder = lease.holder()
                if holder != self._seen_holder:
                    self._seen_holder = holder
                    logger.info(
                        "relay %s is STANDBY: the lease is held by %r (expires in %.1f s "
                        "unless renewed)", self.token, holder, lease.other_remaining,
                    )
            if self._redis_down:
                logger.log(self._quiet, "relay %s reached Redis at %s again", self.token, describe(self.redis))
                self._redis_down = False
            backoff.reset()
        except UNAVAILABLE as exc:
            self._redis_down = True
            wait = backoff.next_delay()
            if lease.held():
                # Keep trying to renew before the lease runs out.
                wait = min(wait, max(0.05, (lease.valid_until - time.monotonic()) / 3))
            logger.log(
                logging.WARNING if self._gate is None else logging.DEBUG,  # a fleet logs it once
                "relay %s cannot reach Redis at %s (%s); retrying in %.1f s",
                self.token, describe(self.redis), error_text(exc), wait,
            )
            self._wake()
        except Exception as exc:  # a bug or an unexpected reply: never a silent death
            wait = backoff.next_delay()
            logger.exception("relay %s: lease keeper failed (%s); retrying in %.1f s", self.token, exc, wait)
        return wait

    def _took_lease(self) -> None:
        self._held_lease = True
        self.lease_since = time.time()
        self._wake()

    def _gated_acquire(self, lease: Lease) -> bool:
        """Ask for the lease if the gate allows it now (never a held lease: ``SET NX``)."""
        gate = self._gate
        assert gate is not None
        now = time.monotonic()
        if now < self._cooldown_until:
            return False
        verdict = gate.may_take()
        self._slack_only = verdict is None
        if verdict is False:
            self._free_since = None
            lease.other_remaining = None
            return False
        if verdict is None:  # only the slack: a lease nobody under their share wanted
            if lease.holder() is not None:
                self._free_since = None
                return False
            if self._free_since is None:
                self._free_since = now
            if now - self._free_since < SLACK_GRACE:
                return False
        with gate.lock:
            now_verdict = gate.may_take()
            if now_verdict is False:
                return False
            if now_verdict is None and verdict is True:
                # Others of this process took the share meanwhile: this one is slack now, and
                # slack waits until the lease has been free SLACK_GRACE seconds.
                self._slack_only = True
                self._free_since = now
                return False
            if not lease.acquire():
                return False
            gate.taken()
        self._free_since = None
        return True

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- the worker: subscribe, gap fill, append -------------------------------------------

    def _work(self) -> None:
        lease = self._lease
        assert lease is not None
        backoff = Backoff(*self._backoff)
        while not self._stop.is_set():
            dead = self._listener_death()
            if dead is not None:
                self._die(dead)
                break
            try:
                if not self._active:
                    if lease.held():
                        self._activate()
                    else:
                        self._idle(lease.ttl / 3)
                    continue
                if not lease.held():
                    self.lease_since = None
                    self._deactivate("the lease expired or was taken over")
                    continue
                if self._gate is not None and not self._need_gap_fill and self._gate.should_hand_over():
                    self._hand_over()
                    continue
                if self._need_gap_fill:
                    self._gap_fill()
                elif not self._append_buffered():
                    self._idle(min(lease.ttl / 3, self._listener_check))
                backoff.reset()
            except Fenced:
                self._deactivate("another relay holds the lease (fenced)")
            except UNAVAILABLE as exc:
                # The keeper logs the outage; here, wait without spinning (the batch stays
                # buffered, and a repeat of it later is dropped by the script).
                logger.debug("append failed: %s", error_text(exc))
                self._stop.wait(min(backoff.next_delay(), lease.ttl / 3))
            except RedisError as exc:  # reachable but refusing (OOM, READONLY replica, ...)
                delay = backoff.next_delay()
                logger.warning("relay %s: Redis refused the append (%s); retrying in %.1f s",
                               self.token, error_text(exc), delay)
                self._stop.wait(delay)
            except _FATAL as exc:
                logger.error("relay %s cannot continue: %s", self.token, error_text(exc))
                self._fatal = exc
                self._stop.set()
            except SignalWireError as exc:
                delay = backoff.next_delay()
                logger.warning("relay %s: %s; retrying in %.1f s", self.token, error_text(exc), delay)
                self._stop.wait(delay)

    def _listener_death(self) -> Optional[SignalWireError]:
        """The error of a client listener that stopped for good under us, else ``None``.

        ``CLOSED`` while the relay runs: the listener died (``listener_error`` is set before the
        state changes), or somebody closed the client under the relay; either way no message
        will ever arrive through it again.
        """
        from ..realtime import ConnectionState

        if self._stop.is_set() or self.client.connection_state is not ConnectionState.CLOSED:
            return None
        error = self.client.listener_error
        if error is None:
            return RealtimeError("the client was closed while the relay was running")
        return error

    def _die(self, error: SignalWireError) -> None:
        """Stop for good: the worker stops appending; :meth:`run` releases the lease and raises."""
        held = self._lease is not None and self._lease.held()
        logger.error(
            "relay %s cannot continue: the live connection stopped for good (%s); %s",
            self.token, error_text(error),
            "appending what it already received, then releasing the lease so a standby takes over"
            if held else "stopping (it held no lease)",
        )
        self._fatal = error
        self._stop.set()

    def _idle(self, timeout: float) -> None:
        with self._cond:
            if not self._stop.is_set() and not self._buffer:
                self._cond.wait(timeout)

    def _activate(self) -> None:
        writer = self._writer
        assert writer is not None
        if writer.checkpoint() is None:
            # Before subscribing, so the gap fill after it covers everything from this point.
            self._first_checkpoint(writer)
        with self._cond:
            self._generation += 1
            generation = self._generation
            self._buffer.clear()
            self._overflowed = False
            self._need_gap_fill = True
            self._active = True

        def on_event(event: ConversationMessageEvent) -> None:
            self._on_event(generation, event)

        try:
            self._subscription = self.client.conversation.subscribe(on_event, timeout=self.subscribe_timeout)
        except BaseException:
            with self._cond:
                self._active = False
            with self._lease_lock:
                self._release_quietly()
            raise
        self._set_state(RelayState.ACTIVE)

    def _deactivate(self, reason: str, *, level: int = logging.WARNING) -> None:
        with self._cond:
            self._generation += 1
            self._active = False
            self._buffer.clear()
            self._need_gap_fill = False
            self._overflowed = False
            subscription, self._subscription = self._subscription, None
        if subscription is not None:
            try:
                subscription.unsubscribe()
            except Exception as exc:  # never let a teardown failure keep us "active"
                logger.warning("unsubscribe failed: %s", error_text(exc))
        if not self._stop.is_set():
            logger.log(level, "relay %s is STANDBY on %r: %s", self.token, self.stream, reason)
            self._set_state(RelayState.STANDBY, log=False)

    def _hand_over(self) -> None:
        """Let the lease go for another relay of the fleet: append what is buffered, stop,
        release (the taker gap-fills from the checkpoint, so nothing received after the last
        append is lost)."""
        gate = self._gate
        assert gate is not None
        self._handing_over = True
        try:
            self._flush_on_stop(budget=1.0)
            self._deactivate("handed the lease over to balance the fleet", level=logging.INFO)
            self._cooldown_until = time.monotonic() + HANDOVER_COOLDOWN
            with self._lease_lock:
                self._release_quietly()
            self.lease_since = None
            self.handovers += 1
        finally:
            self._handing_over = False
            gate.handed_over()

    def _release_quietly(self) -> None:
        lease = self._lease
        if lease is None:
            return
        try:
            lease.release()
        except UNAVAILABLE:
            pass

    def _on_event(self, generation: int, event: ConversationMessageEvent) -> None:
        """The subscription's callback (SDK dispatcher thread): buffer, never block."""
        with self._cond:
            if generation != self._generation or not self._active:
                return
            if self._overflowed or len(self._buffer) >= self.buffer_size:
                if not self._overflowed:
                    logger.warning(
                        "relay buffer full (%d messages; Redis slow or down): dropping new "
                        "messages until they can be recovered over REST", self.buffer_size,
                    )
                self._overflowed = True
                self._need_gap_fill = True
                self.dropped += 1
                return
            self._buffer.append(event)
            self._cond.notify_all()

    def _append_buffered(self) -> bool:
        """Append one batch from the buffer; ``False`` when it was empty."""
        writer = self._writer
        assert writer is not None
        with self._cond:
            if not self._buffer:
                return False
            batch = [self._buffer[i] for i in range(min(self.batch_size, len(self._buffer)))]
        self._append(writer, batch)
        with self._cond:
            # Only this thread removes from the left; the callback only appends on the right.
            for _ in batch:
                if self._buffer:
                    self._buffer.popleft()
        return True

    def _append(self, writer: StreamWriter, batch: List[ConversationMessageEvent]) -> None:
        lease = self._lease
        if lease is None or not lease.held():
            raise Fenced("the lease is not certainly ours")
        results = writer.append(batch)
        new = sum(1 for r in results if r is not None)
        self.appended += new
        self.duplicates += len(results) - new

    def _gap_fill(self) -> None:
        """Append every message since the checkpoint, oldest first, before the buffered ones."""
        writer = self._writer
        lease = self._lease
        assert writer is not None and lease is not None
        with self._cond:
            self._need_gap_fill = False
            self._overflowed = False  # live messages are buffered again from here on
        try:
            checkpoint = writer.checkpoint()
            if checkpoint is None:  # deleted under us (or Redis restarted empty)
                checkpoint = self._first_checkpoint(writer)
            since = checkpoint.ts if checkpoint.ts else None
            newest_first: List[Any] = []
            for message in self.client.conversation.get_messages(since=since):
                newest_first.append(message)
                if len(newest_first) % 500 == 0 and (self._stop.is_set() or not lease.held()):
                    raise Fenced("the lease expired during the gap fill")
            with self._cond:
                # A message also delivered live is appended as the live event: it carries more
                # (the conversation and sender names) than the REST copy.
                live = {e.id: e for e in self._buffer if e.id}
            events = [
                live.get(m.id) or event_from_message(m) for m in reversed(newest_first)
                if not (m.id and m.id == checkpoint.message_id)
            ]
            # Oldest first; the server's order breaks ties (a stable sort keeps it).
            events.sort(key=lambda e: e.ts if e.ts is not None else 0.0)
            before = self.appended
            for start in range(0, len(events), self.batch_size):
                self._append(writer, events[start:start + self.batch_size])
            self.gap_fills += 1
            self.recovered += self.appended - before
            logger.info(
                "relay %s gap fill since %s: %d message(s) read, %d appended",
                self.token, checkpoint.ts_text or "the start", len(events), self.appended - before,
            )
        except BaseException:
            with self._cond:
                if self._active:
                    self._need_gap_fill = True
            raise

    def _first_checkpoint(self, writer: StreamWriter) -> Checkpoint:
        """No relay ever ran on this stream: start after the newest message there is now."""
        newest = next(iter(self.client.conversation.get_messages(limit=1)), None)
        writer.init_checkpoint(newest.ts if newest else None, newest.id if newest else None)
        checkpoint = writer.checkpoint()
        if checkpoint is None:  # deleted meanwhile: behave as if set
            return Checkpoint("0", "", "")
        logger.info(
            "relay %s: first relay on %r; publishing messages newer than %s",
            self.token, writer.stream, checkpoint.ts_text or "now",
        )
        return checkpoint

    # -- state -----------------------------------------------------------------------------

    def _set_state(self, state: RelayState, *, log: bool = True) -> None:
        with self._cond:
            if self._state is state:
                return
            self._state = state
            self._cond.notify_all()
        if log and state is RelayState.ACTIVE:
            logger.info("relay %s is ACTIVE: appending to %r", self.token, self.stream)
        elif log and state is RelayState.STOPPED:
            logger.info("relay %s stopped", self.token)
        if self._on_state_change is not None:
            try:
                self._on_state_change(state)
            except Exception:
                logger.exception("on_state_change raised")
