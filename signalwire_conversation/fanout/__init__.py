"""Scale out on Redis: one listener per subscriber, cluster-wide, fanned out on a Redis Stream.

* :class:`Relay` holds a :class:`~signalwire_conversation.Client`, and while it holds the lease
  (one active relay per stream, any number on standby) appends every new message to the stream
  ``signalwire:conversation:<own address id>``: fenced by the lease, de-duplicated by message
  id, gap-filled over REST after a failover.
* :class:`StreamConsumer` reads that stream as one consumer of a consumer group (at-least-once,
  with ``XAUTOCLAIM`` of entries a dead consumer left behind), yielding decoded
  :class:`~signalwire_conversation.ConversationMessageEvent` objects with their entry ids.

Needs the ``redis`` extra: ``pip install "signalwire-conversation[redis]"``. See the
"Scaling out" guide (``docs/scaling-out.md``).
"""

from ._redis import INSTALL_HINT  # first: a missing redis package fails here, clearly
from .commands import add_consume_arguments, add_relay_arguments, run_consume, run_relay
from .consumer import StreamConsumer, StreamMessage
from .lease import Lease
from .relay import DEFAULT_LEASE_TTL, Relay, RelayState, default_stream_name
from .stream import DEFAULT_MAXLEN, DEFAULT_SEEN_TTL, Checkpoint, Fenced, StreamKeys, StreamWriter

__all__ = [
    "Relay",
    "RelayState",
    "StreamConsumer",
    "StreamMessage",
    "StreamWriter",
    "StreamKeys",
    "Checkpoint",
    "Fenced",
    "Lease",
    "default_stream_name",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_MAXLEN",
    "DEFAULT_SEEN_TTL",
    "INSTALL_HINT",
    "add_relay_arguments",
    "run_relay",
    "add_consume_arguments",
    "run_consume",
]
