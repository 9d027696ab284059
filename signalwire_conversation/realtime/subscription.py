"""Subscriptions: a callback, or a blocking iterator / queue, and the bounded queues behind them."""

from __future__ import annotations

import collections
import queue
import threading
import time
from typing import Any, Callable, Deque, Generic, Iterator, List, Optional, Protocol, Sequence, Tuple, TypeVar

from .._logging import get_logger
from ..models import ConversationMessageEvent
from .delivery import Position, RecentIds

__all__ = ["Subscription", "Callback", "ErrorHook"]

logger = get_logger("signalwire_conversation.realtime")

#: A subscription callback: called once per new message, on the dispatcher thread.
Callback = Callable[[ConversationMessageEvent], Any]
#: ``on_error(exc, event)``: what a callback raised, and the event it was handling.
ErrorHook = Callable[[BaseException, Optional[ConversationMessageEvent]], Any]

T = TypeVar("T")

#: How often a consumer waiting on an overflowed subscription looks again for its recovery.
_RECOVERY_POLL = 0.05


class QueueClosed(Exception):
    """Internal: the queue was closed and nothing is left in it."""


class BoundedQueue(Generic[T]):
    """A FIFO with a capacity, non-blocking and blocking puts, batch puts and gets, and a
    ``close()`` that wakes every waiter (``queue.Queue`` has no way to wake a blocked
    ``get``/``put`` on shutdown).

    A waiter is woken only when it can make progress (a getter when the queue goes from empty
    to non-empty, a putter when room is made), and only when there is one: a producer that is
    ahead of its consumer pays one uncontended lock per batch, no wake-up.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize!r}")
        self.maxsize = maxsize
        self._items: Deque[T] = collections.deque()
        lock = threading.Lock()
        self._not_empty = threading.Condition(lock)
        self._not_full = threading.Condition(lock)
        self._getters = 0  # threads waiting in get()/get_many()
        self._putters = 0  # threads waiting in put()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def qsize(self) -> int:
        return len(self._items)

    def offer(self, item: T) -> bool:
        """Append without waiting; ``False`` when full. A closed queue swallows the item."""
        with self._not_empty:
            if self._closed:
                return True
            if len(self._items) >= self.maxsize:
                return False
            self._items.append(item)
            if self._getters:
                self._not_empty.notify()
            return True

    def offer_many(self, items: Sequence[T]) -> int:
        """Append as many of ``items`` as fit, in order, without waiting; how many were taken
        (all of them when the queue is closed: it swallows them)."""
        with self._not_empty:
            if self._closed:
                return len(items)
            room = self.maxsize - len(self._items)
            if room <= 0:
                return 0
            taken = items if room >= len(items) else items[:room]
            self._items.extend(taken)
            if self._getters:
                self._not_empty.notify()
            return len(taken)

    def force(self, item: T) -> None:
        """Append even beyond the capacity (for the few control items: markers, states)."""
        with self._not_empty:
            if self._closed:
                return
            self._items.append(item)
            if self._getters:
                self._not_empty.notify()

    def put(self, item: T) -> bool:
        """Append, waiting while full; ``False`` when the queue was closed meanwhile."""
        with self._not_full:
            while not self._closed and len(self._items) >= self.maxsize:
                self._putters += 1
                try:
                    self._not_full.wait()
                finally:
                    self._putters -= 1
            if self._closed:
                return False
            self._items.append(item)
            if self._getters:
                self._not_empty.notify()
            return True

    def _wait_for_items(self, timeout: Optional[float]) -> None:
        # with the lock held: until an item, the close, or the timeout (queue.Empty)
        if timeout is not None and timeout >= threading.TIMEOUT_MAX:
            timeout = None  # inf: wait forever (threading cannot take it)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._items and not self._closed:
            remaining = None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise queue.Empty
            self._getters += 1
            try:
                self._not_empty.wait(remaining)
            finally:
                self._getters -= 1

    def get(self, timeout: Optional[float] = None) -> T:
        """The oldest item, waiting up to ``timeout`` (``None``: no limit).

        Raises ``queue.Empty`` when the timeout passes, :class:`QueueClosed` when the queue is
        closed and empty.
        """
        with self._not_empty:
            self._wait_for_items(timeout)
            if not self._items:
                raise QueueClosed
            item = self._items.popleft()
            if self._putters:
                self._not_full.notify()
            return item

    def get_many(self, limit: int, timeout: Optional[float] = None) -> List[T]:
        """The oldest items (at least one, at most ``limit``), waiting as :meth:`get` does."""
        with self._not_empty:
            self._wait_for_items(timeout)
            items = self._items
            if not items:
                raise QueueClosed
            if len(items) <= limit:
                batch = list(items)
                items.clear()
            else:
                popleft = items.popleft
                batch = [popleft() for _ in range(limit)]
            if self._putters:
                self._not_full.notify_all()
            return batch

    def close(self, *, discard: bool, keep: Optional[Callable[[T], bool]] = None) -> None:
        """No more puts; wake every waiter. With ``discard`` the items left are dropped (except
        those ``keep`` accepts), else ``get`` keeps returning them until the queue is empty."""
        with self._not_empty:
            self._closed = True
            if discard:
                kept = [item for item in self._items if keep is not None and keep(item)]
                self._items.clear()
                self._items.extend(kept)
            self._not_empty.notify_all()
            self._not_full.notify_all()


class Subscription:
    """New messages for one consumer: a callback, or (without one) a blocking iterator / queue.

    Made by ``subscribe()``; never construct one yourself.

    * With a callback, the callback is called once per message, in order, on the listener's
      dispatcher thread.
    * Without one, messages wait in a bounded queue: ``for event in sub:`` blocks for the next
      one and ends after :meth:`unsubscribe`, or after ``close()`` once what was received is
      read; :meth:`get` waits up to ``timeout`` seconds and raises ``queue.Empty``. When the
      queue is full, new messages are not queued (nobody else waits for this consumer); once
      it has read half of the queue, they are fetched over REST for it alone, in order (see
      docs/realtime.md, "slow consumers").

    :attr:`cursor` is the resume point: the :attr:`~ConversationMessageEvent.cursor` of the
    last event handed to this subscription (before the first one: the ``after=`` value, else
    ``None``). ``group_id`` (when not ``None``) keeps only the messages of that conversation.
    :meth:`unsubscribe` is idempotent; ``with listener.subscribe(...) as sub:`` unsubscribes on
    exit.
    """

    def __init__(
        self,
        owner: "_Owner",
        callback: Optional[Callback],
        *,
        group_id: Optional[str],
        maxsize: int,
        start: Position,
        after: Optional[str] = None,
        anchor: Optional[str] = None,
        dedup_size: int = 10_000,
        dedup_window: float = 0.0,
        pending: bool = False,
    ) -> None:
        self._owner = owner
        self._callback = callback
        self.group_id = group_id
        self._queue: Optional[BoundedQueue[ConversationMessageEvent]] = (
            None if callback is not None else BoundedQueue(maxsize)
        )
        self._active = True
        #: nothing at or before this is delivered (the server's "now" at subscribe, or after=)
        self._start = start
        #: the last message accepted (queued or handed to the callback): where a fill starts
        self._position = start.copy()
        self._anchor = anchor
        self._recent = RecentIds(dedup_size, window=dedup_window)
        self._cursor = after
        #: waiting for a fill from its start (an after= backlog): live messages are left to it
        self._held = False
        #: the server's "now" could not be read at subscribe(): the first live message sets it
        #: (until then gap fills leave this subscription out)
        self._unknown_start = False
        #: registered, its start not known yet: live messages wait here (bounded; beyond, they
        #: are fetched over REST once the start is known)
        self._pending: Optional[List[Tuple[ConversationMessageEvent, float, bool]]] = [] if pending else None
        self._pending_overflowed = False
        self._pending_max = dedup_size
        #: set by the dispatcher once it delivers from its start (subscribe() waits for it)
        self._begun = threading.Event()
        # pull mode: overflow and its own recovery (consumer thread vs dispatcher thread)
        self._plock = threading.Lock()
        self._overflowed = False
        self._stash: Optional[List[Tuple[float, ConversationMessageEvent]]] = None
        self._stash_overflowed = False
        self._retry_at = 0.0
        self._failures = 0
        self._low_water = max(1, maxsize // 2)
        #: messages not queued because the queue was full (recovered over REST later)
        self.dropped = 0

    @property
    def callback(self) -> Optional[Callback]:
        """The callback, or ``None`` for an iterator subscription."""
        return self._callback

    @property
    def active(self) -> bool:
        """``False`` after :meth:`unsubscribe` or the listener's ``close()``."""
        return self._active

    @property
    def cursor(self) -> Optional[str]:
        """The cursor of the last event handed to this subscription (to its callback, or out of
        :meth:`get` / iteration); before the first: the ``after=`` value, else ``None``.
        ``subscribe(after=sub.cursor)`` continues right after it."""
        return self._cursor

    def unsubscribe(self) -> None:
        """Stop delivering to this subscription (idempotent; safe from a callback)."""
        if not self._active:
            return
        self._owner._remove_subscription(self)
        self._close(discard=True)

    # -- iterator / queue mode --------------------------------------------------------------

    def get(self, timeout: Optional[float] = None) -> ConversationMessageEvent:
        """The next message, waiting up to ``timeout`` seconds (``None``: until one comes).

        Raises ``queue.Empty`` when the timeout passes, or at once when the subscription is
        closed and nothing is left to read. After an overflow, the call that finds the queue
        half read fetches the missed messages over REST first (it may take longer than
        ``timeout`` then).
        """
        q = self._iterator_queue()
        if timeout is not None and timeout >= threading.TIMEOUT_MAX:
            timeout = None
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            if self._overflowed:
                self._recover()
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._overflowed and self._active:
                wait = _RECOVERY_POLL if wait is None else min(wait, _RECOVERY_POLL)
            try:
                event = q.get(wait)
            except QueueClosed:
                raise queue.Empty from None
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                continue
            self._cursor = event.cursor
            return event

    def __iter__(self) -> Iterator[ConversationMessageEvent]:
        self._iterator_queue()
        while True:
            try:
                yield self.get()
            except queue.Empty:
                return

    def _iterator_queue(self) -> BoundedQueue[ConversationMessageEvent]:
        if self._queue is None:
            raise TypeError(
                "this subscription has a callback; get() and iteration are for subscriptions "
                "made without one (subscribe() with no callback)"
            )
        return self._queue

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.unsubscribe()

    # -- the dispatcher's side --------------------------------------------------------------

    def _matches(self, event: ConversationMessageEvent) -> bool:
        return self.group_id is None or event.conversation_id == self.group_id

    def _offer(self, event: ConversationMessageEvent, ts: float, advance: bool = True) -> int:
        """Hand ``event`` (server time ``ts``) over when it is for this subscription: 1 when
        taken, 2 when a duplicate, 0 when not for it. ``advance``: whether its ``ts`` may move
        the gap-fill position (not when implausibly far in the future). Dispatcher thread;
        never raises."""
        if not self._active or self._held:
            return 0
        pending = self._pending
        if pending is not None:
            if len(pending) < self._pending_max:
                pending.append((event, ts, advance))
            else:
                self._pending_overflowed = True
            return 0
        message_id = event.id
        assert message_id is not None
        if self._unknown_start:
            if event.recovered:
                return 0
            self._start = Position(ts)
            self._position = Position(ts)
            self._unknown_start = False
        start = self._start
        if ts < start.ts or (ts == start.ts and message_id in start.ids):
            return 0  # stored before this subscription started (or at/before its cursor)
        if self._callback is None:
            return self._offer_pull(event, ts, advance)
        if not self._recent.add(message_id, ts):
            return 2
        if advance:
            position = self._position
            if ts > position.ts:  # Position.advance, inlined (every event comes here)
                position.ts = ts
                position.ids = {message_id}
            else:
                position.advance(ts, message_id)
        self._cursor = event.cursor
        try:
            self._callback(event)
        except BaseException as exc:  # the user's code: log it, report it, keep going
            logger.exception("a subscription callback raised %s on message %s", type(exc).__name__, event.id)
            self._owner._report_error(exc, event)
        return 1

    def _begin(self, start: Optional[Position], *, hold: bool = False) -> bool:
        """Dispatcher thread: the start is known (``None``: unknown, the first live message
        sets it). Unless ``hold`` (a fill from the start follows), deliver what waited, in
        order. ``True`` when what waited overflowed and must be fetched over REST instead
        (the caller holds the subscription and queues that fill)."""
        pending, self._pending = self._pending or [], None
        if start is None:
            self._unknown_start = True
        else:
            self._start = start
            self._position = start.copy()
        if hold or (self._pending_overflowed and start is not None):
            return self._pending_overflowed
        for event, ts, advance in pending:
            self._offer(event, ts, advance)
        return False

    def _offer_pull(self, event: ConversationMessageEvent, ts: float, advance: bool) -> int:
        assert self._queue is not None and event.id is not None
        with self._plock:
            if self._stash is not None:  # a recovery is reading the server: keep what comes
                if len(self._stash) < self._queue.maxsize:
                    self._stash.append((ts, event))
                else:
                    self._stash_overflowed = True
                return 1
            if self._overflowed:
                self.dropped += 1
                return 1
            if event.id in self._recent:
                return 2
            if self._queue.offer(event):
                self._recent.add(event.id, ts)
                if advance:
                    self._position.advance(ts, event.id)
                return 1
            self._overflowed = True
            self.dropped += 1
        logger.warning(
            "an iterator subscription's queue is full (%d messages): its consumer is slower than "
            "the traffic; its new messages are fetched over REST once it has read %d of them "
            "(other subscriptions are not held up)",
            self._queue.maxsize,
            self._queue.maxsize - self._low_water,
        )
        return 1

    def _recover(self) -> None:
        """After an overflow, on the consumer's thread: once the queue is half read, fetch what
        was not queued (over REST, after the last queued message) and queue it, in order."""
        assert self._queue is not None
        with self._plock:
            if (
                not self._overflowed
                or not self._active
                or self._stash is not None
                or self._queue.qsize() > self._low_water
                or time.monotonic() < self._retry_at
            ):
                return
            mark = self._position.copy()
            self._stash = []
            self._stash_overflowed = False
        try:
            recovered = self._owner._recover_subscription(self, mark)
        except Exception as exc:
            with self._plock:
                self._stash = None
                self._retry_at = time.monotonic() + min(15.0, 0.25 * 2**self._failures)
                self._failures += 1
            logger.warning("recovering a slow subscription's messages failed: %s: %s", type(exc).__name__, exc)
            self._owner._report_error(exc, None)
            return
        with self._plock:
            stash, self._stash = self._stash, None
            self._failures = 0
            complete = not self._stash_overflowed
            for ts, event in list(recovered) + (stash or []):
                message_id = event.id
                assert message_id is not None
                if not self._position.precedes(ts, message_id) or message_id in self._recent:
                    continue
                if not self._queue.offer(event):
                    complete = False  # full again: the rest is fetched on a later turn
                    break
                self._recent.add(message_id, ts)
                self._position.advance(ts, message_id)
            if complete:
                self._overflowed = False
                self.dropped = 0

    def _forget_parent(self) -> None:
        """In a forked child: this subscription stays the parent's; here it is over (its queue
        is replaced, since a parent thread may have held the old one's lock at the fork)."""
        self._active = False
        self._plock = threading.Lock()
        if self._queue is not None:
            ended: BoundedQueue[ConversationMessageEvent] = BoundedQueue(1)
            ended.close(discard=True)
            self._queue = ended

    def _close(self, *, discard: bool) -> None:
        self._active = False
        self._begun.set()  # nobody waits for a start that will not come
        if self._queue is not None:
            self._queue.close(discard=discard)

    def __repr__(self) -> str:
        mode = "callback" if self._callback is not None else "iterator"
        return f"Subscription({mode}, group_id={self.group_id!r}, active={self._active})"


class _Owner(Protocol):
    """What a subscription needs from its listener."""

    def _remove_subscription(self, subscription: Subscription) -> None: ...

    def _report_error(self, exc: BaseException, event: Optional[ConversationMessageEvent]) -> None: ...

    def _recover_subscription(
        self, subscription: Subscription, after: Position
    ) -> Sequence[Tuple[float, ConversationMessageEvent]]: ...
