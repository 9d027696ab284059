"""The [redis] extra: the SDK never imports redis; fanout says what to install without it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)


def test_importing_the_sdk_does_not_import_redis() -> None:
    result = run_python(
        """
        import sys
        import signalwire_conversation
        assert "redis" not in sys.modules, "redis was imported"
        assert not any(m.startswith("signalwire_conversation.fanout") for m in sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr


def test_fanout_without_redis_names_the_extra() -> None:
    result = run_python(
        """
        import sys
        sys.modules["redis"] = None  # as if redis-py were not installed
        try:
            import signalwire_conversation.fanout
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("imported without redis")
        """
    )
    assert result.returncode == 0, result.stderr
    assert 'pip install "signalwire-conversation[redis]"' in result.stdout


def test_cli_entry_points_exist() -> None:
    from signalwire_conversation import fanout

    for name in ("add_relay_arguments", "run_relay", "add_consume_arguments", "run_consume"):
        assert callable(getattr(fanout, name))


def test_public_names() -> None:
    from signalwire_conversation import fanout

    for name in fanout.__all__:
        assert hasattr(fanout, name), name


@pytest.mark.parametrize("command", ["relay", "relay-status", "consume"])
def test_module_help(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "signalwire_conversation.fanout", command, "--help"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0
    assert "--redis" in result.stdout
