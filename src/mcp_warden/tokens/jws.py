"""Strict base64url and compact-JWS splitting: the bytes a verifier may trust to parse.

Everything here refuses rather than repairs. A compact JWS is accepted only
when it is at most 8 KiB of ASCII, has exactly three segments, and every
segment is canonical base64url (RFC 7515 section 2: no padding, only the
URL-safe alphabet, and re-encoding the decoded bytes gives the segment back,
so no two spellings of one token exist). A segment's JSON must be an object
of plain JSON: no NaN or Infinity, and no nesting deeper than the parser can
take (a hostile header of a thousand nested arrays fits in 8 KiB; it is
malformed, never an error of the server).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAX_TOKEN_CHARS = 8 * 1024
ED25519_SIGNATURE_BYTES = 64

# Three segments of the URL-safe alphabet, nothing else (not even a newline). Only the
# header must be non-empty here: an empty signature (alg "none") is refused for its alg.
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", b"", b"==", b"=")  # indexed by len % 4; 1 is never valid (checked first)
# The last character of an unpadded segment has unused low bits that must be zero
# (4 bits when len % 4 == 2, 2 bits when len % 4 == 3): otherwise it is a second
# spelling of the same bytes.
_CANONICAL_LAST = {
    0: frozenset(_ALPHABET),
    2: frozenset(_ALPHABET[::16]),
    3: frozenset(_ALPHABET[::4]),
}


class MalformedError(ValueError):
    """Bytes that are not what this module accepts; the message says which rule failed."""


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


_JSON = json.JSONDecoder(parse_constant=_no_constants)


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode canonical unpadded base64url, or raise MalformedError."""
    if not _B64URL.fullmatch(text):
        raise MalformedError("not base64url: only A-Z a-z 0-9 - _ without padding")
    return _decode_alphabet_checked(text)


def _decode_alphabet_checked(text: str) -> bytes:
    """Decode `text`, already known to use only the base64url alphabet."""
    rest = len(text) % 4
    if rest == 1:
        raise MalformedError("base64url of impossible length")
    if text and text[-1] not in _CANONICAL_LAST[rest]:
        raise MalformedError("non-canonical base64url (unused bits set)")
    try:
        return binascii.a2b_base64(
            text.encode("ascii").translate(_TO_STANDARD) + _PADDING[rest], strict_mode=True
        )
    except binascii.Error:  # pragma: no cover - the alphabet and length are checked above
        raise MalformedError("not base64url") from None


def split_compact(token: str) -> tuple[str, str, str]:
    """The three segments of a compact JWS, after the size and alphabet checks.

    Runs before any decoding: over 8 KiB, non-ASCII, padding, whitespace or a
    segment count other than three is refused here.
    """
    if len(token) > MAX_TOKEN_CHARS:
        raise MalformedError(f"token longer than {MAX_TOKEN_CHARS} characters")
    if not _COMPACT.fullmatch(token):
        raise MalformedError(
            "not a compact JWS: expected three base64url segments separated by '.'"
        )
    header, payload, signature = token.split(".")
    return header, payload, signature


def decode_segment(segment: str) -> bytes:
    """Decode a segment that `split_compact` returned (alphabet already checked)."""
    return _decode_alphabet_checked(segment)


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """The JSON object in a decoded segment (`what`: "header", "payload"), or MalformedError."""
    try:
        doc = _JSON.decode(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):  # ValueError covers JSONDecodeError, huge ints
        raise MalformedError(f"{what} is not UTF-8 JSON") from None
    except RecursionError:  # nesting the parser cannot take: refused, not a crash
        raise MalformedError(f"{what} is nested too deeply to be a JWS {what}") from None
    if type(doc) is not dict:
        raise MalformedError(f"{what} is not a JSON object")
    return doc


def ed25519_verify(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` under `key`.

    One call into OpenSSL via `cryptography`; wrong lengths are simply invalid.
    """
    if len(signature) != ED25519_SIGNATURE_BYTES:
        return False
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
