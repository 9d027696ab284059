"""The hub's I/O thread: one ``selectors`` loop over every websocket of the hub.

Each registered socket carries its handler in ``key.data`` (``on_readable()``/``on_writable()``);
``EVENT_WRITE`` is asked for only while a handler has output waiting. Other threads never touch
a socket: they hand a call to the loop with :meth:`Loop.call_soon_threadsafe` (append to a
deque, then wake the selector through a socketpair), the loop's only thread-safe entry point.
"""

from __future__ import annotations

import collections
import selectors
import socket
import threading
from typing import Any, Callable, Deque, Optional, Protocol, Tuple

from ..._logging import get_logger

__all__ = ["Loop", "Handler"]

logger = get_logger("signalwire_conversation.realtime")

#: the longest select() wait (the loop has no deadline of its own: the timer thread has them)
_MAX_WAIT = 30.0


class Handler(Protocol):
    def on_readable(self) -> None: ...

    def on_writable(self) -> None: ...


class Loop:
    """A selector loop run by one daemon thread (``signalwire-hub-io``), started on first use."""

    def __init__(self, *, name: str = "signalwire-hub-io") -> None:
        self._name = name
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._calls: Deque[Tuple[Callable[..., Any], Tuple[Any, ...]]] = collections.deque()
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        self._stopping = False
        self._woken = False
        self.ident: Optional[int] = None

    # -- any thread ---------------------------------------------------------------------------

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn(*args)`` on the loop thread, in call order; ``False`` when stopped."""
        if self._stopping:
            return False
        self._calls.append((fn, args))
        if self._thread is None:
            self._start()
        if threading.get_ident() != self.ident and not self._woken:
            self._woken = True
            try:
                self._wake_w.send(b"\0")
            except OSError:  # full (a wake-up is pending anyway) or closed (stopping)
                pass
        return True

    def on_loop(self) -> bool:
        """Whether the calling thread is the loop's."""
        return threading.get_ident() == self.ident

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stopping:
                thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread = thread
                thread.start()

    # -- the loop thread only ----------------------------------------------------------------

    def register(self, sock: socket.socket, handler: Handler, *, write: bool) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
        self._selector.register(sock, events, handler)

    def set_writing(self, sock: socket.socket, handler: Handler, write: bool, *, read: bool = True) -> None:
        """Watch ``sock`` for reading (unless ``read`` is false: paused) and, while output
        waits, for writing."""
        events = (selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if write else 0)
        try:
            if events:
                try:
                    self._selector.modify(sock, events, handler)
                except KeyError:
                    self._selector.register(sock, events, handler)
            else:
                self._selector.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass  # closed meanwhile

    def unregister(self, sock: socket.socket) -> None:
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError, OSError):
            pass

    def __len__(self) -> int:
        return max(0, len(self._selector.get_map()) - 1)

    def _run(self) -> None:
        self.ident = threading.get_ident()
        select = self._selector.select
        calls = self._calls
        wake_r = self._wake_r
        READ = selectors.EVENT_READ
        WRITE = selectors.EVENT_WRITE
        try:
            while not self._stopping:
                for key, mask in select(0 if calls else _MAX_WAIT):
                    handler = key.data
                    if handler is None:
                        try:
                            while wake_r.recv(4096):
                                pass
                        except OSError:
                            pass
                        # after the drain: a caller that saw True before this has its call
                        # run below (it appended first); one that sees False sends a new byte
                        self._woken = False
                        continue
                    try:
                        if mask & WRITE:
                            handler.on_writable()
                        if mask & READ:
                            handler.on_readable()
                    except Exception:
                        logger.exception("a hub socket handler failed")
                for _ in range(len(calls)):
                    fn, args = calls.popleft()
                    try:
                        fn(*args)
                    except Exception:
                        logger.exception("a hub loop call failed")
        except BaseException:
            logger.exception("the hub's I/O loop failed")
            raise
        finally:
            self._finish()

    def _finish(self) -> None:
        # the loop thread's last act: run what was handed to it (the closes), free the selector
        while self._calls:
            fn, args = self._calls.popleft()
            try:
                fn(*args)
            except Exception:
                logger.exception("a hub loop call failed")
        for key in list(self._selector.get_map().values()):
            if key.data is not None:
                try:
                    key.fileobj.close()  # type: ignore[union-attr]
                except OSError:
                    pass
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def stop(self, then: Optional[Callable[[], Any]] = None, timeout: Optional[float] = None) -> bool:
        """Run ``then`` on the loop, stop it, close every socket; ``True`` when the thread ended."""
        with self._start_lock:
            thread = self._thread
            if thread is None:
                self._stopping = True
                if then is not None:
                    then()
                self._selector.close()
                self._wake_r.close()
                self._wake_w.close()
                return True
        if then is not None:
            self.call_soon_threadsafe(then)
        self.call_soon_threadsafe(self._set_stopping)
        if thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return False

    def _set_stopping(self) -> None:
        self._stopping = True
