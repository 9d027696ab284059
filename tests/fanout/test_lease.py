"""The lease: SET NX PX, token-checked renewal and release, against a real Redis."""

from __future__ import annotations

import time

import pytest

from signalwire_conversation.fanout import Lease

from .conftest import wait_until

pytestmark = pytest.mark.redis


def test_one_holder_at_a_time(r) -> None:
    a = Lease(r, "s:lease", 5.0, token="a")
    b = Lease(r, "s:lease", 5.0, token="b")
    assert a.acquire() is True
    assert a.held()
    assert b.acquire() is False
    assert not b.held()
    assert b.other_remaining is not None and 4.0 < b.other_remaining <= 5.0
    assert a.holder() == "a" == b.holder()


def test_acquire_again_extends_own_lease(r) -> None:
    a = Lease(r, "s:lease", 5.0, token="a")
    assert a.acquire()
    r.pexpire("s:lease", 100)
    assert a.acquire() is True
    assert r.pttl("s:lease") > 4000


def test_renew_checks_the_token(r) -> None:
    a = Lease(r, "s:lease", 5.0, token="a")
    b = Lease(r, "s:lease", 5.0, token="b")
    assert a.acquire()
    r.set("s:lease", "b", px=5000)  # b took over (a's lease expired meanwhile)
    assert a.renew() is False
    assert not a.held()
    assert r.get("s:lease") == "b"
    assert b.renew() is True
    assert b.held()


def test_release_only_deletes_own_lease(r) -> None:
    a = Lease(r, "s:lease", 5.0, token="a")
    b = Lease(r, "s:lease", 5.0, token="b")
    assert a.acquire()
    assert b.release() is False
    assert r.get("s:lease") == "a"
    assert a.release() is True
    assert r.get("s:lease") is None
    assert b.acquire() is True


def test_expiry_lets_a_standby_in(r) -> None:
    a = Lease(r, "s:lease", 0.2, token="a")
    b = Lease(r, "s:lease", 0.2, token="b")
    assert a.acquire()
    assert not b.acquire()
    wait_until(lambda: r.get("s:lease") is None, 2.0, "the lease never expired")
    assert b.acquire()
    assert a.renew() is False


def test_local_validity_counts_from_before_the_request(r) -> None:
    a = Lease(r, "s:lease", 2.0, token="a")
    before = time.monotonic()
    assert a.acquire()
    assert before < a.valid_until <= time.monotonic() + 2.0
    assert not a.held(now=a.valid_until)


def test_ttl_must_be_positive(r) -> None:
    with pytest.raises(ValueError):
        Lease(r, "k", 0)
