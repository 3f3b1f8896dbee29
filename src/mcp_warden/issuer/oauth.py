"""OAuth 2.0 on the wire: strict form bodies, HTTP Basic client credentials, error answers.

Form bodies (RFC 6749 section 3.2, `application/x-www-form-urlencoded`) are
read with a hard limit (MAX_BODY_BYTES): a Content-Length above it is
refused before any byte is read, and a body streamed without one is
refused as soon as it passes the limit, without reading the rest. Parsing
is the standard library's `parse_qsl` in strict mode (a field without "=",
bad percent-encoding or invalid UTF-8 is malformed), then stricter than
most servers: a parameter sent twice is `invalid_request` (RFC 6749 section
3.1: "MUST NOT be included more than once"), and an empty value counts as
absent (same section).

Errors are RFC 6749 section 5.2 JSON with `Cache-Control: no-store`; an
`error_description` says what to fix in one line and never echoes a secret,
an assertion or a token.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote_plus

MAX_BODY_BYTES = 16 * 1024
MAX_FIELDS = 32
FORM_TYPE = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
BASIC_REALM = 'Basic realm="mcp-warden issuer", charset="UTF-8"'
# Parameters RFC 8707 lets a client repeat; we issue single-audience tokens, so
# a repeat is refused with the error that names the parameter, not invalid_request.
REPEATABLE_AS_TARGET = ("resource",)


@dataclass
class OAuthError(Exception):
    """An RFC 6749 section 5.2 error answer, and the stable word the audit line gives."""

    error: str
    description: str
    reason: str
    status: int = 400
    headers: dict[str, str] = field(default_factory=dict)
    client_id: str | None = None
    authenticated: bool = False  # client_id authenticated (not only claimed): metrics name it

    def __post_init__(self) -> None:
        super().__init__(self.description)

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def invalid_request(description: str, reason: str) -> OAuthError:
    return OAuthError("invalid_request", description, reason)


def invalid_client(
    description: str, reason: str, *, client_id: str | None, basic: bool
) -> OAuthError:
    """invalid_client: 401 with a Basic challenge when Basic (or nothing) was tried, else 400.

    RFC 6749 section 5.2: a client that authenticated with the Authorization
    header MUST get 401 and a WWW-Authenticate of that scheme.
    """
    if basic:
        return OAuthError(
            "invalid_client",
            description,
            reason,
            401,
            {"WWW-Authenticate": BASIC_REALM},
            client_id,
        )
    return OAuthError("invalid_client", description, reason, 400, {}, client_id)


async def read_form(
    content_type: str | None, content_length: str | None, chunks: AsyncIterator[bytes]
) -> dict[str, str]:
    """The parameters of a form body, strictly (OAuthError invalid_request otherwise)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != FORM_TYPE:
        raise invalid_request(
            f"send the parameters as {FORM_TYPE} (RFC 6749 section 3.2)", "malformed_body"
        )
    if content_length is not None:
        if not content_length.isdigit():
            raise invalid_request("the Content-Length header is not a number", "malformed_body")
        if int(content_length) > MAX_BODY_BYTES:
            raise _too_large()
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _too_large()
    return parse_form(bytes(body))


def parse_form(body: bytes) -> dict[str, str]:
    """Strict `application/x-www-form-urlencoded`: UTF-8, no repeats, empty values dropped."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise invalid_request(
            "the body is not a well-formed application/x-www-form-urlencoded form "
            "(name=value pairs joined by &, percent-encoded UTF-8)",
            "malformed_body",
        ) from None
    form: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        if name in seen:
            if name in REPEATABLE_AS_TARGET:
                raise OAuthError(
                    "invalid_target",
                    "give one resource: each token is for one MCP server",
                    "several_resources",
                )
            raise invalid_request(
                f"parameter {name[:40]!r} is sent more than once; send it once",
                "duplicate_parameter",
            )
        seen.add(name)
        if value:
            form[name] = value
    return form


def basic_credentials(header: str) -> tuple[str, str]:
    """(client_id, client_secret) of `Authorization: Basic ...` (RFC 6749 section 2.3.1).

    Both are form-urlencoded before base64 (so `+` is a space and `%3A` a colon).
    Raises ValueError when the header is not well-formed.
    """
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise ValueError("not Basic")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("bad base64") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise ValueError("no colon")
    client_id, secret = unquote_plus(client_id), unquote_plus(secret)
    if not client_id or not secret:
        raise ValueError("empty part")
    return client_id, secret


def error_headers(error: OAuthError) -> Mapping[str, str]:
    return {**NO_STORE, **error.headers}


def _too_large() -> OAuthError:
    return invalid_request(
        f"the body is over {MAX_BODY_BYTES} bytes; send only the OAuth parameters",
        "body_too_large",
    )
