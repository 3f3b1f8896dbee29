"""The envelope format: round trips, strict parsing, authentication, Wycheproof."""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from mcp_warden.credentials.envelope import (
    Envelope,
    decrypt,
    encrypt,
    generate_key,
    parse_key,
)
from mcp_warden.credentials.errors import CredentialError, DecryptionFailed, InvalidEnvelope
from mcp_warden.errors import ConfigError
from tests.support.procs import vectors_dir

KEY = bytes(range(32))
HEX = "0123456789abcdef"
keys = st.binary(min_size=32, max_size=32)


def test_written_envelope_is_lowercase_hex_with_16_byte_iv_and_tag() -> None:
    text = encrypt("clé-é".encode(), KEY)
    iv, tag, ciphertext = text.split(":")
    assert len(iv) == 32
    assert len(tag) == 32
    assert len(ciphertext) == len("clé-é".encode()) * 2
    assert set(text) <= set(HEX + ":")
    assert decrypt(text, KEY) == "clé-é".encode()


def test_every_encryption_uses_a_fresh_iv() -> None:
    ivs = {encrypt(b"same", KEY).split(":")[0] for _ in range(50)}
    assert len(ivs) == 50


def test_empty_plaintext_has_an_empty_ciphertext_part() -> None:
    text = encrypt(b"", KEY)
    assert text.endswith(":")
    assert decrypt(text, KEY) == b""


def test_twelve_byte_iv_is_read() -> None:
    iv = secrets.token_bytes(12)
    sealed = AESGCM(KEY).encrypt(iv, b"twelve", None)
    text = f"{iv.hex()}:{sealed[-16:].hex()}:{sealed[:-16].hex()}"
    assert decrypt(text, KEY) == b"twelve"


def test_uppercase_hex_is_read_like_node_does() -> None:
    text = encrypt(b"upper", KEY)
    assert decrypt(text.upper(), KEY) == b"upper"


def test_errors_share_one_base() -> None:
    assert issubclass(InvalidEnvelope, CredentialError)
    assert issubclass(DecryptionFailed, CredentialError)


def test_wrong_key_says_both_possibilities() -> None:
    with pytest.raises(DecryptionFailed, match="key is wrong or the value was tampered"):
        decrypt(encrypt(b"x", KEY), bytes(32))


@given(plaintext=st.binary(max_size=512), key=keys)
def test_round_trip_of_arbitrary_bytes(plaintext: bytes, key: bytes) -> None:
    assert decrypt(encrypt(plaintext, key), key) == plaintext


