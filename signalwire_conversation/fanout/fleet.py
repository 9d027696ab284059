"""A relay fleet: many subscribers per process, many processes sharing them fairly.

Every process of a fleet runs one :class:`~.relay.Relay` per subscriber (all with the process's
id, ``host:pid:random``, as their lease token). Each subscriber keeps its own lease, fence,
checkpoint and stream, exactly as with a single relay; the fleet only decides **how many**
leases a process takes:

* every process announces itself: a record ``signalwire:fleet:{NAME}:relay:<id>`` (its
  subscribers, the streams it holds and since when) with a TTL, and its id in the sorted set
  ``signalwire:fleet:{NAME}:relays`` scored by when that record expires;
* its **share** is ``ceil(subscribers / live processes)``. It takes free leases while it holds
  fewer than its share, and up to ``slack`` more only for a lease that stayed free for
  ``SLACK_GRACE`` seconds (nobody under their share wanted it: the share was counted with a
  process that just died);
* while another live process holds fewer than its share (and has subscribers to spare), a
  process holding more than its share hands leases over one by one: it appends what it
  buffered, stops and releases; the process under its share takes the lease and gap-fills
  from the checkpoint. A live lease is never taken (``SET NX`` only).

A process that dies stops renewing its leases and its record: after the lease TTL the others
take its subscribers (their share has grown by then: its record expires after
``heartbeat_ttl``, half the lease TTL by default).

The fleet's keys share the hash tag ``{NAME}``; each subscriber's keys share the tag of its
stream (``signalwire:conversation:{<address id>}``), so a fleet runs on Redis Cluster.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

from ._redis import UNAVAILABLE, Backoff, Redis, connect, describe, error_text, text
from .lease import new_holder_token
from .relay import DEFAULT_LEASE_TTL, Relay, RelayState
from .stream import DEFAULT_MAXLEN, DEFAULT_SEEN_TTL

if TYPE_CHECKING:  # pragma: no cover
    from ..client import Client

__all__ = ["Fleet", "FleetKeys", "fair_share", "DEFAULT_FLEET"]

logger = logging.getLogger("signalwire_conversation.fanout.fleet")

DEFAULT_FLEET = "default"
FLEET_PREFIX = "signalwire:fleet:"


def fair_share(subscribers: int, relays: int) -> int:
    """``ceil(subscribers / relays)`` (at least 1 relay counted)."""
    return max(0, math.ceil(subscribers / max(1, relays)))


def default_slack(share: int) -> int:
    """The few leases above its share a process may take when nobody else does: 5 %, at least 1."""
    return max(1, share // 20)


class FleetKeys:
    """The Redis keys of the fleet ``name`` (one hash tag: one Redis Cluster slot)."""

    def __init__(self, name: str = DEFAULT_FLEET) -> None:
        if not name or any(c in name for c in "{}"):
            raise ValueError(f"a fleet name must be non-empty without braces, got {name!r}")
        self.name = name
        base = f"{FLEET_PREFIX}{{{name}}}"
        #: Sorted set: relay id -> expiry of its record (Redis server time, ms).
        self.relays = f"{base}:relays"
        self._record = f"{base}:relay:"

    def record(self, relay_id: str) -> str:
        """The key of one relay's record (JSON, with a TTL)."""
        return self._record + relay_id


