"""What a revocation means, the same on every backend (memory, SQLite, a real Redis)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mcp_warden.tokens.revocation import Denylist, SyncedDenylist, sub_cutoff
from tests.support.clock import FakeClock
from tests.support.revocation import LEEWAY, MAX_TTL, open_store, settings_for

Open = Callable[..., Denylist]


def sync(denylist: Denylist) -> None:
    if isinstance(denylist, SyncedDenylist):
        denylist.sync()


def test_a_revoked_jti_is_refused_and_others_are_not(any_url: str, opened: Open) -> None:
    now = 1_800_000_000
    denylist = opened(settings_for(any_url))
    assert not denylist.is_revoked("jti-1", "alice", now)
    denylist.revoke_jti("jti-1", now + 60)
    assert denylist.is_revoked("jti-1", "alice", now)
    assert denylist.is_revoked("jti-1", "bob", now - 1000)
    assert not denylist.is_revoked("jti-2", "alice", now)


def test_a_revoked_sub_refuses_tokens_issued_at_or_before(any_url: str, opened: Open) -> None:
    at = 1_800_000_000
    denylist = opened(settings_for(any_url))
    denylist.revoke_sub("alice", at)
    assert denylist.is_revoked("jti-1", "alice", at)
    assert denylist.is_revoked("jti-2", "alice", at - 3600)
    assert not denylist.is_revoked("jti-3", "alice", at + 1)
    assert not denylist.is_revoked("jti-1", "bob", at)


def test_revoking_again_keeps_the_later_time(any_url: str, opened: Open) -> None:
    at = 1_800_000_000
    denylist = opened(settings_for(any_url))
    denylist.revoke_sub("alice", at + 10)
    denylist.revoke_sub("alice", at)
    assert denylist.is_revoked("jti-1", "alice", at + 10)
    sync(denylist)
    assert denylist.is_revoked("jti-1", "alice", at + 10)


def test_expired_entries_leave_the_view(any_url: str, opened: Open, clock: FakeClock) -> None:
    now = int(clock.now)
    denylist = opened(settings_for(any_url), clock=clock.time)
    denylist.revoke_jti("short", now + 10)
    denylist.revoke_sub("alice", now)
    assert len(denylist) == 2  # type: ignore[arg-type]

    clock.now = now + 10 + LEEWAY  # exp + leeway: a token could still pass
    denylist.revoke_jti("other", now + 100)
    sync(denylist)
    assert denylist.is_revoked("short", "bob", now)

    clock.now = now + 10 + LEEWAY + 1
    denylist.revoke_jti("other", now + 100)
    sync(denylist)
    assert not denylist.is_revoked("short", "bob", now)
    assert denylist.is_revoked("x", "alice", now)
    assert len(denylist) == 2  # type: ignore[arg-type]

    clock.now = now + MAX_TTL + LEEWAY + 1  # every token alice had then is expired
    denylist.revoke_jti("other", now + 100)
    sync(denylist)
    assert not denylist.is_revoked("x", "alice", now)
    assert len(denylist) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("jti", "exp", "error"),
    [
        ("", 1, ValueError),
        ("jti", "1", TypeError),
        ("jti", 1.5, TypeError),
        ("jti", True, TypeError),
        (None, 1, TypeError),
        (b"jti", 1, TypeError),
    ],
)
def test_malformed_entries_are_refused(
    any_url: str, jti: object, exp: object, error: type[Exception], opened: Open
) -> None:
    denylist = opened(settings_for(any_url))
    with pytest.raises(error):
        denylist.revoke_jti(jti, exp)  # type: ignore[arg-type]
    with pytest.raises(error):
        denylist.revoke_sub(jti, exp)  # type: ignore[arg-type]
    assert len(denylist) == 0  # type: ignore[arg-type]


def test_a_sub_revoked_at_the_cutoff_outlives_every_token_it_refuses(
    any_url: str, opened: Open, clock: FakeClock
) -> None:
    """`sub_cutoff` covers an `iat` up to the leeway ahead, and the entry's expiry
    (at + max_ttl + leeway) still outlasts the longest such token."""
    now = int(clock.now)
    at = sub_cutoff(now, LEEWAY)
    assert at == now + LEEWAY
    denylist = opened(settings_for(any_url), clock=clock.time)
    denylist.revoke_sub("alice", at)
    ahead = now + LEEWAY  # minted just before the revocation on a clock LEEWAY ahead
    assert denylist.is_revoked("j", "alice", ahead)
    assert not denylist.is_revoked("j", "alice", ahead + 1)
    clock.now = ahead + MAX_TTL - 1  # that token's latest exp is ahead + MAX_TTL
    denylist.revoke_jti("other", int(clock.now) + 60)  # a write purges what expired
    sync(denylist)
    assert denylist.is_revoked("j", "alice", ahead)


@pytest.mark.parametrize("kind", ["jti", "sub"])
def test_every_backend_keeps_an_entry_to_the_same_last_second(
    any_url: str, kind: str, opened: Open, clock: FakeClock
) -> None:
    """One expiry rule: a jti until exp + leeway, a sub until at + max_ttl + leeway, then gone,
    from this process's view and from the shared store alike."""
    now = int(clock.now)
    denylist = opened(settings_for(any_url), clock=clock.time)
    if kind == "jti":
        denylist.revoke_jti("leaked", now + 10)
        last = now + 10 + LEEWAY
    else:
        denylist.revoke_sub("alice", now)
        last = now + MAX_TTL + LEEWAY
    reader = None if any_url == "memory://" else open_store(any_url)
    try:
        for when, kept in ((last, True), (last + 1, False)):
            clock.now = when
            denylist.revoke_jti(f"write-{when}", when + 60)  # a write purges what expired
            sync(denylist)
            assert denylist.is_revoked("leaked", "alice", now) is kept, when - now
            if reader is not None:
                stored = reader.load(when)
                assert ("leaked" in stored.jtis or "alice" in stored.subs) is kept
    finally:
        if reader is not None:
            reader.close()
