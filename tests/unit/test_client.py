"""Client: construction, hosts, lifecycle, the realtime seam, redaction, public surface."""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any, List

import pytest
import responses

import signalwire_conversation
from signalwire_conversation import (
    AuthenticationError,
    Client,
    ConfigurationError,
    ConnectionState,
    SignalWireError,
)
from signalwire_conversation.models import ConversationMessageEvent

from .helpers import BASE, GROUP, ME, THEM, TOKEN, FakeListener, add_join, add_me, make_token


# -- construction and hosts ------------------------------------------------------------------


def test_hosts_from_ch() -> None:
    c = Client(make_token({"alg": "dir", "enc": "A256GCM", "ch": "puc.swire.io", "typ": "SAT"}))
    assert c.base_url == "https://fabric.swire.io"
    assert c.relay_url == "wss://puc.swire.io"


def test_hosts_without_ch() -> None:
    c = Client(make_token({"alg": "dir", "enc": "A256GCM", "typ": "SAT"}))
    assert c.base_url == "https://fabric.signalwire.com"
    assert c.relay_url == "wss://puc.signalwire.com"


def test_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALWIRE_TOKEN", TOKEN)
    assert Client().base_url == "https://fabric.swire.io"


def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALWIRE_BASE_URL", "http://127.0.0.1:8080")
    c = Client(TOKEN)
    assert c.base_url == "http://127.0.0.1:8080" and c.relay_url == "ws://127.0.0.1:8080"


def test_explicit_urls_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNALWIRE_BASE_URL", "https://env.example")
    c = Client(TOKEN, base_url="https://api.example/", relay_url="wss://ws.example")
    assert c.base_url == "https://api.example" and c.relay_url == "wss://ws.example"


def test_insecure_remote_refused_unless_opted_in() -> None:
    with pytest.raises(ConfigurationError, match="allow_insecure"):
        Client(TOKEN, base_url="http://api.example")
    c = Client(TOKEN, base_url="http://api.example", allow_insecure=True)
    assert c.relay_url == "ws://api.example"


def test_missing_token_says_what_to_do() -> None:
    with pytest.raises(ConfigurationError, match="SIGNALWIRE_TOKEN"):
        Client()


