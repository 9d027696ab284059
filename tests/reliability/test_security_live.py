"""Security against the emulator: a whole session at DEBUG (REST calls, errors, a token refresh,
a realtime subscribe with reconnects and a refused resume) never logs a token; the websocket URL
carries none; wss/https are verified by default (a throwaway CA from ``trustme``).
"""

from __future__ import annotations

import logging
import threading
from typing import List

import pytest

from signalwire_conversation import Client, ServerError, SignalWireError
from signalwire_conversation.testing import Emulator

from .test_security import assert_clean

FAST = {"backoff_initial": 0.02, "backoff_max": 0.2}


def assert_no_token(text: str, tokens: List[str], where: str) -> None:
    for token in tokens:
        assert_clean(text, token=token, where=where)


def test_full_session_at_debug_never_logs_a_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with Emulator(ping_interval=0.5) as emu:
        alice, bob = emu.add_subscriber("alice"), emu.add_subscriber("bob")
        tokens = [alice.token, emu.issue_token(alice), bob.token]
        current = [tokens[0]]
        got: List[str] = []
        done = threading.Event()

        def on_message(event: object) -> None:
            got.append(getattr(event, "text", ""))
            if len(got) >= 4:
                done.set()

        with Client(lambda: current[0], base_url=emu.base_url, relay_url=emu.relay_url,
                    max_retries=1, listener_options=FAST) as client:
            api = client.conversation
            api.send_message(bob.address_id, "one")
            list(api.get_conversation_messages(bob.address_id))
            # errors: a 500 retried then raised, a 401 answered by a token refresh
            emu.fail_next(500, times=2, method="GET", path=r"^/api/fabric/messages$")
            with pytest.raises(ServerError) as info:
                api.get_messages()
            assert_no_token(str(info.value) + repr(info.value), tokens, "a ServerError")
            current[0] = tokens[1]
            emu.revoke_token(tokens[0], drop=False)
            assert api.get_messages().data  # 401 -> the callable gives tokens[1] -> retried
            # realtime: subscribe, drops (resume), a refused resume (fresh connect)
            sub = api.subscribe(on_message, timeout=10)
            emu.send_message(bob, alice.address_id, "two")
            emu.drop_connections(alice)
            emu.send_message(bob, alice.address_id, "three")
            emu.refuse_resume(1)
            emu.wait_for(lambda: len(emu.connections) == 1 and emu.connections[0].authenticated, timeout=10)
            emu.drop_connections(alice)
            emu.send_message(bob, alice.address_id, "four")
            emu.send_message(bob, alice.address_id, "five")
            assert done.wait(15), got
            connections = emu.all_connections
            sub.unsubscribe()
            assert_no_token(repr(client) + repr(client._listener) + repr(sub), tokens, "reprs")
    assert len(connections) >= 3
    for conn in connections:
        assert_no_token(conn.path, tokens, "the websocket URL")
    records = caplog.records
    assert any(r.levelno == logging.DEBUG for r in records)
    for record in records:
        if record.name.startswith("signalwire_conversation.testing"):
            continue  # the emulator's own diagnostics are not the SDK's (checked below apart)
        assert_no_token(record.getMessage(), tokens, f"log {record.name}:{record.levelname}")
        if record.exc_info and record.exc_info[1] is not None:
            assert_no_token(str(record.exc_info[1]), tokens, f"logged exception {record.name}")
    sdk_text = "\n".join(caplog.handler.format(r) for r in records
                         if not r.name.startswith("signalwire_conversation.testing"))
    assert_no_token(sdk_text, tokens, "formatted SDK log output")


# -- TLS ------------------------------------------------------------------------------------


def test_tls_emulator_urls(tls_emulator: Emulator) -> None:
    assert tls_emulator.base_url.startswith("https://") and tls_emulator.relay_url.startswith("wss://")


def test_tls_trusted_ca_bundle_works_for_rest_and_websocket(tls_emulator: Emulator, ca_file: str) -> None:
    emu = tls_emulator
    alice, bob = emu.add_subscriber("alice-ok"), emu.add_subscriber("bob-ok")
    got = threading.Event()
    with Client(alice.token, base_url=emu.base_url, relay_url=emu.relay_url, verify=ca_file,
                listener_options=FAST) as client:
        client.conversation.send_message(bob.address_id, "over tls")
        client.conversation.subscribe(lambda e: got.set(), timeout=10)
        emu.send_message(bob, alice.address_id, "back over wss")
        assert got.wait(10)


def test_tls_untrusted_certificate_refused_rest_and_websocket(tls_emulator: Emulator) -> None:
    emu = tls_emulator
    alice = emu.add_subscriber("alice-untrusted")
    before = len(emu.all_connections)
    requests_before = len(emu.requests)
    with Client(alice.token, base_url=emu.base_url, relay_url=emu.relay_url, max_retries=2,
                listener_options={**FAST, "connect_timeout": 1.0}) as client:
        with pytest.raises(SignalWireError) as rest:
            client.conversation.get_conversations()
        assert "certificate" in str(rest.value).lower() or "TLS" in str(rest.value)
        with pytest.raises(SignalWireError) as ws:
            client.conversation.subscribe(timeout=2.0)
        err = client._listener.last_error
    assert len(emu.requests) == requests_before, "a REST request went over an unverified connection"
    assert len(emu.all_connections) == before, "a websocket was opened over an unverified connection"
    assert "certificate" in (str(err) + str(ws.value)).lower(), (err, ws.value)
