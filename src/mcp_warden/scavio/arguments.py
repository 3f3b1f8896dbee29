"""What a caller may send: the limits of each argument and the checks that enforce them.

The MCP tools publish the same limits in their input schemas (the SDK then
refuses bad arguments first); the client checks again, for callers that are
not the SDK. A refusal names the argument and its range, never its value.
"""

from __future__ import annotations

import re
from typing import Literal, TypeGuard, get_args
from urllib.parse import urlsplit

from mcp_warden.scavio.errors import InvalidArgument

QUERY_MAX = 500
NUM_RESULTS_MAX = 10
URL_MAX = 2048

Format = Literal["markdown", "text", "html"]
COUNTRY = re.compile(r"[A-Za-z]{2}")
LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,4})?")


def check_query(query: object) -> str:
    if not isinstance(query, str) or not query.strip() or len(query) > QUERY_MAX:
        raise InvalidArgument(f"query must be 1-{QUERY_MAX} characters and not blank")
    return query


def check_range(name: str, value: object, low: int, high: int) -> None:
    if not is_int(value) or not low <= value <= high:
        raise InvalidArgument(f"{name} must be a whole number from {low} to {high}")


def check_code(name: str, value: object, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        example = "'us'" if name == "country" else "'en' or 'pt-BR'"
        raise InvalidArgument(f"{name} must be a code such as {example}")
    return value


def check_url(url: object) -> str:
    problem = "url must be an http or https address with a host, up to 2048 characters"
    if not isinstance(url, str) or len(url) > URL_MAX or not url.isprintable() or " " in url:
        raise InvalidArgument(problem)
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise InvalidArgument(problem) from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise InvalidArgument(problem)
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument("url must not contain a user name or password")
    return url


def check_format(format: object) -> None:
    if format not in get_args(Format):
        raise InvalidArgument(f"format must be one of {', '.join(get_args(Format))}")


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
