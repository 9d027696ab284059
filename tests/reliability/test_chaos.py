"""Chaos: messages across 10 conversations while the link drops and REST calls fail.

A seeded ``random.Random`` drives everything, so a run is reproducible: which conversation
each message goes to, who sends it (the peer, injected by the emulator; or the listening user
herself, over REST through ``send_message``), when the emulator drops the websocket (every
100-500 messages) and which REST calls fail with 429/503 (with and without ``Retry-After``).

Asserted: every message reaches the callback exactly once, in order per conversation; no
message is stored twice by the emulator (``send_message`` never duplicated). Reported: drops
survived, messages delivered, REST faults injected, gap fills.
"""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from typing import Any, Callable, DefaultDict, Dict, List

import pytest

from signalwire_conversation import Client, ConversationMessageEvent
from signalwire_conversation.testing import Emulator

from .conftest import SCALE

CONVERSATIONS = 10
LISTENER = {"backoff_initial": 0.05, "backoff_max": 0.5, "ping_timeout": 10.0}


FULL = max(1, int(5000 * SCALE))
CASES = [
    pytest.param(1000, 8, id="ci-1000-seed8"),
    *[pytest.param(FULL, seed, id=f"full-{FULL}-seed{seed}", marks=pytest.mark.slow) for seed in (8, 23, 1337)],
]


@pytest.mark.parametrize("total,seed", CASES)
def test_chaos_exactly_once_in_order(total: int, seed: int, report: Callable[[str], None]) -> None:
    rnd = random.Random(seed)
    with Emulator(ping_interval=2.0) as emu:
        alice = emu.add_subscriber("alice")
        peers = [emu.add_subscriber(f"peer{i}") for i in range(CONVERSATIONS)]
        groups = {emu.group_id(p, alice.address_id): i for i, p in enumerate(peers)}

        lock = threading.Lock()
        got: DefaultDict[int, List[str]] = defaultdict(list)
        seen_ids: Dict[str, int] = defaultdict(int)
        errors: List[BaseException] = []
        delivered = threading.Event()
        count = [0]

        def on_message(event: ConversationMessageEvent) -> None:
            conv = groups.get(event.conversation_id or "")
            if conv is None:
                errors.append(AssertionError(f"event for an unknown conversation: {event!r}"))
                return
            with lock:
                got[conv].append(event.text or "")
                if event.id:
                    seen_ids[event.id] += 1
                count[0] += 1
                if event.text == "sentinel":
                    delivered.set()

        with Client(alice.token, base_url=emu.base_url, relay_url=emu.relay_url,
                    on_error=lambda exc, ev: errors.append(exc), listener_options=LISTENER) as client:
            sub = client.conversation.subscribe(on_message, timeout=10)
            expected: DefaultDict[int, List[str]] = defaultdict(list)
            drops = faults = rest_sends = 0
            next_drop = rnd.randint(100, 500)
            for n in range(total):
                conv = rnd.randrange(CONVERSATIONS)
                text = f"c{conv}-{n}"
                expected[conv].append(text)
                if rnd.random() < 0.2:  # alice sends it herself, over REST, through faults
                    if rnd.random() < 0.3:
                        status = rnd.choice([429, 503])
                        emu.fail_next(status, times=rnd.choice([1, 2]),
                                      # mostly a short Retry-After; sometimes none (backoff)
                                      retry_after=None if rnd.random() < 0.04 else rnd.choice([0, 0.02, 0.05]),
                                      method="POST", path=r"^/api/fabric/messages$")
                        faults += 1
                    client.conversation.send_message(peers[conv].address_id, text)
                    rest_sends += 1
                else:
                    emu.send_message(peers[conv], alice.address_id, text)
                if n + 1 == next_drop:
                    # the gap fill after this drop meets a 429/503 first (and retries)
                    if rnd.random() < 0.5:
                        emu.fail_next(rnd.choice([429, 503]), times=1, retry_after=0,
                                      method="GET", path=r"^/api/fabric/messages$")
                        faults += 1
                    drops += emu.drop_connections(alice) > 0
                    next_drop = n + 1 + rnd.randint(100, 500)
            # a last drop and a sentinel: anything duplicated by the final gap fill shows up
            # before the sentinel (the dispatcher delivers in order)
            emu.drop_connections(alice)
            drops += 1
            sentinel_conv = 0
            emu.send_message(peers[sentinel_conv], alice.address_id, "sentinel")
            expected[sentinel_conv].append("sentinel")
            assert delivered.wait(60 + total / 50), (
                f"delivered {count[0]} of {total + 1}; stats {client._listener.stats}")
            stats = dict(client._listener.stats)
            sub.unsubscribe()

        stored = [m.get("text") for m in emu.messages()]

    assert not errors, errors[:5]
    dupes = {k: v for k, v in seen_ids.items() if v > 1}
    assert not dupes, f"{len(dupes)} message(s) delivered more than once"
    for conv in range(CONVERSATIONS):
        assert got[conv] == expected[conv], (
            f"conversation {conv}: {len(got[conv])} delivered vs {len(expected[conv])} sent; "
            f"first difference at {_first_diff(got[conv], expected[conv])}")
    assert len(stored) == len(set(stored)) == total + 1, "a message was stored twice (or lost)"
    report(f"{total} messages in {CONVERSATIONS} conversations, seed {seed}: {count[0]} delivered "
           f"exactly once in order; {drops} websocket drops survived; {faults} REST fault rules "
           f"(429/503) injected, {rest_sends} sends over REST; listener stats: "
           f"connects={stats['connects']} resumes={stats['resumes']} gap_fills={stats['gap_fills']} "
           f"recovered={stats['recovered']} duplicates_dropped={stats['duplicates']} "
           f"gap_fill_failures={stats['gap_fill_failures']}")


def _first_diff(a: List[Any], b: List[Any]) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"index {i}: got {x!r}, expected {y!r}"
    return f"index {min(len(a), len(b))} (one list is a prefix of the other)"