@given(plaintext=st.binary(max_size=64), data=st.data())
def test_any_single_bit_flip_fails_authentication(plaintext: bytes, data: st.DataObject) -> None:
    envelope = Envelope.parse(encrypt(plaintext, KEY))
    parts = ["iv", "tag"] + (["ciphertext"] if plaintext else [])
    part = data.draw(st.sampled_from(parts))
    original: bytes = getattr(envelope, part)
    bit = data.draw(st.integers(0, len(original) * 8 - 1))
    flipped = bytearray(original)
    flipped[bit // 8] ^= 1 << (bit % 8)
    tampered = replace(envelope, **{part: bytes(flipped)})
    with pytest.raises(DecryptionFailed):
        decrypt(str(tampered), KEY)


@given(tag_size=st.integers(0, 40).filter(lambda n: n != 16))
def test_tag_of_any_other_size_is_refused(tag_size: int) -> None:
    iv, _, ciphertext = encrypt(b"x", KEY).split(":")
    with pytest.raises(InvalidEnvelope, match=r"part 2 \(tag\)"):
        decrypt(f"{iv}:{'ab' * tag_size}:{ciphertext}", KEY)


@given(cut=st.integers(1, 31))
def test_truncated_tag_is_refused(cut: int) -> None:
    iv, tag, ciphertext = encrypt(b"x", KEY).split(":")
    with pytest.raises(InvalidEnvelope):
        decrypt(f"{iv}:{tag[:-cut]}:{ciphertext}", KEY)


@given(iv_size=st.integers(0, 64).filter(lambda n: n not in (12, 16)))
def test_iv_of_other_sizes_is_refused(iv_size: int) -> None:
    _, tag, ciphertext = encrypt(b"x", KEY).split(":")
    with pytest.raises(InvalidEnvelope, match=r"part 1 \(IV\) is \d+ bytes"):
        decrypt(f"{'00' * iv_size}:{tag}:{ciphertext}", KEY)


@given(part=st.integers(0, 2), digit=st.sampled_from(HEX), data=st.data())
def test_odd_length_part_is_refused(part: int, digit: str, data: st.DataObject) -> None:
    parts = encrypt(b"some text", KEY).split(":")
    where = data.draw(st.integers(0, len(parts[part])))
    parts[part] = parts[part][:where] + digit + parts[part][where:]
    with pytest.raises(InvalidEnvelope, match="odd number of hex digits"):
        decrypt(":".join(parts), KEY)


NOT_HEX = st.characters(blacklist_characters=HEX + "ABCDEF:")


@given(part=st.integers(0, 2), char=NOT_HEX, data=st.data())
def test_non_hex_character_is_refused(part: int, char: str, data: st.DataObject) -> None:
    parts = encrypt(b"some text", KEY).split(":")
    where = data.draw(st.integers(0, len(parts[part]) - 1))
    parts[part] = parts[part][:where] + char + parts[part][where + 1 :]
    with pytest.raises(InvalidEnvelope, match="is not hex"):
        decrypt(":".join(parts), KEY)


@pytest.mark.parametrize("text", [" 00", "0x00", "00 ", "+0", "\u0660\u0660"])
def test_forms_bytes_fromhex_or_int_would_accept_are_refused(text: str) -> None:
    iv, tag, _ = encrypt(b"", KEY).split(":")
    with pytest.raises(InvalidEnvelope):
        decrypt(f"{iv}:{tag}:{text}", KEY)


@given(count=st.integers(0, 6).filter(lambda n: n != 3))
def test_extra_or_missing_colons_are_refused(count: int) -> None:
    iv, tag, ciphertext = encrypt(b"abc", KEY).split(":")
    pieces = [iv, tag, ciphertext, "00", "00", "00"][:count]
    with pytest.raises(InvalidEnvelope, match="needs exactly 3"):
        decrypt(":".join(pieces), KEY)


@given(key=st.binary(max_size=64).filter(lambda k: len(k) != 32))
def test_wrong_key_length_is_refused(key: bytes) -> None:
    with pytest.raises(InvalidEnvelope, match="needs exactly 32"):
        encrypt(b"x", key)
    with pytest.raises(InvalidEnvelope, match="needs exactly 32"):
        decrypt(encrypt(b"x", KEY), key)


def test_non_text_envelope_is_refused() -> None:
    with pytest.raises(InvalidEnvelope, match="must be text"):
        Envelope.parse(b"00:00:00")  # type: ignore[arg-type]


def _wycheproof() -> list[dict[str, Any]]:
    data = json.loads((vectors_dir() / "aes_gcm_256.json").read_text())
    return [
        {**test, "ivSize": group["ivSize"]}
        for group in data["testGroups"]
        if group["tagSize"] == 128
        for test in group["tests"]
    ]


def test_wycheproof_aes_gcm_256_vectors() -> None:
    """Vectors with no AAD and a 12/16-byte IV map onto the envelope; other IVs are refused."""
    valid = invalid = refused = unmappable = 0
    for vector in _wycheproof():
        key = bytes.fromhex(vector["key"])
        text = f"{vector['iv']}:{vector['tag']}:{vector['ct']}"
        where = f"tcId {vector['tcId']}"
        if vector["aad"]:
            unmappable += 1  # the envelope has no associated data
        elif vector["ivSize"] not in (96, 128):
            with pytest.raises(InvalidEnvelope, match=r"part 1 \(IV\)"):
                decrypt(text, key)
            refused += 1
        elif vector["result"] == "valid":
            assert decrypt(text, key) == bytes.fromhex(vector["msg"]), where
            valid += 1
        else:
            with pytest.raises(DecryptionFailed):
                decrypt(text, key)
            invalid += 1
    # Counts of the published file (see ../shared/vectors/SOURCE.md): the refused IVs are the
    # 0, 8-80, 120, 160, 256, 512, 1024 and 2056-bit ones.
    assert (valid, invalid, refused, unmappable) == (40, 27, 20, 18)


def test_generate_key_is_64_hex_and_parses() -> None:
    text = generate_key()
    assert len(text) == 64
    assert parse_key(text) == bytes.fromhex(text)
    assert generate_key() != text


def test_parse_key_accepts_uppercase() -> None:
    text = generate_key()
    assert parse_key(text.upper()) == bytes.fromhex(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ab" * 31, "is 62 characters; it must be exactly 64"),
        ("ab" * 33, "is 66 characters"),
        ("", "is 0 characters"),
        ("ab" * 31 + "zz", "not a hex digit at position 63"),
        ("ab" * 31 + " a", "not a hex digit at position 63"),
    ],
)
def test_parse_key_errors_are_config_errors_without_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_key(text)
    assert "keygen" in str(caught.value)
    if text:
        assert text not in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_fernet_key_gets_the_migration_hint() -> None:
    from cryptography.fernet import Fernet

    fernet_key = Fernet.generate_key().decode()
    with pytest.raises(ConfigError, match="import-fernet") as caught:
        parse_key(fernet_key)
    assert fernet_key not in str(caught.value)
