"""The ``signalwire-conversation`` command line: a thin layer over the public API.

::

    signalwire-conversation demo                      # a tour against a local emulator
    signalwire-conversation conversations             # SIGNALWIRE_TOKEN or --token-file PATH
    signalwire-conversation messages ADDRESS_ID --limit 20 --since 2h
    signalwire-conversation send ADDRESS_ID "hello"
    signalwire-conversation tail --cursor-file PATH   # live messages until Ctrl+C, resumable
    signalwire-conversation whoami --subscriber alice # as a subscriber of your project
    signalwire-conversation token alice               # a fresh token, from project credentials

Human output is an aligned table with local times (with their UTC offset); ``--json`` prints
one JSON object per line for scripts, one documented shape per model (and nothing else on
stdout). Expected failures print one ``error: ...`` line on stderr, in the command line's own
words, and exit non-zero: 1 when the server or the network failed, 2 for a bad argument or
configuration, 130 when interrupted. ``--debug`` shows the SDK's log (requests and responses
with the start of their bodies, tokens redacted) and the traceback of an unexpected error.

The commands that need an optional extra (``emulator``, ``relay``, ``consume``, ``demo``) import
it only when they run, so ``--help`` and the plain API commands stay light.

The package has a module per job: :mod:`._args` (the parser class and argument types),
:mod:`._client` (the connection options and the ``Client`` they make), :mod:`._connection` (a
failed connection in one line), :mod:`._errors` (exit codes and error lines), :mod:`._json`
(the ``--json`` shapes), :mod:`._output` (tables, progress, notes), :mod:`._parser` (the
parser), :mod:`._cursor_file` (``tail --cursor-file``), :mod:`.rest` (``whoami``,
``conversations``, ``messages``, ``send``, ``join``), :mod:`.tail`, :mod:`.identity`
(``token``), :mod:`.extras` (``demo`` and the commands of optional subpackages),
:mod:`.fanout_args` (the arguments of ``relay`` and ``consume``) and :mod:`._main` (the entry
point).
"""

from __future__ import annotations

from ._args import non_negative_int, parse_time, positive_int, positive_seconds
from ._client import add_connection_arguments, client_from_args, token_from_args
from ._errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PROG, CLIError, UsageError
from ._main import main
from ._output import format_event, format_table, local_time
from ._parser import build_parser

__all__ = [
    "main",
    "build_parser",
    "parse_time",
    "CLIError",
    "UsageError",
    "add_connection_arguments",
    "client_from_args",
    "token_from_args",
    "positive_int",
    "non_negative_int",
    "positive_seconds",
    "format_event",
    "format_table",
    "local_time",
    "PROG",
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
]
