"""The one table of who may do what: roles, key scopes, keys capped by their issuing member, and the README's copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from spendstream.common.access import ACTIONS, ROLE_ACTIONS, ROLES, allowed, markdown_table, may_issue

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_shows_the_table_in_the_code() -> None:
    assert markdown_table() in README.read_text()


def test_each_role_holds_everything_the_role_below_holds() -> None:
    for lower, higher in zip(ROLES, ROLES[1:], strict=False):
        assert ROLE_ACTIONS[lower] < ROLE_ACTIONS[higher]


def test_no_role_writes_events_by_hand() -> None:
    assert not any(allowed("events.write", role=role) for role in ROLES)
    assert allowed("events.write", scope="ingest")


@pytest.mark.parametrize("issuer", ROLES)
def test_a_member_issued_key_holds_no_action_its_member_lacks(issuer: str) -> None:
    for scope in ("admin", "read"):
        for action in ACTIONS:
            if allowed(action, scope=scope, issuer=issuer):  # type: ignore[arg-type]
                assert allowed(action, role=issuer)  # type: ignore[arg-type]


@pytest.mark.parametrize("issuer", ROLES)
def test_an_ingest_key_meters_while_its_member_may_issue_one_and_does_nothing_else(issuer: str) -> None:
    may = may_issue("ingest", issuer)  # type: ignore[arg-type]
    assert allowed("events.write", scope="ingest", issuer=issuer) is may  # type: ignore[arg-type]
    assert allowed("reservations.write", scope="ingest", issuer=issuer) is may  # type: ignore[arg-type]
    others = [a for a in ACTIONS if a not in ("events.write", "reservations.write")]
    assert not any(allowed(a, scope="ingest", issuer=issuer) for a in others)  # type: ignore[arg-type]


def test_members_issue_ingest_and_read_keys_and_admins_every_key() -> None:
    assert not may_issue("read", "viewer")
    assert may_issue("ingest", "member") and may_issue("read", "member")
    assert not may_issue("admin", "member")
    assert may_issue("admin", "admin")
