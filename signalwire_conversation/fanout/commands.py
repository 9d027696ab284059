"""The ``relay`` and ``consume`` commands (``signalwire-conversation relay|consume`` and
``python -m signalwire_conversation.fanout relay|consume``)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable, Dict, List, Optional, TextIO

# The shared command-line helpers (the cli package imports only the standard library and the
# SDK's errors at module level, and this package only when a delegated command runs: no cycle).
from ..cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CLIError, client_from_args, token_from_args
from ..cli._errors import error_line
from ..cli.fanout_args import (
    ENV_REDIS_URL,
    add_consume_arguments,
    add_relay_arguments,
    add_relay_status_arguments,
)
from .._logging import redact
from ..errors import AuthenticationError, ConfigurationError, SignalWireError, ValidationError
from ._redis import describe
from .consumer import StreamConsumer, StreamMessage
from .fleet import Fleet
from .relay import Relay, default_stream_name
from .status import fleet_status, format_status

__all__ = [
    "add_relay_arguments",
    "run_relay",
    "add_relay_status_arguments",
    "run_relay_status",
    "add_consume_arguments",
    "run_consume",
    "main",
]

LOGGER_NAME = "signalwire_conversation.fanout"
SDK_LOGGER_NAME = "signalwire_conversation"


# ---------------------------------------------------------------------------------------------


class _AlreadyReported(logging.Filter):
    """Drops the SDK's record of the error the command reports itself (the listener's fatal
    error: the relay logs what it did about it, and the command exits with it)."""

    def __init__(self, reported: Callable[[], Optional[BaseException]]) -> None:
        super().__init__()
        self._reported = reported

    def filter(self, record: logging.LogRecord) -> bool:
        error = self._reported()
        if error is None:
            return True
        # By its text: the SDK's records are already formatted (and redacted) by now.
        return redact(str(error)) not in record.getMessage()


def _setup_logging(
    level_name: str, stream: TextIO, *, reported: Optional[Callable[[], Optional[BaseException]]] = None
) -> Callable[[], None]:
    """A stderr handler for the fan-out logger (at ``level_name``) and, unless the application
    already handles them, for the SDK's own warnings and errors (one format); returns an undo."""
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger = logging.getLogger(LOGGER_NAME)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    level = getattr(logging, level_name.upper(), logging.INFO)
    handler.setLevel(level)
    previous = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    sdk = logging.getLogger(SDK_LOGGER_NAME)
    sdk_handler: Optional[logging.Handler] = None
    if not any(not isinstance(h, logging.NullHandler) for h in sdk.handlers):
        sdk_handler = logging.StreamHandler(stream)
        sdk_handler.setFormatter(formatter)
        sdk_handler.setLevel(max(level, logging.WARNING))
        if reported is not None:
            sdk_handler.addFilter(_AlreadyReported(reported))
        sdk.addHandler(sdk_handler)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous[0])
        logger.propagate = previous[1]
        if sdk_handler is not None:
            sdk.removeHandler(sdk_handler)

    return undo


