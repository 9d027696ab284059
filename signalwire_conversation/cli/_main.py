"""The entry point: parse, configure logging, run the command, turn failures into one line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable, Dict, Optional, Sequence, TextIO

from ..errors import SignalWireError
from . import extras, identity, rest, tail
from ._errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    CLIError,
    UsageError,
    error_line,
)
from ._output import _Output
from ._parser import build_parser

__all__ = ["main"]

LOGGER_NAME = "signalwire_conversation"

_COMMANDS: Dict[str, Callable[[argparse.Namespace, _Output], int]] = {
    **rest.COMMANDS,
    **tail.COMMANDS,
    **identity.COMMANDS,
    **extras.COMMANDS,
}


def _configure_logging(debug: bool, stderr: TextIO) -> Callable[[], None]:
    """``--debug``: every SDK log record on stderr. Otherwise none: the command reports what
    matters itself (one error line; ``tail`` notes reconnects). Returns an undo."""
    logger = logging.getLogger(LOGGER_NAME)
    handler: logging.Handler
    if debug:
        handler = logging.StreamHandler(stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s [%(threadName)s] %(message)s")
        )
        handler.setLevel(logging.DEBUG)
    else:
        handler = logging.NullHandler()  # also keeps logging's last-resort handler quiet
    previous_level = logger.level
    logger.addHandler(handler)
    if debug:
        logger.setLevel(logging.DEBUG)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)

    return undo


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (``sys.argv[1:]`` when ``argv`` is None)."""
    stdout, stderr = sys.stdout, sys.stderr
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    debug = "--debug" in arguments
    try:
        args, extra = parser.parse_known_args(arguments)
    except UsageError as exc:
        stderr.write(f"error: {exc.message}\n")
        return exc.code
    except SystemExit as exc:  # --help, --version
        return _exit_code(exc.code)
    debug = bool(getattr(args, "debug", False)) or debug
    command: Optional[str] = args.command
    if command is None:
        parser.print_help(stdout)
        return EXIT_USAGE
    if command not in extras._DELEGATED and extra:
        stderr.write(
            f"error: unrecognized arguments: {' '.join(extra)} (see '{PROG} {command} --help')\n"
        )
        return EXIT_USAGE
    undo_logging = _configure_logging(debug, stderr)
    try:
        if command in extras._DELEGATED:
            return extras._run_delegated(command, [a for a in extra if a != "--debug"], stdout)
        out = _Output(stdout, stderr, as_json=bool(args.json))
        return _COMMANDS[command](args, out)
    except SystemExit as exc:  # a delegated parser's --help
        return _exit_code(exc.code)
    except ImportError as exc:  # an optional dependency imported late, by the command itself
        stderr.write(f"error: {extras._missing_extra_line(command, exc)}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, without a second error at exit.
        _silence_stdout()
        return EXIT_FAILURE
    except (CLIError, SignalWireError) as exc:
        message, code = error_line(exc)
        if debug and isinstance(exc, SignalWireError):
            logging.getLogger(LOGGER_NAME).debug("error details", exc_info=exc)
        stderr.write(f"error: {message}\n")
        return code
    except Exception as exc:  # a bug: one line, unless --debug asks for the traceback
        if debug:
            raise
        stderr.write(
            f"error: unexpected {type(exc).__name__}: {exc} (run again with --debug for the "
            "traceback)\n"
        )
        return EXIT_FAILURE
    finally:
        undo_logging()


def _exit_code(code: Any) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return EXIT_FAILURE


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass

