"""A running `mcp-warden serve` and its SQLite revocation store changing under it.

Each test runs a real server and makes every revocation with the real CLI in
another process: a `--sub` revocation against a token whose `iat` is ahead
within the leeway, a store moved aside (`mv revocations.db* aside/`), a
backup restored in place, and a store whose directory disappears (/healthz).
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from mcp_warden.demo.harness import post, tools_call
from tests.support.server import Deployment, Served, deployment
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

SEARCH = {"query": "revocation store"}
WINDOW = 1.0  # MCP_REVOCATION_REFRESH_SECONDS (0.5 s) plus one read, as tests/server/test_http


def call(server: Served, token: str) -> httpx.Response:
    return post(server.url, tools_call("web_search", SEARCH), token)


def until_refused(server: Served, token: str, within: float = 3.0) -> float:
    """Seconds until the server answers 401 revoked for `token`."""
    seen = eventually(
        lambda: call(server, token).status_code == 401, within, "token still accepted"
    )
    assert 'error_description="revoked: ' in call(server, token).headers["www-authenticate"]
    return seen


def jti(token: str) -> str:
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


def in_file(db: Path, token: str) -> bool:
    """Whether the revocation of `token` is in the SQLite file (read by a fresh connection)."""
    with closing(sqlite3.connect(db)) as check:
        query = "SELECT 1 FROM revocations WHERE kind = 'jti' AND key = ?"
        return check.execute(query, (jti(token),)).fetchone() is not None


def health(lab: Deployment) -> int:
    return httpx.get(f"http://127.0.0.1:{lab.port}/healthz", trust_env=False).status_code


def test_revoke_sub_refuses_tokens_with_iat_ahead_within_leeway(
    lab: Deployment, server: Served
) -> None:
    now = int(time.time())
    # Minted just before the revocation by an issuer whose clock runs 25 s ahead.
    ahead = lab.forge(sub="clock-ahead", iat=now + 25, nbf=now + 25, exp=now + 600)
    assert call(server, ahead).status_code == 200
    done = lab.cli("token", "revoke", "--sub", "clock-ahead")
    assert done.returncode == 0, done.stderr
    assert until_refused(server, ahead) < WINDOW
    assert "(now + MCP_TOKEN_LEEWAY)" in done.stderr


def test_server_follows_a_store_moved_aside_and_refuses_a_token_revoked_in_the_new_file(
    tmp_path: Path,
) -> None:
    with deployment(tmp_path) as lab, lab.serve() as server:
        db = tmp_path / "revocations.db"
        first = lab.mint(["web_search"], sub="first")
        second = lab.mint(["web_search"], sub="second")
        lab.revoke(first)
        until_refused(server, first)
        aside = tmp_path / "aside"
        aside.mkdir()
        for file in tmp_path.glob("revocations.db*"):  # mv revocations.db* aside/
            file.rename(aside / file.name)
        assert call(server, second).status_code == 200
        lab.revoke(second)  # `token revoke` writes into a new file at the path
        assert until_refused(server, second) < WINDOW
        assert call(server, first).status_code == 401
        # The server wrote what it knew into the new file; the moved file is as it was.
        eventually(lambda: in_file(db, first), 3.0, "first revocation not written back")
        assert in_file(db, second)
        assert not in_file(aside / db.name, second)
        assert health(lab) == 200


def test_server_notices_a_backup_restored_in_place_and_refuses_a_token_revoked_after(
    tmp_path: Path,
) -> None:
    with deployment(tmp_path) as lab, lab.serve() as server:
        db, backup = tmp_path / "revocations.db", tmp_path / "backup.db"
        kept, lost, new = (lab.mint(["web_search"], sub=s) for s in ("kept", "lost", "new"))
        lab.revoke(kept)
        with closing(sqlite3.connect(db)) as live, closing(sqlite3.connect(backup)) as copy:
            live.backup(copy)
        lab.revoke(lost)
        until_refused(server, lost)  # the server's cursor is past the backup's last id
        # Restore in place through SQLite (as `sqlite3 revocations.db ".restore backup.db"`).
        with closing(sqlite3.connect(backup)) as copy, closing(sqlite3.connect(db)) as live:
            copy.backup(live)
        assert not in_file(db, lost)
        assert call(server, new).status_code == 200
        lab.revoke(new)  # its row reuses an id at or below the server's cursor
        assert until_refused(server, new) < WINDOW
        assert call(server, lost).status_code == 401
        eventually(lambda: in_file(db, lost), 3.0, "lost revocation not written back")
        assert call(server, kept).status_code == 401


def test_healthz_turns_503_when_the_store_is_gone_and_recovers_when_it_is_back(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    settings = {
        "MCP_REVOCATION_URL": f"sqlite:///{state / 'revocations.db'}",
        "MCP_REVOCATION_STALE_SECONDS": "1",
    }
    with deployment(tmp_path, **settings) as lab, lab.serve() as server:
        token = lab.mint(["web_search"])
        assert health(lab) == 200
        state.rename(tmp_path / "state-aside")  # the store's directory is gone
        eventually(lambda: health(lab) == 503, 5.0, "/healthz still 200 without a store")
        refused = call(server, token)
        assert refused.status_code == 503
        assert refused.json()["error"]["message"].startswith("revocation_unavailable: ")
        (tmp_path / "state-aside").rename(state)
        eventually(lambda: health(lab) == 200, 5.0, "/healthz not back to 200")
        assert call(server, token).status_code == 200
