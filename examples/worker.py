"""A long-running worker: receive every new message and hand it to a bounded work queue.

    SIGNALWIRE_TOKEN=... python examples/worker.py [--address-id A] [--threads 4]

The SDK's dispatcher thread calls ``on_message`` once per message, in order. Slow work (a model
call, a database write) should not run there, or later messages wait: this worker puts each
message on a bounded ``queue.Queue`` read by a few threads of its own. Ctrl+C or SIGTERM closes
everything cleanly (exit 0); a fatal error (a revoked token) is re-raised by ``run_forever()``
and ends the process with status 1, so your supervisor restarts it.

The tests run this file against the emulator (tests/examples/test_examples.py).
"""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import sys
import threading
from typing import List, Optional

from signalwire_conversation import Client, ConversationMessageEvent, SignalWireError

log = logging.getLogger("worker")

STOP = None  # the sentinel that tells a work thread to finish


def process(event: ConversationMessageEvent) -> None:
    """The real work. Here: print one line (flushed, so a pipe sees it at once)."""
    print(f"handled {event.id} from {event.user_name or event.user_id}: {event.text}", flush=True)


def work(jobs: "queue.Queue[Optional[ConversationMessageEvent]]") -> None:
    while True:
        event = jobs.get()
        try:
            if event is STOP:
                return
            process(event)
        except Exception:  # one bad message must not kill the worker
            log.exception("could not process a message")
        finally:
            jobs.task_done()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Handle every new message until stopped.")
    parser.add_argument("--address-id", help="only the conversation with this address")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    # Bounded: if the work falls behind, the dispatcher waits here instead of eating memory.
    jobs: "queue.Queue[Optional[ConversationMessageEvent]]" = queue.Queue(maxsize=1000)
    threads = [threading.Thread(target=work, args=(jobs,), daemon=True) for _ in range(args.threads)]
    for thread in threads:
        thread.start()

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM = Ctrl+C: close cleanly
    status = 0
    try:
        with Client(
            on_state_change=lambda state: log.info("connection: %s", state.name),
            on_error=lambda exc, event: log.error("callback failed on %s: %r", event, exc),
        ) as client:
            client.conversation.subscribe(jobs.put, address_id=args.address_id)
            print("listening", flush=True)
            client.run_forever()  # returns after Ctrl+C / SIGTERM, raises a fatal error
    except KeyboardInterrupt:  # stopped before run_forever() took over
        pass
    except SignalWireError as exc:
        log.error("stopping: %s", exc)
        status = 1
    finally:
        for _ in threads:
            jobs.put(STOP)
        for thread in threads:
            thread.join(timeout=10)
    print("stopped", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