class _Signals:
    """SIGINT/SIGTERM set a flag (and call ``on_signal``) while installed; restored on exit."""

    def __init__(self, on_signal: Callable[[], None]) -> None:
        self.received: List[int] = []
        self._on_signal = on_signal
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        self.received.append(signum)
        self._on_signal()

    def __exit__(self, *exc_info: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def _error(stderr: TextIO, message: str, code: int) -> int:
    stderr.write(f"error: {message}\n")
    stderr.flush()
    return code


def _lines(path: str, what: str) -> List[str]:
    """The non-blank, non-comment lines of ``path`` (a clear error when unreadable or empty)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from None
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise ConfigurationError(f"{what} {path!r} has no entries")
    return lines


def _fleet_sources(args: argparse.Namespace) -> "list[tuple[str, str]]":
    """The subscribers of a fleet relay, as ``("token", SAT)`` or ``("reference", REF)``."""
    sources = [("reference", ref.strip()) for ref in args.subscriber]
    if any(not ref for _, ref in sources):
        raise ConfigurationError("--subscriber needs a subscriber reference, got an empty one")
    if args.subscribers_file:
        sources += [("reference", ref) for ref in _lines(args.subscribers_file, "--subscribers-file")]
    if args.tokens_file:
        sources += [("token", token) for token in _lines(args.tokens_file, "--tokens-file")]
    seen: "set[tuple[str, str]]" = set()
    unique = [s for s in sources if not (s in seen or seen.add(s))]  # type: ignore[func-returns-value]
    return unique


def _new_client(
    args: argparse.Namespace, source: "tuple[str, str]", tokens: Any, on_state_change: Callable[[Any], None], hub: Any
) -> Any:
    """The one place a fleet relay makes a subscriber's client (on the process's one hub)."""
    from ..client import Client

    options: Dict[str, Any] = dict(
        hub=hub,
        base_url=getattr(args, "base_url", None),
        relay_url=getattr(args, "relay_url", None),
        allow_insecure=bool(getattr(args, "allow_insecure", False)),
        on_state_change=on_state_change,
        resolve_names=False,  # the relay appends what the server sends; no directory lookups
    )
    kind, value = source
    if kind == "token":
        return Client(token=value, **options)
    return Client.for_subscriber(value, tokens=tokens, **options)


def run_fleet(args: argparse.Namespace, stderr: TextIO) -> int:
    """``relay`` with ``--subscriber``/``--subscribers-file``/``--tokens-file``: a fleet relay."""
    if getattr(args, "token", None) or getattr(args, "token_file", None):
        return _error(stderr, "--token and --token-file run one subscriber; with --subscriber, "
                      "--subscribers-file or --tokens-file put every token in --tokens-file", EXIT_USAGE)
    if getattr(args, "stream", None):
        return _error(stderr, "--stream names one subscriber's stream; a fleet relay uses each "
                      "subscriber's own (signalwire:conversation:{<address id>})", EXIT_USAGE)
    clients: List[Any] = []
    fleet: Optional[Fleet] = None
    relays: List[Any] = []
    hub: Any = None
    undo_logging = _setup_logging(args.log_level, stderr)
    try:
        try:
            from ..realtime import RealtimeHub

            # every subscriber of this process on one hub: the thread count does not grow with them
            hub = RealtimeHub(workers=getattr(args, "workers", 4))
            sources = _fleet_sources(args)
            tokens = None
            if any(kind == "reference" for kind, _ in sources):
                from ..tokens import SubscriberTokens

                tokens = SubscriberTokens()
            for i, source in enumerate(sources):
                def on_state(state: Any, i: int = i) -> None:  # a dead listener stops that relay at once
                    if i < len(relays):
                        relays[i].on_connection_state(state)

                clients.append(_new_client(args, source, tokens, on_state, hub))
            fleet = Fleet(
                clients, args.redis, name=args.fleet, lease_ttl=args.lease_ttl,
                maxlen=args.maxlen or None, seen_ttl=args.seen_ttl, buffer_size=args.buffer_size,
            )
            relays.extend(fleet.relays)
        except CLIError as exc:
            return _error(stderr, exc.message, exc.code)
        except (ConfigurationError, ValidationError, ValueError) as exc:
            return _error(stderr, str(exc), EXIT_USAGE)
        except AuthenticationError as exc:
            return _error(stderr, f"authentication failed: {exc} (check the project credentials)", EXIT_FAILURE)
        with _Signals(fleet.request_stop) as signals:
            fleet.start()
            fleet.join()
        if signals.received:
            logging.getLogger(LOGGER_NAME).info("stopped by signal %d", signals.received[0])
        errors = fleet.errors
        if errors and len(errors) == len(fleet.relays):
            stream, first = next(iter(errors.items()))
            return _error(stderr, f"every subscriber's relay stopped; first ({stream}): {type(first).__name__}: {first}",
                          EXIT_FAILURE)
        return EXIT_OK
    finally:
        for client in clients:
            client.close()
        if hub is not None:
            hub.close()
        undo_logging()


def run_relay(args: argparse.Namespace) -> int:
    """Run ``relay`` until SIGINT/SIGTERM; returns the exit status."""
    stderr = sys.stderr
    if not args.redis:
        return _error(stderr, f"no Redis URL: pass --redis redis://HOST:PORT/DB or set {ENV_REDIS_URL}", EXIT_USAGE)
    if getattr(args, "subscriber", None) or getattr(args, "subscribers_file", None) or getattr(args, "tokens_file", None):
        return run_fleet(args, stderr)
    client: Any = None
    relay: Optional[Relay] = None
    undo_logging = _setup_logging(
        args.log_level, stderr, reported=lambda: client.listener_error if client is not None else None
    )

    def on_connection_state(state: Any) -> None:  # a dead listener stops the relay at once
        if relay is not None:
            relay.on_connection_state(state)

    try:
        try:
            client = client_from_args(args, on_state_change=on_connection_state)
            relay = Relay(
                client,
                args.redis,
                stream=args.stream,
                lease_ttl=args.lease_ttl,
                maxlen=args.maxlen or None,
                seen_ttl=args.seen_ttl,
                buffer_size=args.buffer_size,
            )
        except CLIError as exc:
            return _error(stderr, exc.message, exc.code)
        except (ConfigurationError, ValidationError, ValueError) as exc:
            return _error(stderr, str(exc), EXIT_USAGE)
        with _Signals(relay.request_stop) as signals:
            relay.start()
            relay.join()
        if signals.received:
            logging.getLogger(LOGGER_NAME).info("stopped by signal %d", signals.received[0])
        fatal = relay.error
        if isinstance(fatal, AuthenticationError):
            return _error(
                stderr,
                f"authentication failed: {fatal} (check --token-file, --token or SIGNALWIRE_TOKEN)",
                EXIT_FAILURE,
            )
        if isinstance(fatal, (ConfigurationError, ValidationError)):
            return _error(stderr, str(fatal), EXIT_USAGE)
        if fatal is not None:
            return _error(stderr, f"{type(fatal).__name__}: {fatal}", EXIT_FAILURE)
        return EXIT_OK
    finally:
        if client is not None:
            client.close()
        undo_logging()


def run_relay_status(args: argparse.Namespace, *, stdout: Optional[TextIO] = None) -> int:
    """Run ``relay-status``: the fleet's tables (or ``--json``) on stdout."""
    out = sys.stdout if stdout is None else stdout
    stderr = sys.stderr
    if not args.redis:
        return _error(stderr, f"no Redis URL: pass --redis redis://HOST:PORT/DB or set {ENV_REDIS_URL}", EXIT_USAGE)
    from ._redis import UNAVAILABLE, error_text

    try:
        status = fleet_status(args.redis, args.fleet)
    except (ConfigurationError, ValueError) as exc:
        return _error(stderr, str(exc), EXIT_USAGE)
    except UNAVAILABLE as exc:
        return _error(stderr, f"cannot reach Redis: {error_text(exc)}", EXIT_FAILURE)
    if args.json:
        out.write(json.dumps(status, indent=2) + "\n")
    else:
        out.write(format_status(status))
    out.flush()
    return EXIT_OK


