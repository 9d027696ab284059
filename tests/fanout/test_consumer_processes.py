"""Three consumer processes in one group, one SIGKILLed mid-stream: the survivors claim and
acknowledge what it left, and every entry is handled exactly once by the survivors unless the
dead consumer had acknowledged it."""

from __future__ import annotations

import fcntl
import json
import sys
from typing import Any, List, Set

import pytest

from signalwire_conversation.fanout import StreamWriter
from signalwire_conversation.models import ConversationMessageEvent

from .conftest import wait_until
from .procs import Proc

pytestmark = [pytest.mark.redis, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses F_SETPIPE_SZ (Linux)")]

STREAM = "signalwire:conversation:procs"
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def publish(r: Any, start: int, stop: int) -> None:
    writer = StreamWriter(r, STREAM, token="test", seen_ttl=600)
    for first in range(start, stop, 25):
        writer.append([
            ConversationMessageEvent(
                id=f"m{i}", conversation_id="g1", user_id="u1", ts=1_700_000_000.0 + i,
                type="message", subtype="chat", text=f"{i} " + "x" * 1500,
            )
            for i in range(first, min(first + 25, stop))
        ])


def consumer(url: str, name: str, *, read_stdout: bool = True) -> Proc:
    return Proc(
        ["consume", "--redis", url, "--stream", STREAM, "--group", "workers", "--consumer", name,
         "--claim-idle", "4", "--batch", "10", "--envelope", "--log-level", "info"],
        read_stdout=read_stdout,
    )


def entries_of(lines: List[str]) -> List[str]:
    out = []
    for line in lines:
        try:
            out.append(json.loads(line)["entry_id"])
        except ValueError:
            pass  # a line cut short by the kill
    return out


def run(r: Any, redis_url: str, total: int) -> None:
    r.set(f"{STREAM}:lease", "test", px=600_000)
    r.xgroup_create(STREAM, "workers", id="0", mkstream=True)
    victim = consumer(redis_url, "victim", read_stdout=False)
    # A 4 KiB pipe nobody reads: the victim blocks printing its second entry, entries in hand.
    fcntl.fcntl(victim.process.stdout.fileno(), F_SETPIPE_SZ, 4096)
    survivors = [consumer(redis_url, "s1"), consumer(redis_url, "s2")]
    procs = [victim, *survivors]
    try:
        for p in procs:
            p.wait_for_line("reading", 15)
        publish(r, 0, total // 2)

        def victim_blocked() -> bool:
            info = {c["name"]: c for c in r.xinfo_consumers(STREAM, "workers")}
            v = info.get("victim")
            return bool(v) and v["pending"] > 0 and v["idle"] > 2500

        wait_until(victim_blocked, 20, "the victim never held entries while stuck")
        pending_at_kill: Set[str] = {
            p["message_id"] for p in r.xpending_range(STREAM, "workers", "-", "+", 1000, consumername="victim")
        }
        victim.kill()
        printed_by_victim = entries_of(victim.process.stdout.read().decode("utf-8", "replace").splitlines())
        publish(r, total // 2, total)  # the stream goes on after the kill

        all_ids = [e for e, _ in r.xrange(STREAM)]
        assert len(all_ids) == total
        acked_by_victim = set(printed_by_victim) - pending_at_kill
        expected = set(all_ids) - acked_by_victim

        def survivors_done() -> bool:
            got = set(entries_of(survivors[0].stdout + survivors[1].stdout))
            return expected <= got

        wait_until(survivors_done, 40, "the survivors did not handle every entry the victim left")
        wait_until(lambda: r.xpending(STREAM, "workers")["pending"] == 0, 10, "entries left unacknowledged")
        handled = entries_of(survivors[0].stdout) + entries_of(survivors[1].stdout)
        assert sorted(handled) == sorted(expected), "an entry was handled twice, or one the victim had acked"
        assert pending_at_kill <= set(handled)
        claimed = [json.loads(line)["entry_id"] for s in survivors for line in s.stdout if '"claimed": true' in line]
        assert pending_at_kill <= set(claimed)
        for s in survivors:
            assert "Traceback" not in s.text()
        for s in survivors:
            assert s.terminate() == 0
    finally:
        for p in procs:
            p.kill()


def test_three_consumers_one_killed(r: Any, redis_server: Any) -> None:
    run(r, redis_server.url, 400)


@pytest.mark.slow
def test_three_consumers_one_killed_full_size(r: Any, redis_server: Any) -> None:
    run(r, redis_server.url, 5000)
