"""URLs as the product prints them: without the parts that may hold a secret.

A URL from the environment (MCP_JWKS, SCAVIO_BASE_URL, MCP_TOKEN_AUDIENCE ...)
may carry a password (`https://user:pass@host/`) or a token in its query or
fragment (`...?token=...`). Every message, warning or banner that names such a
URL prints `redacted(url)` instead: scheme, host, port and path only. Text that
may quote the URL (an exception from an HTTP library) goes through `scrub`.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

UNPARSABLE = "(a URL that does not parse)"
MASK = "[redacted]"
_PIECE_MIN = 3


def redacted(url: str) -> str:
    """`url` without user name, password, query and fragment.

    A text without `://` (a file path) is returned as it is. A URL whose
    address does not parse (a password with a `/` or `?` in it looks like a
    bad port, for example) is not shown at all.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port  # .port raises on a non-numeric port
    except ValueError:
        return UNPARSABLE
    if not parts.scheme:
        return UNPARSABLE
    address = ""
    if host:
        address = f"[{host}]" if ":" in host else host
    if port is not None:
        address += f":{port}"
    return f"{parts.scheme}://{address}{parts.path}"


def scrub(text: str, url: str) -> str:
    """`text` with `url` shown redacted and its secret parts replaced, wherever they appear."""
    if "://" not in url:
        return text
    text = text.replace(url, redacted(url))
    for piece in sorted(_secret_parts(url), key=len, reverse=True):
        text = text.replace(piece, MASK)
    return text


def _secret_parts(url: str) -> set[str]:
    """The user info, password, query and fragment of `url`, raw and percent-decoded."""
    rest = url.partition("://")[2]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        userinfo = authority.rpartition("@")[0]
    elif "@" in rest and redacted(url) == UNPARSABLE:
        # a password holding "/", "?" or "#" ends the address early: mask up to
        # the last "@" (over-masking is harmless here, a leak is not)
        userinfo = rest.rpartition("@")[0]
    else:
        userinfo = ""
    query = rest.partition("?")[2].partition("#")[0]
    values = {pair.partition("=")[2] for pair in query.split("&")}
    pieces = {userinfo, userinfo.partition(":")[2], query, *values, rest.partition("#")[2]}
    # a piece of one or two characters would garble the whole text and hides nothing
    return {p for q in pieces for p in (q, unquote(q)) if len(p) >= _PIECE_MIN}
