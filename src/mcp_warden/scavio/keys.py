"""The Scavio API key: loaded just-in-time for every attempt, checked, never kept.

`load_api_key` calls the loader it is given (in the server, the credential
store's `load`) on every attempt, inline rather than in a worker thread: with
the store unchanged a load costs far less than the thread hop would (see
docs/benchmarks.md, "upstream client": the key load inline and through a
worker thread). The key lives in local variables only and is never logged or
put in a message.

When the key cannot be loaded, the MCP client gets one fixed reason
(`UNAVAILABLE`): the cause names server files (the store, its master key) and
its fix is the operator's, so it goes to the server log, in the words of the
error that was raised (a missing credential: the store's own message, which
names the file and the one command that fixes it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from mcp_warden.scavio.errors import ScavioError

log = logging.getLogger(__name__)

UNAVAILABLE = (
    "the upstream credential is not available on this server (no_credential); "
    "the server log has the cause"
)

_KEY = re.compile(r"[\x21-\x7e]{1,4096}")  # printable ASCII, no spaces: safe in a header


def load_api_key(load_key: Callable[[], str], name: str) -> str:
    """The key `load_key` returns now, cleaned; ScavioError `no_credential` if there is none."""
    try:
        raw = load_key()
    except Exception as exc:  # any cause: the client gets the reason, the log the cause
        log.warning(
            "the Scavio API key %r could not be loaded: %s", name, str(exc) or type(exc).__name__
        )
        raise ScavioError("no_credential", UNAVAILABLE) from None
    key = clean_key(raw)
    if key is None:
        raise ScavioError(
            "no_credential",
            f"the stored Scavio key {name!r} is empty or malformed (printable ASCII "
            f"without spaces expected); replace it with `mcp-warden cred rotate {name}`",
        )
    return key


def clean_key(raw: object) -> str | None:
    """The key without surrounding whitespace, or None if it cannot go in a header."""
    if not isinstance(raw, str):
        return None
    key = raw.strip()
    return key if _KEY.fullmatch(key) else None
