"""The hub over TLS: non-blocking handshakes, a burst read through the SSL buffer, an
untrusted certificate stopping the client for good (not retried)."""

from __future__ import annotations

import ssl
from typing import Any, Iterator, List, Tuple

import pytest

from signalwire_conversation import Client, RealtimeHub
from signalwire_conversation.errors import RealtimeError
from signalwire_conversation.testing import Emulator
from tests.waiting import wait_until

trustme = pytest.importorskip("trustme")


@pytest.fixture(scope="module")
def tls_emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Emulator, str]]:
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with Emulator(ssl_context=ctx, ping_interval=None) as emu:
        yield emu, str(ca_file)


def test_a_burst_over_tls_reaches_several_clients_in_order(tls_emu: Tuple[Emulator, str]) -> None:
    emu, ca_file = tls_emu
    assert emu.relay_url.startswith("wss://")
    subs = [emu.add_subscriber(f"t{i}") for i in range(3)]
    sender = emu.add_subscriber("tsender")
    with RealtimeHub(workers=2) as hub:
        clients = [Client(s.token, base_url=emu.base_url, relay_url=emu.relay_url, verify=ca_file, hub=hub)
                   for s in subs]
        got: List[List[str]] = [[] for _ in subs]
        for client, store in zip(clients, got):
            client.conversation.subscribe(lambda event, store=store: store.append(event.text))
        texts = [f"tls-{i:04d} " + "x" * (i % 700) for i in range(600)]
        for s in subs:
            emu.send_messages(sender, s.address_id, texts)
        wait_until(lambda: all(len(g) == len(texts) for g in got), 30, "the bursts over TLS")
        assert got == [texts] * 3
        for s in subs:
            emu.wait_for(lambda s=s: not emu.unacked_events(s), timeout=10)
        assert all(c.stats["connects"] == 1 and c.stats["disconnects"] == 0 for c in clients)
        for client in clients:
            client.close()


def test_an_untrusted_certificate_stops_that_client_for_good(tls_emu: Tuple[Emulator, str]) -> None:
    emu, _ = tls_emu
    who = emu.add_subscriber("untrusting")
    errors: List[Any] = []
    with RealtimeHub(workers=1) as hub:
        client = Client(who.token, base_url=emu.base_url, relay_url=emu.relay_url, hub=hub,
                        on_error=lambda exc, event: errors.append(exc))
        with pytest.raises(RealtimeError, match="certificate verification failed"):
            client.conversation.subscribe(lambda event: None, timeout=10)
        assert client.stats["connect_failures"] == 0
        client.close()
