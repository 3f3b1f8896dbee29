"""Signing keys on disk: files and modes, one active key, rotation state, retire rules."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from mcp_warden.demo.harness import cli_env, run_cli
from mcp_warden.errors import ConfigError
from mcp_warden.tokens.jwks import parse_jwks, public_jwk
from mcp_warden.tokens.jws import b64url_encode
from mcp_warden.tokens.keys import KeyDir, KeysError, kid_of
from tests.support.clock import NOW, FakeClock


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keydir(tmp_path: Path, clock: FakeClock) -> KeyDir:
    return KeyDir(tmp_path / "keys", clock=clock.time)


def test_new_key_files_and_modes(keydir: KeyDir) -> None:
    info = keydir.new()
    pem = keydir.path / f"{info.kid}.pem"
    assert mode(keydir.path) == 0o700
    assert mode(pem) == 0o600
    assert mode(keydir.path / "jwks.json") == 0o644
    assert mode(keydir.path / "state.json") == 0o644
    key = load_pem_private_key(pem.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    # PKCS#8 PEM, unencrypted: the file is exactly what that encoding of the key gives.
    assert pem.read_bytes() == key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    assert kid_of(key.public_key()) == info.kid
    jwks = json.loads((keydir.path / "jwks.json").read_text())
    assert jwks == {
        "keys": [
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": info.x,
                "kid": info.kid,
                "alg": "EdDSA",
                "use": "sig",
            }
        ]
    }
    state = json.loads((keydir.path / "state.json").read_text())
    assert set(state["keys"][0]) == {"kid", "x", "created", "stopped_signing"}
    secret = b64url_encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))
    for public_file in ("jwks.json", "state.json"):
        assert secret not in (keydir.path / public_file).read_text()
    assert info.active
    assert info.created == NOW


def test_rotation_keeps_old_key_published_and_one_active(keydir: KeyDir, clock: FakeClock) -> None:
    first = keydir.new()
    clock.now += 100
    second = keydir.new()
    keys = keydir.live_keys()
    assert [k.kid for k in keys] == [first.kid, second.kid]
    assert [k.active for k in keys] == [False, True]
    assert keys[0].stopped_signing == NOW + 100
    assert set(parse_jwks((keydir.path / "jwks.json").read_bytes())) == {first.kid, second.kid}
    assert keydir.signing_key()[0] == second.kid


def test_retire_refuses_the_active_key(keydir: KeyDir) -> None:
    info = keydir.new()
    with pytest.raises(KeysError, match="active signing key"):
        keydir.retire(info.kid, max_ttl=3600, force=True)


def test_retire_waits_max_ttl_after_the_key_stopped_signing(
    keydir: KeyDir, clock: FakeClock
) -> None:
    old = keydir.new()
    clock.now += 50
    keydir.new()
    clock.now += 3599
    with pytest.raises(KeysError, match="--force"):
        keydir.retire(old.kid, max_ttl=3600)
    assert keydir.live_keys()[0].retirable_at(3600) == NOW + 50 + 3600
    clock.now += 1
    keydir.retire(old.kid, max_ttl=3600)
    assert not (keydir.path / f"{old.kid}.pem").exists()
    assert old.kid not in parse_jwks((keydir.path / "jwks.json").read_bytes())
    assert [k.kid for k in keydir.live_keys()] != [old.kid]
    assert len(keydir.live_keys()) == 1


def test_retire_force(keydir: KeyDir) -> None:
    old = keydir.new()
    keydir.new()
    keydir.retire(old.kid, max_ttl=86_400, force=True)
    assert old.kid not in parse_jwks((keydir.path / "jwks.json").read_bytes())


def test_retire_unknown_kid(keydir: KeyDir) -> None:
    keydir.new()
    with pytest.raises(KeysError, match="no live key"):
        keydir.retire("A" * 43, max_ttl=1, force=True)


def test_signing_key_needs_a_key(keydir: KeyDir) -> None:
    with pytest.raises(ConfigError, match="keys new"):
        keydir.signing_key()


def test_signing_key_refuses_a_readable_pem(keydir: KeyDir) -> None:
    info = keydir.new()
    (keydir.path / f"{info.kid}.pem").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        keydir.signing_key()


def test_signing_key_refuses_a_swapped_pem(keydir: KeyDir) -> None:
    info = keydir.new()
    other = KeyDir(keydir.path.parent / "other").new()
    pem = keydir.path / f"{info.kid}.pem"
    pem.write_bytes((keydir.path.parent / "other" / f"{other.kid}.pem").read_bytes())
    with pytest.raises(KeysError, match="does not hold"):
        keydir.signing_key()


def test_signing_key_refuses_an_unpublished_active_key(keydir: KeyDir) -> None:
    keydir.new()
    (keydir.path / "jwks.json").write_text('{"keys": []}')
    with pytest.raises(KeysError, match="not in"):
        keydir.signing_key()


@pytest.mark.parametrize(
    "state",
    [
        "{",
        '{"version": 2, "keys": []}',
        '{"version": 1}',
        '{"version": 1, "keys": [{"kid": "x", "x": "y", "created": 1, "stopped_signing": null}]}',
    ],
)
def test_damaged_state_is_refused(keydir: KeyDir, state: str) -> None:
    keydir.new()
    (keydir.path / "state.json").write_text(state)
    with pytest.raises(KeysError):
        keydir.live_keys()


def test_two_active_keys_are_refused(keydir: KeyDir) -> None:
    keydir.new()
    keydir.new()
    path = keydir.path / "state.json"
    doc = json.loads(path.read_text())
    for entry in doc["keys"]:
        entry["stopped_signing"] = None
    path.write_text(json.dumps(doc))
    with pytest.raises(KeysError, match="more than one active"):
        keydir.live_keys()


# -- a state file edited to publish someone else's key (through the real CLI) ------


def plant(keys_dir: Path, key: Ed25519PrivateKey, *, active: bool) -> str:
    """Add `key`'s public half to state.json as an attacker with write access to it would."""
    path = keys_dir / "state.json"
    doc = json.loads(path.read_text())
    jwk = public_jwk(key.public_key())
    if active:  # take over signing: the real active key marked as stopped
        for entry in doc["keys"]:
            entry["stopped_signing"] = entry["stopped_signing"] or NOW
    entry = {"kid": jwk["kid"], "x": jwk["x"], "created": NOW, "stopped_signing": None}
    doc["keys"].append(entry if active else {**entry, "stopped_signing": NOW})
    path.write_text(json.dumps(doc))
    return jwk["kid"]


