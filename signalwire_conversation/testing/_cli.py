"""``signalwire-conversation emulator``: run the emulator in the foreground.

The ``signalwire-conversation`` command (``cli.py``) calls :func:`add_emulator_arguments` on
its ``emulator`` sub-parser and :func:`run_emulator` with the parsed arguments;
``python -m signalwire_conversation.testing`` does the same on its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import ssl
import sys
import threading
from typing import Any, List, Optional, TextIO

__all__ = ["add_emulator_arguments", "run_emulator", "main"]


def add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: 0, a free port)")
    parser.add_argument("--seed", choices=("none", "demo"), default="none",
                        help="'demo': a few subscribers, conversations and a few hundred messages")
    parser.add_argument("--subscriber", action="append", default=[], metavar="NAME",
                        help="create a subscriber (repeatable)")
    parser.add_argument("--token-ttl", type=float, default=24 * 3600.0, metavar="SECONDS",
                        help="lifetime of the tokens of --subscriber subscribers (default: 1 day)")
    parser.add_argument("--ping-interval", type=float, default=5.0, metavar="SECONDS",
                        help="seconds between server signalwire.ping frames (0: none; default 5)")
    parser.add_argument("--ignore-time-filters", action="store_true",
                        help="ignore since/until on message lists, as the live backend may")
    parser.add_argument("--page-size", type=int, default=50, help="default page_size of lists (default: 50)")
    parser.add_argument("--sender-field", choices=("from_fabric_address_id", "from_address_id"),
                        default="from_fabric_address_id", help="wire name of a message's sender")
    parser.add_argument("--tls-cert", metavar="PEM", help="serve https/wss with this certificate chain")
    parser.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    parser.add_argument("--project-id", metavar="ID",
                        help="the project id of the project credentials (default: a new random one)")
    parser.add_argument("--api-token", metavar="TOKEN",
                        help="the API token of the project credentials (default: a new random one)")
    parser.add_argument("--json", action="store_true", help="print the URLs and tokens as one JSON line")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log requests (-vv: debug)")


def _describe(info: Any, out: TextIO) -> None:
    out.write(f"SignalWire emulator\n  base URL:    {info['base_url']}\n  relay URL:   {info['relay_url']}\n")
    out.write(f"  control API: {info['control_url']}\n")
    if info["subscribers"]:
        out.write("  subscribers:\n")
        for s in info["subscribers"]:
            out.write(f"    {s['name']:<8} address {s['address_id']}\n             token {s['token']}\n")
    else:
        out.write("  no subscribers yet (use --seed demo or --subscriber NAME)\n")
    first = info["subscribers"][0]["token"] if info["subscribers"] else "<token>"
    out.write(
        "\nPoint the SDK at it with a subscriber token:\n"
        f"  SIGNALWIRE_TOKEN={first} SIGNALWIRE_BASE_URL={info['base_url']} "
        f"SIGNALWIRE_RELAY_URL={info['relay_url']}\n"
    )
    _describe_project(info, out)
    out.write("Stop with Ctrl+C.\n")


def _describe_project(info: Any, out: TextIO) -> None:
    """The project credentials, as lines to paste into a shell or a ``.env`` file."""
    out.write(
        "\nOr with the project credentials (Client.for_subscriber, SubscriberTokens); paste:\n"
        f"SIGNALWIRE_PROJECT_ID={info['project_id']}\n"
        f"SIGNALWIRE_API_TOKEN={info['api_token']}\n"
        f"SIGNALWIRE_SPACE={info['space']}\n"
        f"SIGNALWIRE_BASE_URL={info['base_url']}\n"
        f"SIGNALWIRE_RELAY_URL={info['relay_url']}\n\n"
    )


def run_emulator(args: argparse.Namespace, *, out: Optional[TextIO] = None,
                 stop: Optional[threading.Event] = None) -> int:
    """Run until Ctrl+C, SIGTERM or ``stop`` is set; returns the exit status."""
    from ._emulator import Emulator
    from ._seed import seed_demo

    out = out or sys.stdout
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
    context: Optional[ssl.SSLContext] = None
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    emu = Emulator(
        args.host,
        args.port,
        ssl_context=context,
        ping_interval=args.ping_interval or None,
        honour_time_filters=not args.ignore_time_filters,
        default_page_size=args.page_size,
        sender_field=args.sender_field,
        project_id=getattr(args, "project_id", None),
        api_token=getattr(args, "api_token", None),
    )
    stop_event = stop or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop_event.set())
    try:
        try:
            emu.start()
        except OSError as exc:
            sys.stderr.write(f"emulator: cannot listen on {args.host}:{args.port}: {exc}\n")
            return 1
        try:
            if args.seed == "demo":
                seed_demo(emu)
            for name in args.subscriber:
                try:
                    emu.subscriber(name)
                except KeyError:
                    emu.add_subscriber(name, token_ttl=args.token_ttl)
            info = emu.info()
            if args.json:
                out.write(json.dumps(info) + "\n")
            else:
                _describe(info, out)
            out.flush()
            while not stop_event.wait(0.5):  # until a signal or stop.set()
                pass
        finally:
            emu.stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m signalwire_conversation.testing",
        description="Run a local SignalWire Conversation backend (REST + websocket) in the foreground.",
    )
    add_emulator_arguments(parser)
    return run_emulator(parser.parse_args(argv))