@pytest.mark.parametrize("bad", ["", "not-a-token", "a.b", 42])
def test_malformed_token(bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        Client(bad)


def test_no_thread_started_by_constructor_or_rest() -> None:
    before = set(threading.enumerate())
    c = Client(TOKEN)
    assert set(threading.enumerate()) == before
    assert FakeListener.instances == []
    assert c.connection_state is ConnectionState.IDLE
    c.close()


# -- lifecycle -------------------------------------------------------------------------------


def test_close_is_idempotent_and_context_manager() -> None:
    with Client(TOKEN) as c:
        assert not c.closed
    assert c.closed
    c.close()
    assert c.connection_state is ConnectionState.CLOSED
    assert "closed" in repr(c)


def test_closed_client_refuses_rest_and_realtime(rsps: responses.RequestsMock) -> None:
    c = Client(TOKEN)
    c.close()
    with pytest.raises(SignalWireError, match="closed"):
        c.conversation.get_conversations()
    with pytest.raises(SignalWireError, match="closed"):
        c.conversation.subscribe()
    assert list(rsps.calls) == []


def test_close_closes_listener_then_session(client: Client) -> None:
    order: List[str] = []
    client.conversation.subscribe(print)
    (listener,) = FakeListener.instances
    original = listener.close
    listener.close = lambda timeout=5.0: (order.append("listener"), original(timeout))  # type: ignore[method-assign]
    session_close = client._transport._session.close
    client._transport._session.close = lambda: (order.append("session"), session_close())  # type: ignore[method-assign]
    client.close()
    client.close()
    assert order == ["listener", "session"]
    assert listener.closed == [5.0]


# -- the realtime seam -----------------------------------------------------------------------


def test_listener_built_lazily_once_with_the_seam_arguments(tmp_path: Any) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")

    def on_error(exc: BaseException, event: Any) -> None:
        pass

    def on_state(state: ConnectionState) -> None:
        pass

    c = Client(TOKEN, verify=str(ca), on_error=on_error, on_state_change=on_state, listener_options={"ping_timeout": 7.0})
    assert FakeListener.instances == []
    sub = c.conversation.subscribe()
    c.conversation.subscribe(print)
    (listener,) = FakeListener.instances
    kw = listener.kwargs
    assert kw["tokens"] is c._tokens
    assert kw["relay_url"] == "wss://puc.swire.io"
    assert kw["on_error"] is on_error and kw["on_state_change"] is on_state
    assert kw["verify"] == str(ca) and kw["ping_timeout"] == 7.0
    assert callable(kw["fetch_missed"])
    # a callback is wrapped to get sender names filled in (resolve_names=True, the default)
    wrapped = listener.subscribed[1]["callback"]
    assert wrapped.__wrapped__ is print
    listener.subscribed[1]["callback"] = print
    assert listener.subscribed == [
        {"callback": None, "group_id": None, "timeout": 15.0, "after": None},
        {"callback": print, "group_id": None, "timeout": 15.0, "after": None},
    ]
    assert sub.group_id is None
    assert c.connection_state is ConnectionState.CONNECTED
    c.close()


def test_subscribe_with_address_joins_and_passes_group(client: Client, rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    add_join(rsps)
    client.conversation.subscribe(print, address_id=THEM, timeout=3)
    (listener,) = FakeListener.instances
    assert listener.subscribed == [{"callback": print, "group_id": GROUP, "timeout": 3.0, "after": None}]


def test_fetch_missed_gives_recovered_events(client: Client, rsps: responses.RequestsMock) -> None:
    add_me(rsps)
    rsps.get(
        f"{BASE}/api/fabric/messages",
        json={"data": [
            {"id": "new", "group_id": "g", "ts": 200, "from_fabric_address_id": "someone"},
            {"id": "mid", "group_id": "g", "ts": 150, "from_fabric_address_id": ME},
            {"id": "old", "group_id": "g", "ts": 50},
        ], "links": {}},
    )
    client.conversation.subscribe()
    fetch = FakeListener.instances[0].kwargs["fetch_missed"]
    events = list(fetch(100.0))
    assert [e.id for e in events] == ["new", "mid"]
    assert all(isinstance(e, ConversationMessageEvent) and e.recovered for e in events)
    # the SDK knows its own address: recovered events say who wrote them
    assert [e.is_author for e in events] == [False, True]
    assert "since=100" in [c.request.url for c in rsps.calls if "/messages" in c.request.url][0]


def test_fetch_latest_reads_the_newest_few(client: Client, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/api/fabric/messages", json={"data": [{"id": "n", "group_id": "g", "ts": 9}], "links": {}})
    client.conversation.subscribe()
    latest = FakeListener.instances[0].kwargs["fetch_latest"]
    assert [e.id for e in latest()] == ["n"]
    assert "page_size=5" in rsps.calls[0].request.url


def test_run_forever_delegates_and_closes() -> None:
    c = Client(TOKEN)
    c.run_forever()
    (listener,) = FakeListener.instances
    assert listener.ran == 1 and c.closed and listener.closed


def test_run_forever_ctrl_c_closes_cleanly() -> None:
    c = Client(TOKEN)
    c.conversation.subscribe()
    FakeListener.instances[0].run_raises = KeyboardInterrupt()
    c.run_forever()
    assert c.closed


def test_run_forever_reraises_fatal_error() -> None:
    c = Client(TOKEN)
    c.conversation.subscribe()
    FakeListener.instances[0].run_raises = AuthenticationError("revoked", status_code=401)
    with pytest.raises(AuthenticationError):
        c.run_forever()
    c.close()


# -- redaction -------------------------------------------------------------------------------


def test_repr_never_shows_the_token() -> None:
    c = Client(TOKEN)
    text = repr(c)
    assert TOKEN not in text and TOKEN[:20] not in text
    assert "fabric.swire.io" in text and "redacted" in text
    assert TOKEN not in repr(c._tokens) and TOKEN not in repr(c._transport)


def test_debug_logs_never_show_the_token(rsps: responses.RequestsMock, sleeps: List[float], caplog: pytest.LogCaptureFixture) -> None:
    rsps.get(f"{BASE}/api/fabric/subscriber/info", json={"id": "s", "fabric_addresses": [{"id": "me"}], "echo": f"Bearer {TOKEN}"})
    rsps.post(f"{BASE}/api/fabric/conversations/join", status=503)
    rsps.post(f"{BASE}/api/fabric/conversations/join", json={"group_id": "g", "jwt_token": TOKEN})
    rsps.post(f"{BASE}/api/fabric/messages", status=401, json={"error": f"bad token {TOKEN}"})
    with caplog.at_level(logging.DEBUG, logger="signalwire_conversation"):
        c = Client(TOKEN)
        with pytest.raises(AuthenticationError) as info:
            c.conversation.send_message(THEM, "hello secret world")
        c.close()
    text = caplog.text
    assert "response POST" in text and "hello secret world" in text  # bodies are at DEBUG
    assert TOKEN not in text
    secret = TOKEN.split(".")[-1]
    assert secret not in text
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)
    assert TOKEN not in str(info.value.body)


def test_bodies_not_logged_above_debug(rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture) -> None:
    rsps.get(f"{BASE}/api/fabric/conversations", json={"data": [{"group_id": "private-name"}], "links": {}})
    with caplog.at_level(logging.INFO, logger="signalwire_conversation"):
        Client(TOKEN).conversation.get_conversations()
    assert "private-name" not in caplog.text


# -- public surface --------------------------------------------------------------------------


def test_public_names() -> None:
    assert sorted(signalwire_conversation.__all__) == sorted([
        "__version__",
        "Client", "ConversationAPI", "Page", "Subscription", "ConnectionState", "RealtimeHub",
        "SubscriberTokens", "SubscriberClients",
        "Conversation", "ConversationMessage", "ConversationMessageEvent",
        "JoinResult", "SentMessage", "SubscriberInfo",
        "SignalWireError", "ConfigurationError", "ValidationError", "APIError",
        "AuthenticationError", "PermissionDeniedError", "NotFoundError",
        "UnprocessableEntityError", "RateLimitError", "ServerError",
        "APIConnectionError", "APITimeoutError", "ResponseValidationError", "RealtimeError",
    ])
    for name in signalwire_conversation.__all__:
        assert getattr(signalwire_conversation, name) is not None


def test_dir_lists_the_public_names_only() -> None:
    # dir(), not vars(): ConnectionState and Subscription are loaded on first access
    names = dir(signalwire_conversation)
    assert {n for n in names if not n.startswith("_")} == set(signalwire_conversation.__all__) - {"__version__"}
    assert {n for n in names if n.startswith("_")} <= {n for n in names if n.startswith("__") and n.endswith("__")}
    assert "__version__" in names and "__doc__" in names
    assert "annotations" not in names and "models" not in names
    for name in dir(signalwire_conversation):
        assert getattr(signalwire_conversation, name) is not None


@pytest.mark.parametrize("module", ["realtime", "testing", "fanout"])
def test_public_subpackages_leak_no_future_import(module: str) -> None:
    # ``from __future__ import annotations`` binds the name ``annotations`` in the module
    package = importlib.import_module(f"signalwire_conversation.{module}")
    assert "annotations" not in dir(package)
    assert set(package.__all__) <= set(dir(package))


def test_conversation_attribute() -> None:
    from signalwire_conversation import ConversationAPI

    assert isinstance(Client(TOKEN).conversation, ConversationAPI)


# -- D4: the constructor refuses what it could not use -----------------------------------------


@pytest.mark.parametrize("kwargs,parameter", [
    pytest.param({"on_error": 5}, "on_error", id="on_error-int"),
    pytest.param({"on_state_change": "x"}, "on_state_change", id="on_state_change-str"),
    pytest.param({"verify": 5}, "verify", id="verify-int"),
    pytest.param({"verify": ""}, "verify", id="verify-empty-str-would-disable-tls"),
    pytest.param({"session": 5}, "session", id="session-int"),
    pytest.param({"allow_insecure": "no", "base_url": "http://example.com"}, "allow_insecure", id="allow_insecure-str"),
    pytest.param({"allow_insecure": 1}, "allow_insecure", id="allow_insecure-int"),
    pytest.param({"listener_options": [1]}, "listener_options", id="listener_options-list"),
    pytest.param({"listener_options": {"bogus": 1}}, "listener_options", id="listener_options-unknown"),
    pytest.param({"listener_options": {"verify": False}}, "listener_options", id="listener_options-client-set"),
    pytest.param({"listener_options": {"ping_timeout": -1}}, "listener_options['ping_timeout']",
                 id="listener_options-bad-value"),
])
def test_constructor_refuses_unusable_arguments(kwargs: Any, parameter: str) -> None:
    from signalwire_conversation import ValidationError

    with pytest.raises(ValidationError) as info:
        Client(TOKEN, **{"base_url": BASE, **kwargs})
    assert info.value.parameter == parameter
    assert parameter in str(info.value)


def test_constructor_accepts_usable_arguments() -> None:
    import certifi
    import requests

    session = requests.Session()
    c = Client(
        TOKEN, base_url=BASE, verify=certifi.where(), session=session,
        allow_insecure=False, on_error=lambda exc, ev: None, on_state_change=print,
        listener_options={"ping_timeout": 5, "queue_size": 10},
    )
    assert c.connection_state is ConnectionState.IDLE  # no listener started by the check
    assert threading.active_count() >= 1
    c.close()
    session.close()


def test_import_stays_light() -> None:
    """A REST-only program never imports the realtime stack, the emulator or the CLI."""
    import subprocess
    import sys

    code = (
        "import sys, signalwire_conversation\n"
        "heavy = ['websocket', 'websockets', 'redis', 'signalwire_conversation.realtime',\n"
        "         'signalwire_conversation.testing', 'signalwire_conversation.cli']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
        "signalwire_conversation.ConnectionState\n"
        "print('signalwire_conversation.realtime' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out == ["", "True"], out