@pytest.fixture
def keys_env(tmp_path: Path) -> dict[str, str]:
    return cli_env(MCP_KEYS_DIR=str(tmp_path / "keys"))


@pytest.mark.slow
@pytest.mark.parametrize("active", [False, True], ids=["published", "made_active"])
def test_keys_new_refuses_a_planted_public_key_and_leaves_the_jwks_unchanged(
    tmp_path: Path, keys_env: dict[str, str], active: bool
) -> None:
    keys_dir = tmp_path / "keys"
    assert run_cli(["keys", "new"], keys_env).returncode == 0
    published = (keys_dir / "jwks.json").read_bytes()
    planted = plant(keys_dir, Ed25519PrivateKey.generate(), active=active)
    done = run_cli(["keys", "new"], keys_env)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        f"mcp-warden: {keys_dir / 'state.json'} lists key {planted} but there is no private "
        f"key {keys_dir / planted}.pem, so `mcp-warden keys` did not make it and will not "
        f"publish it; restore {keys_dir / 'state.json'} from a backup or delete that entry, "
        "then run the command again"
    )
    assert (keys_dir / "jwks.json").read_bytes() == published
    assert planted not in (keys_dir / "jwks.json").read_text()
    assert len(list(keys_dir.glob("*.pem"))) == 1  # no new key was made either


@pytest.mark.slow
def test_keys_retire_refuses_to_republish_a_planted_key(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    keys_dir = tmp_path / "keys"
    first = run_cli(["keys", "new"], keys_env).stdout.strip()
    assert run_cli(["keys", "new"], keys_env).returncode == 0
    published = (keys_dir / "jwks.json").read_bytes()
    planted = plant(keys_dir, Ed25519PrivateKey.generate(), active=False)
    done = run_cli(["keys", "retire", first, "--force"], keys_env)
    assert done.returncode == 1
    assert f"lists key {planted} but there is no private key" in done.stderr
    assert (keys_dir / "jwks.json").read_bytes() == published
    assert (keys_dir / f"{first}.pem").exists()  # nothing was retired


def test_keys_new_refuses_a_state_entry_whose_pem_holds_another_key(keydir: KeyDir) -> None:
    keydir.new()
    planted = plant(keydir.path, Ed25519PrivateKey.generate(), active=False)
    ours = (keydir.path / f"{keydir.live_keys()[0].kid}.pem").read_bytes()
    pem = keydir.path / f"{planted}.pem"
    pem.write_bytes(ours)
    pem.chmod(0o600)
    with pytest.raises(KeysError, match=f"{pem} holds another key"):
        keydir.new()


@pytest.mark.slow
def test_keys_new_works_again_once_the_planted_entry_is_gone(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    keys_dir = tmp_path / "keys"
    assert run_cli(["keys", "new"], keys_env).returncode == 0
    state = (keys_dir / "state.json").read_text()
    plant(keys_dir, Ed25519PrivateKey.generate(), active=False)
    assert run_cli(["keys", "new"], keys_env).returncode == 1
    (keys_dir / "state.json").write_text(state)  # the operator restores it
    assert run_cli(["keys", "new"], keys_env).returncode == 0
    assert len(parse_jwks((keys_dir / "jwks.json").read_bytes())) == 2
