"""Websocket framing for the hub's selector loop (RFC 6455, the client side), sans I/O.

Bytes in, messages out; the caller owns the socket. :func:`upgrade_request` and
:func:`parse_upgrade` are the HTTP handshake; :class:`FrameReader` turns what the server sends
into complete messages (fragments joined, control frames returned as they come, a size cap);
outgoing frames are :func:`~..connection.mask_frame` (the same code as the default listener).
Hand-written rather than ``wsproto``: docs/performance.md, "hub framing", has the figures.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from typing import List, Mapping, Optional, Tuple

__all__ = ["FrameReader", "FramingError", "upgrade_request", "parse_upgrade", "new_key", "OP_TEXT",
           "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG"]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: the largest HTTP upgrade answer read
MAX_HEADER_BYTES = 16384
_H2 = struct.Struct("!H")
_Q = struct.Struct("!Q")


class FramingError(Exception):
    """The server broke the protocol (or a message exceeded the cap): drop the link."""


def new_key() -> str:
    """A fresh ``Sec-WebSocket-Key``."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def upgrade_request(host: str, port: int, path: str, key: str, *, secure: bool) -> bytes:
    """The HTTP/1.1 upgrade request (the port is named only when it is not the default)."""
    default = 443 if secure else 80
    authority = host if port == default else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        authority = f"[{host}]" if port == default else f"[{host}]:{port}"
    return (
        f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode("ascii")


def parse_upgrade(data: bytes, key: str) -> Optional[Tuple[int, int]]:
    """``(status, header length)`` once the answer's head is complete, else ``None``.

    Raises :class:`FramingError` when the head is not HTTP, too long, or a 101 without the
    right ``Sec-WebSocket-Accept``. Any status other than 101 is returned for the caller to
    judge (401/403: the token was refused).
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_HEADER_BYTES:
            raise FramingError("the upgrade answer's head is too long")
        return None
    lines = data[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise FramingError(f"not an HTTP answer: {lines[0][:80]!r}")
    status = int(parts[1])
    if status == 101:
        headers: Mapping[str, str] = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        expected = base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")
        if headers.get("sec-websocket-accept") != expected:
            raise FramingError("the upgrade answer has a wrong Sec-WebSocket-Accept")
        if headers.get("upgrade", "").lower() != "websocket":
            raise FramingError("the upgrade answer does not upgrade to websocket")
    return status, end + 4


class FrameReader:
    """Server frames to messages: ``feed(data)`` returns ``[(opcode, payload), ...]``.

    Text and binary messages come whole (fragments joined); ping, pong and close frames come as
    they are read, between them. A message over ``max_message_bytes`` raises
    :class:`FramingError`, as does a broken frame.
    """

    __slots__ = ("_buf", "_max", "_frag_op", "_frags", "_frag_len")

    def __init__(self, max_message_bytes: int) -> None:
        self._buf = b""
        self._max = max_message_bytes
        self._frag_op = -1
        self._frags: List[bytes] = []
        self._frag_len = 0

    def feed(self, data: bytes) -> List[Tuple[int, bytes]]:
        buf = self._buf + data if self._buf else data
        out: List[Tuple[int, bytes]] = []
        pos = 0
        size = len(buf)
        limit = self._max
        while size - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n = _H2.unpack_from(buf, pos + 2)[0]
                head = 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = _Q.unpack_from(buf, pos + 2)[0]
                head = 10
            if b0 & 0x70:
                raise FramingError("a frame with reserved bits set (no extension was agreed)")
            opcode = b0 & 0x0F
            if n > limit and opcode < 0x8:
                raise FramingError(f"a message of {n} bytes exceeds the {limit}-byte limit")
            masked = b1 & 0x80
            if masked:
                head += 4
            end = pos + head + n
            if end > size:
                break
            payload = buf[pos + head : end]
            if masked:  # servers must not mask, but a masked frame is still readable
                key = buf[pos + head - 4 : pos + head]
                payload = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
            pos = end
            fin = b0 & 0x80
            if opcode >= 0x8:
                if not fin or n > 125:
                    raise FramingError("a fragmented or oversized control frame")
                out.append((opcode, payload))
            elif opcode == OP_CONT:
                if self._frag_op < 0:
                    raise FramingError("a continuation frame with no message to continue")
                self._frag_len += n
                if self._frag_len > limit:
                    raise FramingError(f"a message of over {limit} bytes exceeds the limit")
                self._frags.append(payload)
                if fin:
                    out.append((self._frag_op, b"".join(self._frags)))
                    self._frag_op = -1
                    self._frags = []
                    self._frag_len = 0
            elif opcode in (OP_TEXT, OP_BINARY):
                if self._frag_op >= 0:
                    raise FramingError("a new message inside a fragmented one")
                if fin:
                    out.append((opcode, payload))
                else:
                    self._frag_op = opcode
                    self._frags = [payload]
                    self._frag_len = n
            else:
                raise FramingError(f"an unknown opcode {opcode:#x}")
        self._buf = buf[pos:] if pos < size else b""
        return out
