"""The server on every supported websockets (13, 14, 15, 17): no private attribute is assumed."""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any, List

import pytest
import requests
import websocket
import websockets

from signalwire_conversation.testing import Emulator
from signalwire_conversation.testing._server import _release_handler_thread


def test_server_threads_raise_nothing_and_stop_is_prompt(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    raised: List[Any] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args))
    caplog.set_level(logging.DEBUG, logger="signalwire_conversation.testing")
    with Emulator(ping_interval=None) as emu:
        alice = emu.add_subscriber("alice")
        headers = {"Authorization": f"Bearer {alice.token}"}
        for keep_alive in (True, False):  # HTTP connections end in the emulator's own handler
            with requests.Session() as session:
                if not keep_alive:
                    session.headers["Connection"] = "close"
                for _ in range(3):
                    r = session.get(emu.base_url + "/api/fabric/subscriber/info", headers=headers, timeout=5)
                    assert r.status_code == 200
        ws = websocket.create_connection(emu.relay_url, timeout=5)  # one left to websockets
        ws.send(json.dumps({"jsonrpc": "2.0", "id": "1", "method": "signalwire.connect",
                            "params": {"authentication": {"jwt_token": alice.token}}}))
        assert "result" in json.loads(ws.recv())
        emu.wait_for(lambda: any(c.authenticated for c in emu.connections))
    ws.close()
    assert not raised, [f"{a.thread}: {a.exc_type.__name__}: {a.exc_value}" for a in raised]
    assert not [r for r in caplog.records if "did not stop" in r.getMessage()], websockets.__version__


class _Bare:
    """websockets 13-15: no handler bookkeeping at all."""


class _ThreadsOnly:
    def __init__(self) -> None:
        self.handler_threads = {threading.current_thread()}


class _ThreadsAndLock(_ThreadsOnly):
    """websockets >= 16."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()


@pytest.mark.parametrize("server", [None, _Bare(), _ThreadsOnly(), _ThreadsAndLock()], ids=repr)
def test_release_handler_thread_copes_with_every_shape(server: Any) -> None:
    _release_handler_thread(server)  # no AttributeError, whatever the shape
    assert threading.current_thread() not in getattr(server, "handler_threads", set())


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_start_stop_leaks_no_file_descriptors() -> None:
    def count() -> int:
        return len(os.listdir("/proc/self/fd"))

    with Emulator(ping_interval=None):
        pass
    before = count()
    for _ in range(20):  # websockets 13-15 left a pipe (2 fds) behind per server
        with Emulator(ping_interval=None):
            pass
    assert count() - before < 10, websockets.__version__