def server_ms(client: Redis) -> int:
    """Redis's own clock, ms (every process compares against the same clock)."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def live_records(client: Redis, keys: FleetKeys) -> List[Dict[str, Any]]:
    """The records of the relays whose heartbeat has not expired."""
    now = server_ms(client)
    ids = [text(i) or "" for i in client.zrangebyscore(keys.relays, now, "+inf")]
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for relay_id in ids:
        pipe.get(keys.record(relay_id))
    out: List[Dict[str, Any]] = []
    for relay_id, raw in zip(ids, pipe.execute()):
        record: Dict[str, Any] = {"id": relay_id}
        if raw is not None:
            try:
                loaded = json.loads(text(raw) or "{}")
            except ValueError:
                loaded = {}
            if isinstance(loaded, dict):
                record.update(loaded)
                record["id"] = relay_id
        out.append(record)
    return out


def _held(record: Dict[str, Any]) -> int:
    held = record.get("held")
    return len(held) if isinstance(held, dict) else 0


def _running(record: Dict[str, Any]) -> int:
    """The subscribers a relay runs that have not stopped for good (so could take a lease)."""
    try:
        return int(record.get("subscribers") or 0) - int(record.get("stopped") or 0)
    except (TypeError, ValueError):
        return 0


class Fleet:
    """Run the relays of many subscribers in one process, sharing them with the other
    processes of the fleet ``name`` (any machines, one Redis).

    ::

        from signalwire_conversation import Client, SubscriberTokens
        from signalwire_conversation.fanout import Fleet

        tokens = SubscriberTokens()
        fleet = Fleet([Client.for_subscriber(ref, tokens=tokens) for ref in refs],
                      "redis://localhost:6379/0")
        fleet.run()      # blocks; fleet.stop() from another thread or a signal handler

    Arguments: ``clients`` (one :class:`~signalwire_conversation.Client` per subscriber; the
    fleet does not close them), ``redis`` (a URL or a ``redis.Redis``), ``name`` (the fleet:
    processes with the same name share the subscribers), ``lease_ttl``, ``heartbeat_ttl``
    (default: half the lease TTL; renewed every third of it), ``slack`` (default 5 % of the
    share, at least 1), and the :class:`~.relay.Relay` options ``maxlen``, ``seen_ttl``,
    ``buffer_size``. Every process of a fleet should run the same subscribers (the share counts
    the largest list announced).
    """

    def __init__(
        self,
        clients: Sequence["Client"],
        redis: Union[str, Redis],
        *,
        name: str = DEFAULT_FLEET,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        heartbeat_ttl: Optional[float] = None,
        slack: Optional[int] = None,
        maxlen: Optional[int] = DEFAULT_MAXLEN,
        seen_ttl: float = DEFAULT_SEEN_TTL,
        buffer_size: int = 10_000,
        backoff: "tuple[float, float]" = (0.2, 10.0),
    ) -> None:
        if not clients:
            raise ValueError("a fleet needs at least one subscriber's client")
        if not lease_ttl > 0:
            raise ValueError(f"lease_ttl must be positive seconds, got {lease_ttl!r}")
        if heartbeat_ttl is not None and not heartbeat_ttl > 0:
            raise ValueError(f"heartbeat_ttl must be positive seconds, got {heartbeat_ttl!r}")
        if slack is not None and slack < 0:
            raise ValueError(f"slack must be 0 or more, got {slack!r}")
        self.keys = FleetKeys(name)
        self.redis = connect(redis)
        #: This process's id (``host:pid:random``): the lease token of all its relays.
        self.id = new_holder_token()
        self.lease_ttl = float(lease_ttl)
        # Shorter than the lease TTL: a dead process leaves the count before its leases expire,
        # so the survivors' share has grown by the time they can take them.
        self.heartbeat_ttl = float(heartbeat_ttl) if heartbeat_ttl is not None else self.lease_ttl / 2
        self._slack = slack
        self._backoff = backoff
        #: The live relay processes of the fleet, as last counted (this one included).
        self.live_relays = 1
        self._total = len(clients)
        #: Held while a relay decides and takes a lease (the :class:`~.relay.LeaseGate` lock).
        self.lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._held_cache = 0
        self._held_at = 0.0
        self._handing = 0
        self._hungry = False  # another live relay holds fewer than its share and can take more
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.relays: List[Relay] = [
            Relay(
                client, self.redis, lease_ttl=self.lease_ttl, maxlen=maxlen, seen_ttl=seen_ttl,
                buffer_size=buffer_size, backoff=backoff, token=self.id, gate=self, keeper=False,
            )
            for client in clients
        ]

    # -- the share ---------------------------------------------------------------------------

    @property
    def share(self) -> int:
        """``ceil(subscribers / live relays)``: the leases this process aims to hold."""
        return fair_share(self._total, self.live_relays)

    @property
    def subscribers(self) -> int:
        """The subscribers the share is counted on: the largest list a live relay announced."""
        return self._total

    @property
    def slack(self) -> int:
        """How many leases above its share this process takes when nobody else does."""
        return self._slack if self._slack is not None else default_slack(self.share)

    def held(self) -> int:
        """How many leases this process holds now."""
        with self._count_lock:
            now = time.monotonic()
            if now - self._held_at > 0.1:
                self._held_cache = sum(1 for r in self.relays if r.holds_lease)
                self._held_at = now
            return self._held_cache

    def may_take(self) -> Optional[bool]:
        held, share = self.held(), self.share
        if held < share:
            return True
        if held < share + self.slack:
            return None
        return False

    def taken(self) -> None:
        with self._count_lock:
            self._held_cache += 1

    def should_hand_over(self) -> bool:
        if not self._hungry:  # nobody to hand it to: keep it (it may be slack nobody else took)
            return False
        held = self.held()
        with self._count_lock:
            if held - self._handing > self.share:
                self._handing += 1
                return True
            return False

    def handed_over(self) -> None:
        with self._count_lock:
            self._handing -= 1
            self._held_at = 0.0  # count again

    # -- running -----------------------------------------------------------------------------

    def run(self) -> None:
        """Announce this process, run every subscriber's relay until :meth:`stop` (blocking),
        then stop them (each releases its lease) and withdraw the announcement."""
        logger.info(
            "fleet relay %s starting: %d subscriber(s), fleet %r at %s (lease TTL %.1f s)",
            self.id, len(self.relays), self.keys.name, describe(self.redis), self.lease_ttl,
        )
        backoff = Backoff(*self._backoff)
        while not self._stop.is_set():  # announced before any lease is taken
            try:
                self._heartbeat()
                break
            except UNAVAILABLE as exc:
                delay = backoff.next_delay()
                logger.warning("fleet relay %s cannot reach Redis (%s); retrying in %.1f s",
                               self.id, error_text(exc), delay)
                self._stop.wait(delay)
        try:
            for relay in self.relays:
                if not self._stop.is_set():
                    relay.start()
            keeper = threading.Thread(target=self._keep_leases, name="sw-fleet-leases", daemon=True)
            keeper.start()
            period = self.heartbeat_ttl / 3
            last_report = ""
            while not self._stop.wait(period):
                try:
                    self._heartbeat()
                    backoff.reset()
                except UNAVAILABLE as exc:
                    logger.warning("fleet relay %s cannot reach Redis (%s)", self.id, error_text(exc))
                    self._stop.wait(min(backoff.next_delay(), period))
                report = f"{self.held()} of {len(self.relays)} (share {self.share}, {self.live_relays} relay(s))"
                if report != last_report:
                    logger.info("fleet relay %s holds %s", self.id, report)
                    last_report = report
        finally:
            self._shutdown()

    def start(self) -> "Fleet":
        """Run in a background thread (see :meth:`run`); returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("this fleet was already started")
        self._thread = threading.Thread(target=self.run, name="sw-fanout-fleet", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask every relay to stop, without waiting (safe in a signal handler)."""
        self._stop.set()
        for relay in self.relays:
            relay.request_stop()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every relay (each releases its lease) and withdraw. Idempotent."""
        self.request_stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for a fleet started with :meth:`start`; ``True`` when it has ended. Short
        joins, so signal handlers run promptly in the main thread."""
        thread = self._thread
        if thread is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while thread.is_alive():
            remaining = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
            if remaining <= 0:
                return False
            thread.join(remaining)
        return True

    @property
    def errors(self) -> Dict[str, BaseException]:
        """The subscribers (by stream, else index) whose relay stopped with an error."""
        out: Dict[str, BaseException] = {}
        for i, relay in enumerate(self.relays):
            if relay.error is not None:
                out[relay.stream or f"#{i}"] = relay.error
        return out

    def _keep_leases(self) -> None:
        """The one lease keeper of every relay of this process: each relay's turn when it is
        due (renewals every TTL / 3, free leases asked for as the share allows)."""
        due = [(0.0, i) for i in range(len(self.relays))]
        heapq.heapify(due)
        while due and not self._stop.is_set():
            now = time.monotonic()
            if due[0][0] > now:
                self._stop.wait(min(due[0][0] - now, 0.5))
                continue
            ready: List[int] = []
            while due and due[0][0] <= now:
                ready.append(heapq.heappop(due)[1])
            ready = [i for i in ready if self.relays[i].state is not RelayState.STOPPED]  # stopped for good
            renewals = [i for i in ready if self.relays[i].renewable()]
            waits = Relay.renew_together([self.relays[i] for i in renewals], self.redis) if renewals else []
            for i, wait in zip(renewals, waits):
                heapq.heappush(due, (time.monotonic() + wait, i))
            chosen = set(renewals)
            for i in ready:
                if i not in chosen:
                    if self._stop.is_set():
                        return
                    heapq.heappush(due, (time.monotonic() + self.relays[i].lease_step(), i))

    def _shutdown(self) -> None:
        for relay in self.relays:
            relay.request_stop()
        for relay in self.relays:
            relay.stop(timeout=max(5.0, self.lease_ttl))
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrem(self.keys.relays, self.id)
            pipe.delete(self.keys.record(self.id))
            pipe.execute()
        except UNAVAILABLE as exc:
            logger.warning("fleet relay %s could not withdraw (%s); its record expires by itself",
                           self.id, error_text(exc))
        logger.info("fleet relay %s stopped", self.id)

    def _heartbeat(self) -> None:
        """Renew this process's record and count the live ones (and the largest subscriber list)."""
        held = {r.stream: r.lease_since for r in self.relays if r.stream and r.holds_lease}
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "subscribers": len(self.relays),
            "streams": [r.stream for r in self.relays if r.stream],
            "held": held,
            "stopped": sum(1 for r in self.relays if r.state is RelayState.STOPPED),
            "share": self.share,
            "beat": time.time(),
        }
        ttl_ms = max(1, int(self.heartbeat_ttl * 1000))
        now = server_ms(self.redis)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.keys.record(self.id), json.dumps(record), px=ttl_ms)
        pipe.zadd(self.keys.relays, {self.id: now + ttl_ms})
        pipe.zremrangebyscore(self.keys.relays, "-inf", now - 60_000)  # long-gone relays
        pipe.execute()
        records = live_records(self.redis, self.keys)
        live = max(1, len(records) + (0 if any(r["id"] == self.id for r in records) else 1))
        total = max([len(self.relays)] + [int(r.get("subscribers") or 0) for r in records])
        share = fair_share(total, live)
        # Hand leases over only to a relay that can take them: under its share, with running
        # subscribers to spare (not one whose relays stopped for good).
        hungry = any(_held(r) < min(share, _running(r)) for r in records if r["id"] != self.id)
        if live != self.live_relays or total != self._total:
            logger.info("fleet %r: %d live relay(s), %d subscriber(s): share %d",
                        self.keys.name, live, total, share)
        self.live_relays, self._total, self._hungry = live, total, hungry

    def __repr__(self) -> str:
        return f"Fleet(id={self.id!r}, subscribers={len(self.relays)}, held={self.held()}, share={self.share})"
