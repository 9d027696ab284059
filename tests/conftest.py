"""Shared test set-up: a clean ``SIGNALWIRE_*`` environment for every test."""

from __future__ import annotations

import os
from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def clean_signalwire_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's own SIGNALWIRE_* variables."""
    for name in list(os.environ):
        if name.startswith("SIGNALWIRE_"):
            monkeypatch.delenv(name, raising=False)
    yield
