"""A worker process for the restart test: resumes from its cursor file, logs what it handles.

Usage: ``python delivery_worker.py BASE_URL TOKEN LOG_PATH``. Each handled event is one line
``<message id> <cursor>`` appended to ``LOG_PATH`` with a single ``write`` (so a SIGKILL leaves
whole lines only); on start, the cursor of the last line (if any) is passed to ``after=``.
Prints ``ready`` once subscribed.
"""

from __future__ import annotations

import os
import sys
import threading

from signalwire_conversation import Client


def last_cursor(path: str) -> "str | None":
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f.read().split("\n") if line]
    except FileNotFoundError:
        return None
    return lines[-1].split(" ", 1)[1] if lines else None


def main() -> None:
    base_url, token, log_path = sys.argv[1:4]
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    after = last_cursor(log_path)

    def handle(event: object) -> None:
        os.write(fd, f"{event.id} {event.cursor}\n".encode())  # type: ignore[attr-defined]

    client = Client(
        token,
        base_url=base_url,
        listener_options={"backoff_initial": 0.05, "backoff_max": 0.2},
    )
    client.conversation.subscribe(handle, after=after)
    print("ready", flush=True)
    threading.Event().wait()  # until killed


if __name__ == "__main__":
    main()
