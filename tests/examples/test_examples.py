"""The example scripts run, against the emulator: script.py, worker.py, the notebook, the
example test suite, and the Python code blocks of the documentation."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from typing import Any, Dict, List

import pytest

from .conftest import EXAMPLES, PYTHON, REPO, People, needs_emulator

pytestmark = needs_emulator


def test_script_lists_conversations(people: People) -> None:
    proc = subprocess.run([PYTHON, os.path.join(EXAMPLES, "script.py")], capture_output=True, text=True, env=people.env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Conversations:" in proc.stdout
    assert people.emulator.group_id(people.alice, people.bob.address_id) in proc.stdout


def test_script_reads_sends_and_receives_live(people: People) -> None:
    proc = subprocess.run(
        [PYTHON, os.path.join(EXAMPLES, "script.py"), people.bob.address_id, "--text", "from the example"],
        capture_output=True, text=True, env=people.env(), timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "history 5" in proc.stdout
    assert "Sent message" in proc.stdout
    assert re.search(r"Live: .*: from the example", proc.stdout), proc.stdout


def test_script_reports_a_bad_token(people: People) -> None:
    people.emulator.revoke_token(people.alice.token)
    proc = subprocess.run([PYTHON, os.path.join(EXAMPLES, "script.py")], capture_output=True, text=True, env=people.env(), timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_worker_handles_messages_and_stops_on_sigterm(people: People) -> None:
    proc = subprocess.Popen(
        [PYTHON, os.path.join(EXAMPLES, "worker.py"), "--threads", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=people.env(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "listening"
        people.emulator.send_message(people.bob, people.alice.address_id, "work item")
        line = proc.stdout.readline()
        assert "handled" in line and line.rstrip().endswith(": work item"), line
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    assert out.strip().endswith("stopped")
    assert "Traceback" not in err


def test_notebook_cells_run_in_order() -> None:
    """Every code cell of examples/notebook.ipynb, executed in order in one namespace (no kernel:
    the notebook's code is what is tested, with IPython's display replaced by repr/_repr_html_)."""
    with open(os.path.join(EXAMPLES, "notebook.ipynb"), encoding="utf-8") as f:
        notebook = json.load(f)
    namespace: Dict[str, Any] = {"__name__": "__notebook__"}
    shown: List[Any] = []
    try:
        for cell in notebook["cells"]:
            if cell["cell_type"] != "code":
                continue
            assert not cell["outputs"], "commit the notebook without outputs"
            source = "".join(cell["source"])
            lines = source.rstrip().splitlines()
            body, last = "\n".join(lines[:-1]), lines[-1]
            try:  # like IPython: the value of a last expression is displayed
                compile(last, "<cell>", "eval")
            except SyntaxError:
                exec(compile(source, "<cell>", "exec"), namespace)
                continue
            exec(compile(body, "<cell>", "exec"), namespace)
            value = eval(compile(last, "<cell>", "eval"), namespace)
            shown.append(value)
            repr(value)
            html = getattr(value, "_repr_html_", None)
            if html is not None:
                assert "<table" in html()
    finally:
        for name in ("client", "emulator"):
            obj = namespace.get(name)
            if obj is not None:
                (obj.close if name == "client" else obj.stop)()
    page = namespace["page"]
    assert len(repr(page)) < 400, "a Page's repr must stay short"
    assert namespace["event"].text == "live from bob"
    assert len(namespace["rows"]) == 25


def test_the_example_test_suite_passes() -> None:
    proc = subprocess.run(
        [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(EXAMPLES, "testing")],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("SIGNALWIRE_")},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 passed" in proc.stdout


# -- the documentation's code blocks ---------------------------------------------------------

DOCS = os.path.join(REPO, "docs")
OWN_PAGES = [
    "quickstart.md",
    "concepts/pagination.md",
    "concepts/delivery.md",
    "concepts/errors.md",
    "concepts/threading.md",
    "concepts/logging.md",
    "guides/notebooks.md",
    "guides/testing.md",
]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("page", OWN_PAGES)
def test_doc_code_blocks_run(page: str, people: People) -> None:
    """Each ```python block of a page runs, in order, with ``address_id`` (bob's) defined and a
    ``client`` for alice (blocks meant only to be read use ```{code-block} python)."""
    with open(os.path.join(DOCS, page), encoding="utf-8") as f:
        blocks = FENCE.findall(f.read())
    from signalwire_conversation import Client

    client = Client()
    namespace: Dict[str, Any] = {"client": client, "address_id": people.bob.address_id, "__name__": "__doc__"}
    try:
        for n, block in enumerate(blocks):
            exec(compile(block, f"{page}[{n}]", "exec"), namespace)
    finally:
        namespace["client"].close()
        client.close()


def test_readme_use_it_runs_from_project_credentials(people: People, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's "Use it" block, as written, with the project credentials of the emulator in
    the environment (the ``people`` fixture) and ``address_id`` (bob's) defined; the client it
    makes is closed from here once a live message was printed, which ends its run_forever()."""
    import threading

    import signalwire_conversation
    from signalwire_conversation import SubscriberTokens

    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme[readme.index("## Use it"):]
    (block,) = FENCE.findall(section[: section.index("\n## ", 3)])
    emu = people.emulator
    with SubscriberTokens() as tokens:  # the subscriber exists already, with some history
        tokens.token_for("alice@example.com")
    alice = emu.subscriber("alice@example.com")
    emu.send_message(people.bob, alice.address_id, "earlier")

    made: List[Any] = []

    class Recorded(signalwire_conversation.Client):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(signalwire_conversation, "Client", Recorded)
    printed: List[tuple] = []
    namespace: Dict[str, Any] = {"address_id": people.bob.address_id, "print": lambda *a: printed.append(a)}
    errors: List[BaseException] = []

    def run() -> None:
        try:
            exec(compile(block, "README.md[Use it]", "exec"), namespace)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        emu.wait_connected(alice, timeout=15)
        emu.send_message(people.bob, alice.address_id, "live from bob")
        from waiting import wait_until

        wait_until(lambda: ("Bob", "live from bob") in printed, 15, "the live message printed")
    finally:
        for client in made:
            client.close()
        thread.join(15)
    assert not thread.is_alive() and not errors, errors
    assert len(made) == 1
    group = emu.group_id(alice, people.bob.address_id)
    assert [row for row in printed if len(row) == 2 and row[1] == group]  # the conversation
    history = [row[1:] for row in printed if len(row) == 3]  # (datetime, user_name, text)
    assert history == [("Bob", "earlier")]  # with the sender's name
    assert [m["text"] for m in emu.messages(group)][0] == "live from bob"
    assert "Hello from Python" in [m["text"] for m in emu.messages(group)]
