"""Tests of the Redis fan-out (relay, lease, stream, consumers)."""
