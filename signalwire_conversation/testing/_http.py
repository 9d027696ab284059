"""A small HTTP/1.1 server side, enough for the REST API: heads, bodies, keep-alive.

The websockets HTTP parser refuses requests that carry a body, so plain HTTP requests never
reach it: the server reads the request head itself (``read_head``), hands websocket upgrades
to websockets, and answers everything else here.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

from ._errors import reason_phrase, validation_error

__all__ = ["Request", "Response", "HeadError", "read_head", "parse_head", "read_request", "write_response"]

MAX_HEAD = 64 * 1024
MAX_BODY = 4 * 1024 * 1024
SERVER_HEADER = "signalwire-conversation-emulator"


class HeadError(Exception):
    """The peer sent something that is not an HTTP request head (or closed early)."""


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: Dict[str, str]  # lower-case names
    body: bytes = b""
    remote: Tuple[str, int] = ("", 0)
    path: str = ""
    query_string: str = ""
    query: Dict[str, List[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parts = urlsplit(self.target)
        self.path = unquote(parts.path) or "/"
        self.query_string = parts.query
        self.query = parse_qs(parts.query, keep_blank_values=True)

    def first(self, name: str) -> Optional[str]:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body parsed as JSON (``ValueError`` when it is not JSON)."""
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))

    def json_object(self) -> Dict[str, Any]:
        """The body as a JSON object; a 400 ``invalid_json`` error when it is not one."""
        try:
            body = self.json()
        except (ValueError, UnicodeDecodeError):
            raise validation_error("invalid_json", "the request body is not valid JSON", None, status=400) from None
        if not isinstance(body, dict):
            raise validation_error("invalid_json", "the request body must be a JSON object", None, status=400)
        return body

    @property
    def is_websocket_upgrade(self) -> bool:
        return "websocket" in self.headers.get("upgrade", "").lower()

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-able, or bytes
    headers: Dict[str, str] = field(default_factory=dict)
    #: The ``Date`` header's time (epoch seconds; ``None``: now by the wall clock).
    date: Optional[float] = None

    def encode(self, keep_alive: bool) -> bytes:
        if isinstance(self.body, (bytes, bytearray)):
            payload = bytes(self.body)
            ctype = self.headers.get("Content-Type", "application/octet-stream")
        elif self.body is None and self.status in (204, 304):
            payload = b""
            ctype = ""
        else:
            payload = json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            ctype = "application/json"
        lines = [f"HTTP/1.1 {self.status} {reason_phrase(self.status)}"]
        headers = {
            "Server": SERVER_HEADER,
            "Date": formatdate(self.date, usegmt=True),
            "Content-Length": str(len(payload)),
            "Connection": "keep-alive" if keep_alive else "close",
        }
        if ctype:
            headers["Content-Type"] = ctype
        headers.update({k: v for k, v in self.headers.items() if k != "Content-Type"})
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def read_head(sock: socket.socket, buffer: bytes, deadline: float) -> Tuple[bytes, bytes]:
    """Read from ``sock`` until a full request head is in hand: ``(head, rest)``.

    ``buffer`` holds bytes already read. Raises ``HeadError`` on EOF, on garbage and when
    ``deadline`` (a ``time.monotonic()`` value) passes.
    """
    data = buffer
    for _ in range(MAX_HEAD):  # bounded: each turn reads at least one byte or gives up
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            return data[: end + 4], data[end + 4 :]
        if len(data) > MAX_HEAD:
            raise HeadError("request head too large")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HeadError("timed out reading the request head")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, OSError) as exc:
            raise HeadError(str(exc)) from exc
        if not chunk:
            raise HeadError("connection closed")
        data += chunk
    raise HeadError("request head too large")


def parse_head(head: bytes, remote: Tuple[str, int]) -> Request:
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, version = request_line.split(" ", 2)
    except ValueError:
        raise HeadError("malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise HeadError("not HTTP/1.x")
    headers: Dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HeadError("malformed header line")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return Request(method.upper(), target, version, headers, remote=remote)


def _recv_exact(sock: socket.socket, buffer: bytes, size: int, deadline: float) -> Tuple[bytes, bytes]:
    data = buffer
    while len(data) < size:  # bounded by size: every turn adds >= 1 byte or raises
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HeadError("timed out reading the request body")
        sock.settimeout(remaining)
        chunk = sock.recv(min(65536, size - len(data)))
        if not chunk:
            raise HeadError("connection closed in the body")
        data += chunk
    return data[:size], data[size:]


def read_request(sock: socket.socket, request: Request, rest: bytes, deadline: float) -> bytes:
    """Read the body of ``request`` into it; returns the bytes after it (a pipelined request)."""
    if request.headers.get("expect", "").lower() == "100-continue":
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        body = b""
        for _ in range(MAX_BODY):  # one chunk per turn
            line, rest = read_head_line(sock, rest, deadline)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                _, rest = read_head_line(sock, rest, deadline)  # trailer end (no trailers supported)
                break
            chunk, rest = _recv_exact(sock, rest, size + 2, deadline)
            body += chunk[:-2]
            if len(body) > MAX_BODY:
                raise HeadError("request body too large")
        request.body = body
        return rest
    length = int(request.headers.get("content-length", "0") or "0")
    if length < 0 or length > MAX_BODY:
        raise HeadError("bad content-length")
    request.body, rest = _recv_exact(sock, rest, length, deadline)
    return rest


def read_head_line(sock: socket.socket, buffer: bytes, deadline: float) -> Tuple[bytes, bytes]:
    data = buffer
    for _ in range(MAX_HEAD):
        end = data.find(b"\r\n")
        if end >= 0:
            return data[:end], data[end + 2 :]
        remaining = deadline - time.monotonic()
        if remaining <= 0 or len(data) > MAX_HEAD:
            raise HeadError("bad chunk header")
        sock.settimeout(remaining)
        chunk = sock.recv(4096)
        if not chunk:
            raise HeadError("connection closed in a chunk header")
        data += chunk
    raise HeadError("bad chunk header")


def write_response(sock: socket.socket, response: Response, keep_alive: bool) -> None:
    sock.settimeout(30.0)
    sock.sendall(response.encode(keep_alive))
