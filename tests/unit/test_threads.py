"""One Client shared by 16 threads at once: correct results, one join per address."""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Dict, List, Tuple
from urllib.parse import urlsplit

import responses

from signalwire_conversation import Client

from .helpers import BASE, ME, TOKEN

THREADS = 16


def test_sixteen_threads_share_one_client(rsps: responses.RequestsMock) -> None:
    lock = threading.Lock()
    joins: Dict[str, int] = {}
    info_calls: List[int] = []
    gate = threading.Event()

    def info(request: Any) -> Tuple[int, Dict[str, str], str]:
        gate.wait(5)  # hold the first lookups so the threads pile up on the cache miss
        with lock:
            info_calls.append(1)
        return 200, {}, json.dumps({"id": "s", "fabric_addresses": [{"id": ME}]})

    def join(request: Any) -> Tuple[int, Dict[str, str], str]:
        body = json.loads(request.body)
        address = body["fabric_address_ids"][0]
        with lock:
            joins[address] = joins.get(address, 0) + 1
        return 200, {}, json.dumps({"group_id": f"g-{address}"})

    def messages(request: Any) -> Tuple[int, Dict[str, str], str]:
        group = urlsplit(request.url).path.split("/")[4]
        data = [{"id": f"{group}-{i}", "group_id": group, "ts": 100 - i} for i in range(3)]
        return 200, {}, json.dumps({"data": data, "links": {}})

    def send(request: Any) -> Tuple[int, Dict[str, str], str]:
        body = json.loads(request.body)
        return 200, {}, json.dumps({"id": f"sent-{body['text']}", "group_id": body["group_id"]})

    rsps.add_callback("GET", f"{BASE}/api/fabric/subscriber/info", callback=info)
    rsps.add_callback("POST", f"{BASE}/api/fabric/conversations/join", callback=join)
    rsps.add_callback("GET", re.compile(rf"{BASE}/api/fabric/conversations/[^/]+/messages"), callback=messages)
    rsps.add_callback("POST", f"{BASE}/api/fabric/messages", callback=send)

    client = Client(TOKEN)
    barrier = threading.Barrier(THREADS)
    results: Dict[int, Any] = {}
    errors: List[BaseException] = []

    def worker(n: int) -> None:
        try:
            address = f"addr-{n % 4}"  # 4 threads per address: racing on the same cache miss
            barrier.wait(5)
            if n == 0:
                gate.set()
            page = client.conversation.get_conversation_messages(address)
            sent = client.conversation.send_message(address, f"t{n}")
            results[n] = ([m.id for m in page], sent.id, sent.conversation_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    for n in range(THREADS):
        group = f"g-addr-{n % 4}"
        assert results[n] == ([f"{group}-0", f"{group}-1", f"{group}-2"], f"sent-t{n}", group)
    assert joins == {f"addr-{i}": 1 for i in range(4)}  # no duplicate join under the race
    assert len(info_calls) == 1  # own address looked up once
    client.close()
