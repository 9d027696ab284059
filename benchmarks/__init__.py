"""The benchmark suite of signalwire-conversation (run it with ``python -m benchmarks``).

Not part of the installed package. See docs/performance.md for the figures and how to
reproduce them.
"""
