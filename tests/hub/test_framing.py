"""The hub's websocket framing, sans I/O: upgrade, frames in, messages out."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest

from signalwire_conversation.realtime.hub.framing import (
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    FrameReader,
    FramingError,
    new_key,
    parse_upgrade,
    upgrade_request,
)


def frame(payload: bytes, opcode: int = OP_TEXT, fin: bool = True) -> bytes:
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", b0, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", b0, 126, n)
    else:
        head = struct.pack("!BBQ", b0, 127, n)
    return head + payload


def accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()


def test_upgrade_request_names_the_port_only_when_not_default() -> None:
    assert b"Host: relay.example\r\n" in upgrade_request("relay.example", 443, "/api", "k", secure=True)
    assert b"Host: 127.0.0.1:8080\r\n" in upgrade_request("127.0.0.1", 8080, "/", "k", secure=False)


def test_parse_upgrade_waits_for_the_whole_head_then_checks_the_accept_key() -> None:
    key = new_key()
    head = f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept(key)}\r\n\r\n"
    data = head.encode() + frame(b"{}")
    assert parse_upgrade(data[:20], key) is None
    assert parse_upgrade(data, key) == (101, len(head))
    with pytest.raises(FramingError):
        parse_upgrade(head.replace(accept(key), "wrong").encode(), key)
    assert parse_upgrade(b"HTTP/1.1 401 Unauthorized\r\n\r\n", key) == (401, 29)
    with pytest.raises(FramingError):
        parse_upgrade(b"SSH-2.0\r\n\r\n", key)


def test_messages_come_whole_whatever_the_read_boundaries() -> None:
    stream = frame(b"a" * 200) + frame(b"b" * 70000) + frame(b"ping!", OP_PING) + frame(b"c")
    for step in (1, 7, 4096, len(stream)):
        reader = FrameReader(1 << 20)
        out = []
        for i in range(0, len(stream), step):
            out.extend(reader.feed(stream[i : i + step]))
        assert out == [(OP_TEXT, b"a" * 200), (OP_TEXT, b"b" * 70000), (OP_PING, b"ping!"), (OP_TEXT, b"c")]


def test_fragments_are_joined_and_control_frames_pass_between_them() -> None:
    reader = FrameReader(1024)
    data = frame(b"he", fin=False) + frame(b"", OP_PING) + frame(b"llo", 0x0) + frame(b"", OP_CLOSE)
    assert reader.feed(data) == [(OP_PING, b""), (OP_TEXT, b"hello"), (OP_CLOSE, b"")]


@pytest.mark.parametrize(
    "data",
    [
        frame(b"x" * 2000),  # over the cap
        frame(b"x" * 600, fin=False) + frame(b"x" * 600, 0x0),  # fragments over the cap
        frame(b"x", 0x0),  # a continuation of nothing
        bytes([0x80 | 0x40 | OP_TEXT, 1]) + b"x",  # a reserved bit
        frame(b"x", 0x3),  # an unknown opcode
    ],
)
def test_broken_or_oversized_frames_raise(data: bytes) -> None:
    with pytest.raises(FramingError):
        FrameReader(1024).feed(data)
