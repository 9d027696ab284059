"""Helpers for the realtime integration tests: a REST gap-fill function, collectors, waits."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator, List, Optional

import requests

from signalwire_conversation.models import ConversationMessageEvent, decode_message, event_from_message
from signalwire_conversation.realtime.delivery import ts_seconds


class RestFetch:
    """``fetch_missed`` over the emulator's REST API (``GET /api/fabric/messages``), counting calls.

    ``fail`` makes the next N calls raise (to test the gap-fill retry).
    """

    def __init__(self, base_url: str, token: str, page_size: int = 100) -> None:
        self.base_url = base_url
        self.token = token
        self.page_size = page_size
        self.calls: List[float] = []
        self.fail = 0
        self._session = requests.Session()

    def __call__(self, since: float) -> Iterator[ConversationMessageEvent]:
        self.calls.append(since)
        if self.fail > 0:
            self.fail -= 1
            raise requests.ConnectionError("injected gap-fill failure")
        return self._pages(since)

    def _pages(self, since: float) -> Iterator[ConversationMessageEvent]:
        url: Optional[str] = f"{self.base_url}/api/fabric/messages"
        params: Optional[dict[str, Any]] = {"page_size": self.page_size, "since": since}
        pages = 0
        while url and pages < 1000:
            pages += 1
            r = self._session.get(
                url, params=params, headers={"Authorization": f"Bearer {self.token}"}, timeout=5
            )
            r.raise_for_status()
            body = r.json()
            for item in body.get("data", []):
                message = decode_message(item)
                ts = ts_seconds(message.ts)
                if ts is not None and ts < since:
                    return  # newest first: everything after this is older
                yield event_from_message(message)
            url = (body.get("links") or {}).get("next")
            params = None  # the next link carries them

    def close(self) -> None:
        self._session.close()


class Collector:
    """A subscription callback that records what it gets; ``wait(n)`` blocks until n arrived."""

    def __init__(self, action: Optional[Callable[[ConversationMessageEvent], None]] = None) -> None:
        self.events: List[ConversationMessageEvent] = []
        self.threads: set[str] = set()
        self._cond = threading.Condition()
        self._action = action

    def __call__(self, event: ConversationMessageEvent) -> None:
        with self._cond:
            self.events.append(event)
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()
        if self._action is not None:
            self._action(event)

    @property
    def texts(self) -> List[Optional[str]]:
        with self._cond:
            return [e.text for e in self.events]

    def wait(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.events) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    texts = [e.text for e in self.events]
                    raise AssertionError(
                        f"got {len(self.events)} of {n} events within {timeout}s; last: {texts[-5:]}"
                    )
                self._cond.wait(remaining)


# (re-exported for this package's tests)
from waiting import wait_until  # noqa: E402,F401


def listener_threads() -> List[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("signalwire-"))
