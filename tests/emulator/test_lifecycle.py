"""Start/stop, TLS, the CLI entry points, the demo seed and the pytest plugin."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests
import websocket

from signalwire_conversation.testing import Emulator, add_emulator_arguments, run_emulator, seed_demo

from .conftest import Relay

ROOT = Path(__file__).resolve().parents[2]


def _threads() -> int:
    return threading.active_count()


def test_start_stop_fifty_times_leaks_no_threads_or_ports() -> None:
    before = _threads()
    ports = []
    for i in range(50):
        with Emulator(ping_interval=0.05) as emu:
            alice = emu.add_subscriber("alice")
            if i % 10 == 0:  # with live traffic now and then
                r = requests.get(emu.base_url + "/api/fabric/subscriber/info",
                                 headers={"Authorization": f"Bearer {alice.token}"}, timeout=5)
                assert r.status_code == 200
                ws = websocket.create_connection(emu.relay_url, timeout=5)
                ws.send(json.dumps({"jsonrpc": "2.0", "id": "1", "method": "signalwire.connect",
                                    "params": {"authentication": {"jwt_token": alice.token}}}))
                assert "result" in json.loads(ws.recv())
                # left open on purpose: stop() must cope
            ports.append(emu.port)
        assert not emu.running
    deadline = time.monotonic() + 5
    while _threads() > before and time.monotonic() < deadline:  # daemon readers wind down
        time.sleep(0.02)
    assert _threads() <= before, [t.name for t in threading.enumerate()]
    for port in ports[-5:]:  # the ports are free again
        with socket.create_server(("127.0.0.1", port)):
            pass


def test_start_is_idempotent_and_urls_need_a_start() -> None:
    emu = Emulator()
    with pytest.raises(RuntimeError):
        emu.base_url
    with pytest.raises(RuntimeError):
        emu.add_subscriber("alice")
    assert emu.start() is emu and emu.start() is emu
    port = emu.port
    assert emu.base_url == f"http://127.0.0.1:{port}" and emu.relay_url == f"ws://127.0.0.1:{port}"
    assert repr(emu) == f"<Emulator http://127.0.0.1:{port}>"
    emu.stop()
    emu.stop()
    assert repr(emu) == "<Emulator stopped>"


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        emu = Emulator("::1").start()
    except OSError:
        pytest.skip("no IPv6 loopback")
    with emu:
        alice = emu.add_subscriber("alice")
        assert emu.base_url.startswith("http://[::1]:")
        r = requests.get(emu.base_url + "/api/fabric/subscriber/info",
                         headers={"Authorization": f"Bearer {alice.token}"}, timeout=5)
        assert r.status_code == 200


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    yield server, str(bundle), cert, ca


def test_tls_serves_https_and_wss(tls: tuple) -> None:
    server, bundle, _, _ = tls
    with Emulator(ssl_context=server, ping_interval=None) as emu:
        alice = emu.add_subscriber("alice")
        bob = emu.add_subscriber("bob")
        assert emu.base_url.startswith("https://") and emu.relay_url.startswith("wss://")
        s = requests.Session()  # verify per request: a session's verify loses to REQUESTS_CA_BUNDLE
        s.headers["Authorization"] = f"Bearer {alice.token}"
        for _ in range(3):  # keep-alive over TLS
            assert s.get(emu.base_url + "/api/fabric/subscriber/info", timeout=5, verify=bundle).status_code == 200
        r = s.post(emu.base_url + "/api/fabric/conversations/join", json={"fabric_address_ids": [bob.address_id]},
                   timeout=5, verify=bundle)
        assert r.status_code == 200
        relay = Relay(emu.relay_url, sslopt={"ca_certs": bundle})
        try:
            assert "result" in relay.connect(alice.token)
            emu.send_message(bob, alice.address_id, "over wss")
            assert relay.event()["params"]["params"]["text"] == "over wss"
        finally:
            relay.close()
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(emu.base_url + "/api/fabric/subscriber/info", timeout=5)  # untrusted CA
        s.close()


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_emulator_arguments(parser)
    return parser.parse_args(list(argv))


def test_run_emulator_prints_json_and_stops_on_request() -> None:
    out = io.StringIO()
    stop = threading.Event()
    result: list = []
    args = _args("--json", "--seed", "demo", "--subscriber", "zoe", "--ping-interval", "0")
    t = threading.Thread(target=lambda: result.append(run_emulator(args, out=out, stop=stop)))
    t.start()
    deadline = time.monotonic() + 10
    while not out.getvalue().endswith("\n") and time.monotonic() < deadline:
        time.sleep(0.01)
    info = json.loads(out.getvalue())
    names = [s["name"] for s in info["subscribers"]]
    assert names == ["alice", "bob", "carol", "dave", "zoe"]
    alice = info["subscribers"][0]
    r = requests.get(info["base_url"] + "/api/fabric/conversations",
                     headers={"Authorization": f"Bearer {alice['token']}"}, timeout=5)
    assert r.status_code == 200 and len(r.json()["data"]) == 4
    assert info["relay_url"].startswith("ws://127.0.0.1:") and info["control_url"].endswith("/__emulator__")
    stop.set()
    t.join(10)
    assert result == [0]


def test_run_emulator_text_output() -> None:
    out = io.StringIO()
    stop = threading.Event()
    t = threading.Thread(target=run_emulator, args=(_args("--subscriber", "ann"),), kwargs={"out": out, "stop": stop})
    t.start()
    deadline = time.monotonic() + 10
    while "Ctrl+C" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    t.join(10)
    text = out.getvalue()
    assert "base URL:    http://127.0.0.1:" in text and "ann" in text and "SIGNALWIRE_TOKEN=" in text


def test_python_m_runs_in_the_foreground_and_stops_on_sigterm() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "signalwire_conversation.testing", "--json",
                             "--subscriber", "alice"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        token = info["subscribers"][0]["token"]
        r = requests.get(info["base_url"] + "/api/fabric/subscriber/info",
                         headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_cli_reports_a_busy_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert run_emulator(_args("--port", str(port)), out=io.StringIO(), stop=threading.Event()) == 1


def test_seed_demo_makes_pagination_visible() -> None:
    with Emulator(ping_interval=None) as emu:
        subs = seed_demo(emu)
        assert set(subs) == {"alice", "bob", "carol", "dave"}
        assert len(emu.messages()) == 340
        again = seed_demo(emu)  # idempotent on subscribers
        assert again["alice"] == subs["alice"]
        h = {"Authorization": f"Bearer {subs['alice'].token}"}
        convs = requests.get(emu.base_url + "/api/fabric/conversations", headers=h, timeout=5).json()["data"]
        biggest = max(convs, key=lambda c: len(emu.messages(c["group_id"])))
        page = requests.get(f"{emu.base_url}/api/fabric/conversations/{biggest['group_id']}/messages",
                            headers=h, timeout=5).json()
        assert len(page["data"]) == 50 and "next" in page["links"]
        ts = [m["ts"] for m in page["data"]]
        assert ts == sorted(ts, reverse=True) and ts[0] < time.time() + 10000


def test_plugin_fixture_gives_an_empty_started_emulator(signalwire_emulator: Emulator) -> None:
    assert signalwire_emulator.running and signalwire_emulator.subscribers == []
    signalwire_emulator.add_subscriber("alice")
    signalwire_emulator.fail_next(500)


def test_plugin_fixture_is_reset_between_tests(signalwire_emulator: Emulator) -> None:
    assert signalwire_emulator.subscribers == []
    alice = signalwire_emulator.add_subscriber("alice")
    r = requests.get(signalwire_emulator.base_url + "/api/fabric/subscriber/info",
                     headers={"Authorization": f"Bearer {alice.token}"}, timeout=5)
    assert r.status_code == 200  # the previous test's fail_next is gone