def _consumer_stream(args: argparse.Namespace) -> str:
    if args.stream:
        return str(args.stream)
    if token_from_args(args) is None and not getattr(args, "subscriber", None):
        raise ConfigurationError(
            "pass --stream NAME, or a token (--token-file, --token, SIGNALWIRE_TOKEN or --subscriber) to "
            "find the default stream signalwire:conversation:{<own address id>}"
        )
    client = client_from_args(args)
    try:
        address = client.conversation.get_subscriber_info().address_id
    finally:
        client.close()
    if not address:
        raise ConfigurationError("the subscriber has no fabric address; pass --stream NAME")
    return default_stream_name(address)


def run_consume(args: argparse.Namespace, *, stdout: Optional[TextIO] = None) -> int:
    """Run ``consume``: JSON lines on stdout until SIGINT/SIGTERM or ``--limit``."""
    out = sys.stdout if stdout is None else stdout
    stderr = sys.stderr
    if not args.redis:
        return _error(stderr, f"no Redis URL: pass --redis redis://HOST:PORT/DB or set {ENV_REDIS_URL}", EXIT_USAGE)
    undo_logging = _setup_logging(args.log_level, stderr)
    try:
        try:
            stream = _consumer_stream(args)
            consumer = StreamConsumer(
                args.redis, stream, args.group, args.consumer,
                claim_idle=args.claim_idle, count=args.batch, start_id=args.start_id,
            )
        except (ConfigurationError, ValidationError, ValueError) as exc:
            return _error(stderr, str(exc), EXIT_USAGE)
        except CLIError as exc:
            return _error(stderr, exc.message, exc.code)
        except AuthenticationError as exc:
            return _error(stderr, f"authentication failed: {exc}", EXIT_FAILURE)
        except SignalWireError as exc:
            message, code = error_line(exc)
            return _error(stderr, f"cannot find the stream name: {message}", code)
        logging.getLogger(LOGGER_NAME).info(
            "consumer %r of group %r reading %r at %s",
            consumer.consumer, consumer.group, stream, describe(consumer.client),
        )
        limit: Optional[int] = args.limit
        printed = [0]

        def handle(message: StreamMessage) -> None:
            if args.envelope:
                record: Dict[str, Any] = {
                    "entry_id": message.entry_id,
                    "stream": stream,
                    "consumer": consumer.consumer,
                    "claimed": message.claimed,
                    "event": message.event.to_dict(),
                }
            else:
                record = message.event.to_dict()
            out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            out.flush()
            printed[0] += 1
            if limit is not None and printed[0] >= limit:
                consumer.close()

        with _Signals(consumer.close):
            try:
                consumer.run(handle)
            except BrokenPipeError:
                return EXIT_FAILURE
        return EXIT_OK
    finally:
        undo_logging()


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m signalwire_conversation.fanout relay|consume ...``."""
    parser = argparse.ArgumentParser(prog="python -m signalwire_conversation.fanout")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_relay_arguments(sub.add_parser("relay", help="publish a subscriber's messages to a Redis stream"))
    add_relay_status_arguments(sub.add_parser("relay-status", help="show a relay fleet"))
    add_consume_arguments(sub.add_parser("consume", help="print a stream's events as JSON lines"))
    args = parser.parse_args(argv)
    if args.command == "relay":
        return run_relay(args)
    if args.command == "relay-status":
        return run_relay_status(args)
    if args.command == "consume":
        return run_consume(args)
    parser.print_help()
    return EXIT_USAGE

