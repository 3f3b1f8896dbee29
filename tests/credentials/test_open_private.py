"""files.open_private: how secret and audit files are opened (no links, own regular files)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from mcp_warden.credentials import files
from mcp_warden.errors import ConfigError

APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT


def test_creates_a_new_file_0600(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    os.close(files.open_private(path, APPEND, what="the audit log"))
    assert path.stat().st_mode & 0o777 == 0o600


def test_refuses_a_symlink_and_writes_nothing_through_it(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("keep me\n")
    link = tmp_path / "log.jsonl"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match=r"the audit log .* is a symbolic link"):
        files.open_private(link, APPEND | os.O_TRUNC, what="the audit log")
    assert target.read_text() == "keep me\n"


def test_refuses_a_dangling_symlink_without_creating_its_target(tmp_path: Path) -> None:
    link = tmp_path / "log.jsonl"
    link.symlink_to(tmp_path / "planted")
    with pytest.raises(ConfigError, match="symbolic link"):
        files.open_private(link, APPEND, what="the rotation log")
    assert not (tmp_path / "planted").exists()


def test_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "log.jsonl"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigError, match="not a regular file"):
        files.open_private(fifo, APPEND, what="the audit log")
    with pytest.raises(ConfigError, match="not a regular file"):
        files.open_private(fifo, os.O_RDONLY, what="the audit log")


def test_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        files.open_private(tmp_path, os.O_RDONLY, what="the audit log")


def test_warns_about_a_loose_mode(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text("")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="mcp_warden.credentials"):
        os.close(files.open_private(path, APPEND, what="the audit log"))
    assert "chmod 600" in caplog.text
    assert path.stat().st_mode & 0o777 == 0o644  # warned, not silently changed


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create another user's file")
def test_refuses_another_users_file(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text("")
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError, match="belongs to another user"):
        files.open_private(path, APPEND, what="the audit log")
