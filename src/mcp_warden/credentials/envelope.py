"""The AES-256-GCM envelope shared with the tutorial's JavaScript variant.

An envelope is ``hex(iv) ":" hex(tag) ":" hex(ciphertext)``: a random 16-byte
IV (what the JavaScript variant writes), a 16-byte tag, no associated data,
UTF-8 plaintext (this module works on bytes; the store decodes). The key is
32 bytes, given to operators as 64 hex characters (`MCP_ENCRYPTION_KEY`, read
by Node with ``Buffer.from(key, "hex")``).

Writing always produces lowercase hex. Reading is strict, because Node is
not: exactly three parts, hex digits only (``bytes.fromhex`` alone would
accept spaces), a tag of exactly 16 bytes (Node accepts truncated tags,
which weaken authentication), an IV of 12 or 16 bytes.

Uppercase hex is accepted on read. Node's ``Buffer.from(hex, "hex")`` accepts
it, so an envelope written by another tool that Node reads must not be one we
refuse; and case carries no security meaning here: GCM authenticates the
decoded bytes, so an envelope re-cased by an attacker decodes to the same
authenticated bytes or fails authentication. Nothing in mcp-warden compares
envelopes as text.

`decrypt` never returns bytes that did not authenticate.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mcp_warden.credentials.errors import DecryptionFailed, InvalidEnvelope
from mcp_warden.errors import ConfigError

KEY_SIZE = 32
IV_SIZE = 16
TAG_SIZE = 16
READ_IV_SIZES = (12, 16)

_HEX_DIGITS = re.compile(r"[0-9a-fA-F]*")
_PART_NAMES = ("part 1 (IV)", "part 2 (tag)", "part 3 (ciphertext)")
_REDO = "the value is damaged or was not written by an AES-256-GCM envelope writer: set it again"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed envelope: the three byte strings, checked for size."""

    iv: bytes
    tag: bytes
    ciphertext: bytes

    @classmethod
    def parse(cls, text: str) -> Envelope:
        """Parse strictly; InvalidEnvelope names the part that is wrong."""
        if not isinstance(text, str):
            raise InvalidEnvelope(f"an envelope must be text, not {type(text).__name__}; {_REDO}")
        parts = text.split(":")
        if len(parts) != 3:
            raise InvalidEnvelope(
                f"the envelope has {len(parts)} part(s) separated by ':'; it needs exactly 3 "
                f"(iv:tag:ciphertext); {_REDO}"
            )
        iv, tag, ciphertext = (
            _unhex(part, label) for part, label in zip(parts, _PART_NAMES, strict=True)
        )
        if len(iv) not in READ_IV_SIZES:
            raise InvalidEnvelope(
                f"envelope {_PART_NAMES[0]} is {len(iv)} bytes; it must be 12 or 16; {_REDO}"
            )
        if len(tag) != TAG_SIZE:
            raise InvalidEnvelope(
                f"envelope {_PART_NAMES[1]} is {len(tag)} bytes; it must be exactly {TAG_SIZE} "
                f"(truncated tags are refused); {_REDO}"
            )
        return cls(iv, tag, ciphertext)

    def __str__(self) -> str:
        return f"{self.iv.hex()}:{self.tag.hex()}:{self.ciphertext.hex()}"

    def open(self, aead: AESGCM) -> bytes:
        """The authenticated plaintext, or DecryptionFailed."""
        try:
            return aead.decrypt(self.iv, self.ciphertext + self.tag, None)
        except InvalidTag:
            raise DecryptionFailed(
                "the envelope did not authenticate: either the key is wrong or the value was "
                "tampered with (AES-GCM cannot tell which); check the key, then restore or "
                "set the value again"
            ) from None


def cipher(key: bytes) -> AESGCM:
    """An AES-256-GCM object for `key` (exactly 32 bytes, else InvalidEnvelope)."""
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        size = len(key) if isinstance(key, bytes) else type(key).__name__
        raise InvalidEnvelope(
            f"the key is {size} bytes; AES-256-GCM needs exactly {KEY_SIZE} "
            "(parse MCP_ENCRYPTION_KEY with parse_key)"
        )
    return AESGCM(key)


def seal(plaintext: bytes, aead: AESGCM) -> Envelope:
    """Encrypt under a fresh random 16-byte IV."""
    iv = secrets.token_bytes(IV_SIZE)
    sealed = aead.encrypt(iv, plaintext, None)
    return Envelope(iv, sealed[-TAG_SIZE:], sealed[:-TAG_SIZE])


def encrypt(plaintext: bytes, key: bytes) -> str:
    """The envelope text of `plaintext` under `key` (lowercase hex)."""
    return str(seal(plaintext, cipher(key)))


def decrypt(envelope: str, key: bytes) -> bytes:
    """The authenticated plaintext of `envelope`; InvalidEnvelope or DecryptionFailed."""
    aead = cipher(key)
    return Envelope.parse(envelope).open(aead)


def generate_key() -> str:
    """A new master key as 64 lowercase hex characters (what `mcp-warden keygen` prints)."""
    return secrets.token_hex(KEY_SIZE)


def parse_key(text: str, variable: str = "MCP_ENCRYPTION_KEY") -> bytes:
    """The 32 key bytes of a 64-hex-character setting, or a ConfigError (exit 2).

    The message says what is wrong without echoing any character of the key.
    """
    fix = "create one with `mcp-warden keygen`"
    if len(text) != KEY_SIZE * 2:
        if _looks_like_fernet_key(text):
            raise ConfigError(
                f"{variable} looks like a Fernet key (the tutorial's Python variant); move it "
                f"to MCP_FERNET_KEY, {fix}, then run `mcp-warden cred import-fernet FILE`"
            )
        raise ConfigError(
            f"{variable} is {len(text)} characters; it must be exactly {KEY_SIZE * 2} hex "
            f"characters (32 bytes): {fix}"
        )
    for position, char in enumerate(text, start=1):
        if char not in "0123456789abcdefABCDEF":
            raise ConfigError(
                f"{variable} has a character that is not a hex digit at position {position}; "
                f"it must be {KEY_SIZE * 2} hex characters: {fix}"
            )
    return bytes.fromhex(text)


def _unhex(part: str, label: str) -> bytes:
    if _HEX_DIGITS.fullmatch(part) is None:
        raise InvalidEnvelope(f"envelope {label} is not hex (only 0-9, a-f allowed); {_REDO}")
    if len(part) % 2:
        raise InvalidEnvelope(f"envelope {label} has an odd number of hex digits; {_REDO}")
    return bytes.fromhex(part)


def _looks_like_fernet_key(text: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(text.encode("ascii"))) == 32 and len(text) == 44
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False
