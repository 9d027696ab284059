"""``tail --cursor-file``: resume where the last run stopped, the file replaced atomically."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, List, Set

import pytest

from signalwire_conversation import cli
from signalwire_conversation.cli import main
from signalwire_conversation.cli._cursor_file import CursorFile

from .conftest import EventStream, World, needs_emulator


def _tail(world: World, monkeypatch: pytest.MonkeyPatch, *argv: str) -> "tuple[threading.Thread, EventStream, List[int]]":
    out, err = EventStream("\n"), EventStream("listening")
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    subscribed = threading.Event()
    real_subscribe = cli.tail._subscribe

    def subscribe(*args: Any) -> Any:
        subscription = real_subscribe(*args)
        subscribed.set()
        return subscription

    monkeypatch.setattr(cli.tail, "_subscribe", subscribe)
    status: List[int] = []
    thread = threading.Thread(target=lambda: status.append(main(world.args("tail", "--json", *argv))), daemon=True)
    thread.start()
    assert subscribed.wait(10), err.getvalue()
    return thread, out, status


def _finish(thread: threading.Thread, out: EventStream, status: List[int]) -> List[Any]:
    thread.join(15)
    assert not thread.is_alive() and status == [0], out.getvalue()
    return [json.loads(line) for line in out.getvalue().splitlines()]


@needs_emulator
def test_tail_resumes_from_its_cursor_file(world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "cursors").mkdir()
    path = tmp_path / "cursors" / "tail.cursor"
    thread, out, status = _tail(world, monkeypatch, "--cursor-file", str(path), "--count", "2")
    world.emulator.send_message(world.bob, world.alice.address_id, "live 1")
    world.emulator.send_message(world.carol, world.alice.address_id, "live 2")
    first = _finish(thread, out, status)
    assert [e["text"] for e in first] == ["live 1", "live 2"]
    assert path.read_text() == first[-1]["cursor"] + "\n"  # the last printed event's cursor

    # stored while no tail runs: the next run prints them first, each once, in order
    for n in range(3):
        world.emulator.send_message(world.bob, world.alice.address_id, f"while away {n}")
    thread, out, status = _tail(world, monkeypatch, "--cursor-file", str(path), "--count", "4")
    world.emulator.send_message(world.bob, world.alice.address_id, "live 3")
    second = _finish(thread, out, status)
    assert [e["text"] for e in second] == ["while away 0", "while away 1", "while away 2", "live 3"]
    assert path.read_text() == second[-1]["cursor"] + "\n"
    assert len({e["cursor"] for e in first + second}) == 6
    assert [p.name for p in path.parent.iterdir()] == ["tail.cursor"]  # no temporary file left


@needs_emulator
def test_a_cursor_file_without_a_cursor(world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tail.cursor"
    path.write_text("not a cursor\n")
    assert main(world.args("tail", "--cursor-file", str(path))) == 2
    assert capsys.readouterr().err == (
        f"error: --cursor-file {path} does not hold a cursor: not a cursor made by this SDK (an event's .cursor): "
        "'not a cursor'\n"
    )


def test_a_cursor_file_in_a_missing_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from .test_cli_offline import fake_token

    monkeypatch.setenv("SIGNALWIRE_TOKEN", fake_token())
    path = tmp_path / "nowhere" / "tail.cursor"
    assert main(["tail", "--cursor-file", str(path)]) == 2
    assert capsys.readouterr().err == f"error: --cursor-file {path}: no such directory\n"


def test_the_file_is_replaced_atomically(tmp_path: Path) -> None:
    """A reader running beside the writer only ever sees a whole cursor, never a torn one."""
    path = tmp_path / "c"
    cursors = [f"v1:{n}.5:{'m' * (n % 97 + 1)}" for n in range(100)]
    file = CursorFile(str(path))
    file.save(cursors[0])
    seen: Set[str] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.add(path.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for cursor in cursors[1:]:
            file.save(cursor)
    finally:
        done.set()
        reader.join(10)
    assert seen and seen <= {c + "\n" for c in cursors}
    assert file.load() == cursors[-1]
    assert os.listdir(tmp_path) == ["c"]
