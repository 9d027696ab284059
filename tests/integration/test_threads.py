"""One Client shared by 16 threads against the emulator: mixed sends and reads."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Dict, List

from signalwire_conversation import SentMessage
from signalwire_conversation.testing import Emulator, Subscriber

from .conftest import WAIT, ClientFactory

THREADS = 16
SENDS = 10
JOIN = "^/api/fabric/conversations/join$"
INFO = "^/api/fabric/subscriber/info$"


def test_one_client_shared_by_16_threads(
    emu: Emulator, alice: Subscriber, bob: Subscriber, carol: Subscriber, make_client: ClientFactory
) -> None:
    dave = emu.add_subscriber("dave")  # a conversation nobody writes to during the test
    emu.send_messages(dave, alice.address_id, [f"seed {i}" for i in range(120)])
    seeded = [m["id"] for m in emu.messages(emu.group_id(alice, dave.address_id))]
    client = make_client(alice)
    peers = {"bob": bob.address_id, "carol": carol.address_id}
    start = threading.Barrier(THREADS)
    sent: Dict[int, List[SentMessage]] = {}
    reads: Dict[int, List[str]] = {}
    errors: List[BaseException] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            start.wait(WAIT)
            peer = "bob" if n % 2 == 0 else "carol"
            mine: List[SentMessage] = []
            seen: List[str] = []
            for i in range(SENDS):
                mine.append(client.conversation.send_message(peers[peer], f"t{n}-{i}", metadata={"n": n, "i": i}))
                if i % 3 == 0:
                    # a read that pages (page_size 25) over a history nobody changes meanwhile
                    page = client.conversation.get_conversation_messages(dave.address_id, page_size=25)
                    seen = [m.id or "" for m in page]
            with lock:
                sent[n] = mine
                reads[n] = seen
        except BaseException as exc:  # noqa: B902 - reported below
            with lock:
                errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(THREADS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30.0)
    assert not any(w.is_alive() for w in workers), "a worker did not finish"
    assert errors == []

    # every send stored once, with the id the caller got back
    group = {"bob": emu.group_id(alice, bob.address_id), "carol": emu.group_id(alice, carol.address_id)}
    stored = [m for m in emu.messages() if m["text"].startswith("t")]
    assert len(stored) == THREADS * SENDS
    texts = Counter(m["text"] for m in stored)
    assert set(texts.values()) == {1}
    assert set(texts) == {f"t{n}-{i}" for n in range(THREADS) for i in range(SENDS)}
    by_id = {m["id"]: m for m in stored}
    for n, mine in sent.items():
        peer = "bob" if n % 2 == 0 else "carol"
        assert [s.text for s in mine] == [f"t{n}-{i}" for i in range(SENDS)]
        for s in mine:
            row = by_id[s.id]
            assert row["text"] == s.text and row["group_id"] == s.conversation_id == group[peer]
            assert row["from_fabric_address_id"] == s.user_id == alice.address_id
            assert row["metadata"]["n"] == n
    # each thread's own sends are in its order in the store (newest first)
    for n in range(THREADS):
        order = [m["text"] for m in reversed(stored) if m["text"].startswith(f"t{n}-")]
        assert order == [f"t{n}-{i}" for i in range(SENDS)]
    # every read saw exactly the seeded history, newest first
    assert len(reads) == THREADS and all(seen == seeded for seen in reads.values())
    # the lazy join and the info lookup stayed single-flight under contention
    assert emu.request_count("POST", JOIN) == 3  # bob, carol, dave
    assert emu.request_count("GET", INFO) == 1
