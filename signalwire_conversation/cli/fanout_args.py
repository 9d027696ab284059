"""The arguments of ``relay`` and ``consume`` (run by :mod:`signalwire_conversation.fanout`).

They live here, apart from the commands, so that ``relay --help`` and ``consume --help`` work
without the ``redis`` extra: the fan-out package needs ``redis`` as soon as it is imported.
"""

from __future__ import annotations

import argparse
import os
from typing import Optional

from ._args import non_negative_int, positive_int, positive_seconds
from ._client import add_connection_arguments

__all__ = ["add_relay_arguments", "add_relay_status_arguments", "add_consume_arguments", "ENV_REDIS_URL"]

ENV_REDIS_URL = "SIGNALWIRE_REDIS_URL"

# The fan-out's defaults (fanout.relay.DEFAULT_LEASE_TTL, fanout.stream.DEFAULT_MAXLEN and
# DEFAULT_SEEN_TTL), repeated so that --help needs no redis; a test checks that they match.
DEFAULT_LEASE_TTL = 10.0
DEFAULT_MAXLEN = 100_000
DEFAULT_SEEN_TTL = 24 * 3600.0
DEFAULT_FLEET = "default"


def _add_connection(
    parser: argparse.ArgumentParser, *, token_help: Optional[str] = None, subscriber: bool = True
) -> None:
    parser.add_argument(
        "--redis",
        default=os.environ.get(ENV_REDIS_URL),
        metavar="URL",
        help=f"Redis URL, e.g. redis://localhost:6379/0 (default: ${ENV_REDIS_URL})",
    )
    parser.add_argument("--stream", metavar="NAME", help="stream name (default: signalwire:conversation:{<own address id>})")
    group = parser.add_argument_group("SignalWire")
    if token_help is None:
        add_connection_arguments(group, subscriber=subscriber)
    else:
        add_connection_arguments(group, token_help=token_help, subscriber=subscriber)
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="what the fan-out logs on stderr (default: info)",
    )


def add_relay_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``relay``."""
    parser.description = (
        "Run one listener for a subscriber and append every new message to a Redis stream. Run "
        "several (same token, any machines): one is active, the others stand by and take over "
        "within about --lease-ttl seconds. SIGINT/SIGTERM stop it cleanly, releasing the lease."
    )
    _add_connection(parser, subscriber=False)  # its own --subscriber is repeatable (a fleet)
    parser.add_argument(
        "--lease-ttl", type=positive_seconds, default=DEFAULT_LEASE_TTL, metavar="SECONDS",
        help=f"lease lifetime; a dead relay is replaced within about this long (default: {DEFAULT_LEASE_TTL:g})",
    )
    parser.add_argument(
        "--maxlen", type=non_negative_int, default=DEFAULT_MAXLEN, metavar="N",
        help=f"approximate cap on the stream length, 0 for none (default: {DEFAULT_MAXLEN})",
    )
    parser.add_argument(
        "--seen-ttl", type=positive_seconds, default=DEFAULT_SEEN_TTL, metavar="SECONDS",
        help=f"how long a message id is remembered to drop repeats (default: {DEFAULT_SEEN_TTL:g})",
    )
    parser.add_argument(
        "--buffer-size", type=positive_int, default=10_000, metavar="N",
        help="live messages held while Redis is slow or down; beyond, they are recovered over REST later",
    )
    fleet = parser.add_argument_group(
        "many subscribers (a fleet)",
        "Relay many subscribers in this process, sharing them fairly with the other relays of the "
        "same --fleet (any machines): each takes about subscribers / live relays of the leases; a "
        "dead relay's subscribers move to the others within about --lease-ttl.",
    )
    fleet.add_argument(
        "--subscriber", action="append", default=[], metavar="REF",
        help="a subscriber (reference or email) whose token is minted from the project credentials "
        "(SIGNALWIRE_PROJECT_ID, SIGNALWIRE_API_TOKEN, SIGNALWIRE_SPACE); repeatable",
    )
    fleet.add_argument(
        "--subscribers-file", metavar="PATH",
        help="subscriber references, one a line (blank lines and # comments ignored), tokens minted as for --subscriber",
    )
    fleet.add_argument(
        "--tokens-file", metavar="PATH",
        help="subscriber access tokens, one a line, for setups without project credentials",
    )
    fleet.add_argument(
        "--workers", type=positive_int, default=4, metavar="N",
        help="threads of the realtime hub that this process's subscribers share for callbacks, gap "
        "fills and token renewals (default: 4); the hub's I/O and timer threads come on top",
    )
    fleet.add_argument(
        "--fleet", default=DEFAULT_FLEET, metavar="NAME",
        help=f"relays with the same fleet name share the subscribers (default: {DEFAULT_FLEET})",
    )


def add_relay_status_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``relay-status``."""
    parser.description = (
        "Show a relay fleet as Redis sees it: the live relays (id host:pid:random, subscribers, "
        "leases held), then every subscriber's stream: who holds its lease and since when, how "
        "long the lease has left, the stream's length, and how old its checkpoint is (the newest "
        "message appended)."
    )
    parser.add_argument(
        "--redis",
        default=os.environ.get(ENV_REDIS_URL),
        metavar="URL",
        help=f"Redis URL, e.g. redis://localhost:6379/0 (default: ${ENV_REDIS_URL})",
    )
    parser.add_argument(
        "--fleet", default=DEFAULT_FLEET, metavar="NAME", help=f"the fleet to show (default: {DEFAULT_FLEET})"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document instead of the tables")


def add_consume_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``consume``."""
    parser.description = (
        "Read a relay's stream as one consumer of a consumer group and print each event as a "
        "JSON line, acknowledging it once printed (at-least-once). Entries left unacknowledged "
        "by a dead consumer are claimed after --claim-idle seconds."
    )
    _add_connection(
        parser,
        token_help="subscriber access token, only to find the default stream name (default: $SIGNALWIRE_TOKEN)",
    )
    parser.add_argument("--group", required=True, metavar="NAME", help="consumer group (created if missing)")
    parser.add_argument("--consumer", metavar="NAME", help="this consumer's name (default: host:pid)")
    parser.add_argument(
        "--claim-idle", type=positive_seconds, default=30.0, metavar="SECONDS",
        help="take over entries a dead consumer left pending this long (default: 30)",
    )
    parser.add_argument("--batch", type=positive_int, default=100, metavar="N", help="entries per read (default: 100)")
    parser.add_argument(
        "--from-start", dest="start_id", action="store_const", const="0", default="0",
        help="a new group reads every entry still in the stream (the default)",
    )
    parser.add_argument(
        "--from-now", dest="start_id", action="store_const", const="$",
        help="a new group reads only entries appended from now on",
    )
    parser.add_argument("-n", "--limit", type=positive_int, metavar="N", help="exit after N messages")
    parser.add_argument(
        "--envelope", action="store_true",
        help='print {"entry_id", "stream", "consumer", "claimed", "event"} instead of the bare event',
    )


