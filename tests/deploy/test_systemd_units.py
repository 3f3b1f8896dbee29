"""The shipped systemd units pass `systemd-analyze verify` and keep their hardening.

verify checks that ExecStart= names an existing executable, so the test copies each
unit with the shipped /usr/local/bin/mcp-warden replaced by this checkout's installed
`mcp-warden` (the only change), and verifies the copies: the template both as
written and as an instance (mcp-warden@8001.service). An unknown or misspelt
directive is only a warning to verify (exit 0), so its output must also be empty.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_warden.config import credential_name

pytestmark = pytest.mark.slow

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
SERVER, ISSUER = UNITS / "mcp-warden@.service", UNITS / "mcp-warden-issuer.service"
INSTALLED = "/usr/local/bin/mcp-warden"

HARDENING = [
    "DynamicUser=yes",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "CapabilityBoundingSet=",
    "UMask=0077",
    "StateDirectoryMode=0700",
]


def systemd_analyze() -> str:
    """systemd-analyze's path, or skip (fail in CI, where MCP_WARDEN_REQUIRE_SYSTEMD=1)."""
    binary = shutil.which("systemd-analyze")
    if binary is None:
        reason = "systemd-analyze not installed (apt-get install systemd; .ci/run does it)"
        if os.environ.get("MCP_WARDEN_REQUIRE_SYSTEMD") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def lines(unit: Path) -> list[str]:
    return [line.strip() for line in unit.read_text(encoding="utf-8").splitlines()]


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    binary = systemd_analyze()
    here = Path(sys.executable).parent / "mcp-warden"
    assert os.access(here, os.X_OK), here
    copies = []
    for unit in (SERVER, ISSUER):
        text = unit.read_text(encoding="utf-8")
        assert f"ExecStart={INSTALLED} " in text
        copy = tmp_path / unit.name
        copy.write_text(text.replace(INSTALLED, str(here)), encoding="utf-8")
        copies.append(copy)
    instance = tmp_path / "mcp-warden@8001.service"
    instance.symlink_to(copies[0].name)
    done = subprocess.run(
        [binary, "verify", "--man=no", *map(str, [*copies, instance])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""


def test_verify_would_catch_a_misspelt_directive(tmp_path: Path) -> None:
    binary = systemd_analyze()
    here = Path(sys.executable).parent / "mcp-warden"
    bad = tmp_path / "bad.service"
    text = ISSUER.read_text(encoding="utf-8").replace(INSTALLED, str(here))
    bad.write_text(text.replace("NoNewPrivileges=", "NoNewPrivilege="), encoding="utf-8")
    done = subprocess.run(
        [binary, "verify", "--man=no", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Unknown key 'NoNewPrivilege'" in done.stderr


@pytest.mark.parametrize("unit", [SERVER, ISSUER], ids=lambda u: u.name)
def test_the_units_are_hardened(unit: Path) -> None:
    active = [line for line in lines(unit) if line and not line.startswith("#")]
    for directive in HARDENING:
        assert directive in active, directive
    # no secret on a command line or in the environment
    assert not any(
        line.startswith("Environment=") and ("KEY=" in line or "PASSWORD=" in line)
        for line in active
    )


def test_the_server_unit_passes_the_master_key_as_the_credential_mcp_warden_reads() -> None:
    active = [line for line in lines(SERVER) if not line.startswith("#")]
    name = credential_name("MCP_ENCRYPTION_KEY")
    assert f"LoadCredential={name}:/etc/mcp-warden/master.key" in active
    assert "ExecStart=/usr/local/bin/mcp-warden serve --host 127.0.0.1 --port %i" in active
    assert "StateDirectory=mcp-warden" in active
