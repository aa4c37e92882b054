"""The brake on guessing keys, with the clock in the test's hand."""

from __future__ import annotations

import pytest

from spendstream.common import auth_brake
from spendstream.common.auth_brake import AuthBrake
from spendstream.common.settings import BaseServiceSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _brake(clock: Clock, per_address: int = 3, per_prefix: int = 100) -> AuthBrake:
    settings = BaseServiceSettings(
        auth_failures_per_address=per_address,
        auth_failures_per_key_prefix=per_prefix,
        auth_failure_window_seconds=60,
        auth_block_seconds=30,
    )
    return AuthBrake(settings, clock)


def test_past_the_limit_the_address_waits_and_a_failure_in_the_same_window_brakes_it_again() -> None:
    clock = Clock()
    brake = _brake(clock)
    assert [brake.failed("203.0.113.9", f"ssk_read_{i}") for i in range(3)] == [0, 0, 0]
    assert brake.address_wait("203.0.113.9") == 0
    assert brake.failed("203.0.113.9", "ssk_read_x") == 30
    clock.now += 10
    assert brake.address_wait("203.0.113.9") == 20
    assert brake.address_wait("198.51.100.4") == 0  # another client is never braked by it
    clock.now += 20
    assert brake.address_wait("203.0.113.9") == 0
    # The window (60 s) is still the one that counted the failures: one more guess, braked again.
    assert brake.failed("203.0.113.9", "ssk_read_y") == 30
    clock.now += 30  # block over, window over: a fresh allowance
    assert [brake.failed("203.0.113.9", f"ssk_read_{i}") for i in range(3)] == [0, 0, 0]


def test_failures_spread_wider_than_the_window_never_brake() -> None:
    clock = Clock()
    brake = _brake(clock)
    for i in range(20):
        assert brake.failed("203.0.113.9", f"ssk_read_{i}") == 0
        clock.now += 21  # three failures a minute: each window holds at most the limit


def test_one_prefix_guessed_from_many_addresses_is_braked_and_other_prefixes_are_not() -> None:
    clock = Clock()
    brake = _brake(clock, per_address=100, per_prefix=4)
    waits = [brake.failed(f"192.0.2.{i}", f"ssk_admin_AbCdEf{i:04d}") for i in range(6)]
    assert waits == [0, 0, 0, 0, 30, 30]
    assert brake.failed("192.0.2.99", "ssk_admin_ZyXwVu0000") == 0
    assert all(brake.address_wait(f"192.0.2.{i}") == 0 for i in range(6))


def test_a_client_spraying_addresses_and_prefixes_holds_bounded_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    brake = _brake(clock)
    monkeypatch.setattr(auth_brake, "MAX_TRACKED", 1000)
    for i in range(5000):
        brake.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", f"ssk_read_{i:08d}")
    assert len(brake._addresses._tallies) <= 1000 and len(brake._prefixes._tallies) <= 1000
