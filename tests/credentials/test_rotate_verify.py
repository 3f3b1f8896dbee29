"""`cred rotate --verify`: the new Scavio key is tried upstream before it replaces the old one.

Real parts: the `mcp-warden` process and the Scavio-compatible stub over HTTP.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcp_warden.demo.harness import run_cli, stub_process
from mcp_warden.demo.stub import key_id
from tests.support.credentials import LOG, cred_env, new_master_key
from tests.support.stub import new_api_key

pytestmark = pytest.mark.slow


def test_rotate_verify_keeps_old_value_when_upstream_rejects(tmp_path: Path) -> None:
    old, good, bad = new_api_key(), new_api_key(), new_api_key()
    with stub_process(tmp_path, keys=[old, good]) as stub:
        env = cred_env(tmp_path, new_master_key(), SCAVIO_BASE_URL=stub.url)
        assert run_cli(["cred", "set", "scavio_api_key"], env, input=old).returncode == 0

        refused = run_cli(["cred", "rotate", "scavio_api_key", "--verify"], env, input=bad)
        assert refused.returncode == 1, refused.stderr
        assert "rejected the new key" in refused.stderr
        assert "nothing was changed" in refused.stderr
        assert bad not in refused.stderr + refused.stdout
        assert run_cli(["cred", "get", "scavio_api_key"], env).stdout == old + "\n"
        assert stub.keys_used() == [key_id(bad)]  # one free usage call, with the new key

        accepted = run_cli(["cred", "rotate", "scavio_api_key", "--verify"], env, input=good)
        assert accepted.returncode == 0, accepted.stderr
        assert run_cli(["cred", "get", "scavio_api_key"], env).stdout == good + "\n"
        assert stub.keys_used() == [key_id(bad), key_id(good)]

    actions = [json.loads(line)["action"] for line in (tmp_path / LOG).read_text().splitlines()]
    assert actions == ["created", "rotate_failed", "rotated"]


def test_rotate_verify_reports_unreachable_upstream(tmp_path: Path) -> None:
    env = cred_env(tmp_path, new_master_key(), SCAVIO_BASE_URL="http://127.0.0.1:9")
    old = new_api_key()
    assert run_cli(["cred", "set", "scavio_api_key"], env, input=old).returncode == 0
    result = run_cli(["cred", "rotate", "scavio_api_key", "--verify"], env, input=new_api_key())
    assert result.returncode == 1
    assert "could not verify the new key" in result.stderr
    assert run_cli(["cred", "get", "scavio_api_key"], env).stdout == old + "\n"


def test_verify_is_only_for_the_scavio_credential(tmp_path: Path) -> None:
    env = cred_env(tmp_path, new_master_key())
    assert run_cli(["cred", "set", "other"], env, input="v").returncode == 0
    result = run_cli(["cred", "rotate", "other", "--verify"], env, input="w")
    assert result.returncode == 2
    assert "--verify knows how to check 'scavio_api_key'" in result.stderr
