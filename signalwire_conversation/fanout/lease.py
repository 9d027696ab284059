"""A leadership lease in Redis: ``SET key token NX PX ttl``, renewed and released by token.

Exactly one holder at a time, cluster-wide: whoever set the key with its own random token. The
holder renews it well before the TTL runs out; renewal and release are Lua scripts that check
the token first, so a process that lost the lease (paused, partitioned) can never extend or
delete the new holder's lease. The stream append script checks the same key and token
(fencing), see :mod:`.stream`.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import List, Optional, Sequence

from ._redis import Redis, text

__all__ = ["Lease", "new_holder_token"]

# Take the lease when free, or extend it when we already hold it. Returns 1, or -PTTL (ms) of
# somebody else's lease (so a standby can wait exactly until it expires).
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 1 then ttl = 1 end
return -ttl
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def new_holder_token() -> str:
    """A token naming this process uniquely: ``host:pid:random`` (readable in ``GET key``)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Lease:
    """One process's claim on the lease ``key``.

    ``acquire()`` and ``renew()`` return whether this holder has the lease now; ``valid_until``
    is the monotonic time up to which that is certain (the TTL counted from *before* the
    request was sent, so a slow reply only shortens it). Not thread-safe: one thread drives it.
    """

    def __init__(self, client: Redis, key: str, ttl: float, *, token: Optional[str] = None) -> None:
        if not ttl > 0:
            raise ValueError(f"lease ttl must be positive seconds, got {ttl!r}")
        self.client = client
        self.key = key
        self.ttl = float(ttl)
        self.token = token or new_holder_token()
        self.valid_until = 0.0
        #: After a failed ``acquire()``: seconds until the other holder's lease expires.
        self.other_remaining: Optional[float] = None
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    def held(self, now: Optional[float] = None) -> bool:
        """Whether the lease is certainly still ours (without asking Redis)."""
        return (time.monotonic() if now is None else now) < self.valid_until

    def acquire(self) -> bool:
        """Take the lease if it is free (or extend it if ours). Raises on a Redis error."""
        started = time.monotonic()
        result = int(self._acquire(keys=[self.key], args=[self.token, self.ttl_ms]))
        if result == 1:
            self.valid_until = started + self.ttl
            self.other_remaining = None
            return True
        self.valid_until = 0.0
        self.other_remaining = -result / 1000.0
        return False

    def renew(self) -> bool:
        """Extend our lease; ``False`` when somebody else holds it (or nobody does)."""
        started = time.monotonic()
        if int(self._renew(keys=[self.key], args=[self.token, self.ttl_ms])) == 1:
            self.valid_until = started + self.ttl
            return True
        self.valid_until = 0.0
        return False

    @staticmethod
    def renew_many(leases: "Sequence[Lease]", client: Redis) -> List[bool]:
        """Renew many leases in one round trip (a pipeline of the renew script); per lease,
        whether it is still ours. Raises on a Redis error (then none is known renewed)."""
        if not leases:
            return []
        started = time.monotonic()
        pipe = client.pipeline(transaction=False)
        for lease in leases:
            lease._renew(keys=[lease.key], args=[lease.token, lease.ttl_ms], client=pipe)
        out: List[bool] = []
        for lease, result in zip(leases, pipe.execute()):
            ok = int(result) == 1
            lease.valid_until = started + lease.ttl if ok else 0.0
            out.append(ok)
        return out

    def release(self) -> bool:
        """Give the lease up if it is ours (so a standby takes over at once)."""
        self.valid_until = 0.0
        return int(self._release(keys=[self.key], args=[self.token])) == 1

    def holder(self) -> Optional[str]:
        """The token of the current holder, or ``None``."""
        return text(self.client.get(self.key))

    def __repr__(self) -> str:
        return f"Lease(key={self.key!r}, ttl={self.ttl}, token={self.token!r})"
