"""``--seed demo``: a few subscribers, conversations and a few hundred messages."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Dict, List, Sequence, Tuple

from ._state import Subscriber

if TYPE_CHECKING:
    from ._emulator import Emulator

__all__ = ["seed_demo", "DEMO_SUBSCRIBERS"]

DEMO_SUBSCRIBERS: Tuple[Tuple[str, str], ...] = (
    ("alice", "Alice Moreau"),
    ("bob", "Bob Okafor"),
    ("carol", "Carol Lindqvist"),
    ("dave", "Dave Tanaka"),
)

_LINES = (
    "Morning! Did the deploy go out?",
    "Yes, all green since 9:40.",
    "Can you look at the retry numbers later?",
    "Sure, after standup.",
    "The dashboard looks off for EU.",
    "Cache warm-up, it settles in a few minutes.",
    "Lunch at 12:30?",
    "Sounds good.",
    "Pushed the fix, review when you can.",
    "Approved, nice catch on the timeout.",
    "Call at 3 still on?",
    "Moved to 3:30, sorry.",
)

#: (members, messages): who talks, and how much.
_PLAN: Tuple[Tuple[Sequence[str], int], ...] = (
    (("alice", "bob"), 240),
    (("alice", "carol"), 45),
    (("bob", "carol"), 20),
    (("alice", "bob", "carol"), 30),
    (("dave", "alice"), 5),
)


def seed_demo(emu: "Emulator", *, now: float = 0.0) -> Dict[str, Subscriber]:
    """Create the demo subscribers (alice, bob, carol, dave) and their conversations, with
    messages spread over the last two days (340 in all; alice–bob has 240, so pagination
    shows). Subscribers that already exist are reused. Returns them by name."""
    subs: Dict[str, Subscriber] = {}
    for name, display in DEMO_SUBSCRIBERS:
        try:
            subs[name] = emu.subscriber(name)
        except KeyError:
            subs[name] = emu.add_subscriber(name, token_ttl=7 * 24 * 3600, display_name=display)
    end = now or time.time()
    start = end - 2 * 24 * 3600
    for members, count in _PLAN:
        people: List[Subscriber] = [subs[m] for m in members]
        group_id = emu.join(people[0], [p.address_id for p in people[1:]])
        step = (end - start) / (count + 1)
        offset = hash(members) % 97  # different conversations interleave in time
        for i in range(count):
            sender = people[i % len(people)]
            emu.send_message(sender, group_id, f"{_LINES[(i + offset) % len(_LINES)]} ({i + 1})",
                             ts=start + step * (i + 1) + offset)
    return subs
