"""What of an upstream's error text may reach the server log: the key and the caller's text masked.

An upstream may echo the key it was sent: whole, upper-cased, cut short or
split across a line. Removing an exact match is not enough, so every run of
`RUN` or more characters that also occurs in the secret, compared without
case, is replaced. The caller's own text (a query, a URL) is masked as whole
words. Clients never receive upstream text at all (they get a fixed reason
per status); this is for the server log, which may keep it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import httpx

RUN = 8
"""The shortest run of the secret that is masked (shorter pieces reveal too little to use)."""

MASK = "[redacted]"
REASON_MAX = 200
"""Characters of the upstream's reason that are logged (longer ones are cut short)."""

_READ = 2000  # characters of an upstream error read before masking


def upstream_reason(response: httpx.Response, key: str, caller_text: Iterable[str]) -> str:
    """The upstream's own reason on one line, for the server log: key and caller text masked."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    error = None
    if isinstance(payload, dict):
        error = payload.get("error") or payload.get("message")
    if isinstance(error, dict):
        error = error.get("message")
    if not isinstance(error, str) or not error.strip():
        return "no reason given"
    text = " ".join(error[:_READ].split())
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    text = mask_secret(text, key)
    for value in sorted((v for v in caller_text if v.strip()), key=len, reverse=True):
        whole = rf"(?<!\w){re.escape(' '.join(value.split()))}(?!\w)"
        text = re.sub(whole, MASK, text, flags=re.IGNORECASE)
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 3] + "..."


def mask_secret(text: str, secret: str, *, run: int = RUN) -> str:
    """`text` with every run of at least `run` characters of `secret` (any case) masked.

    A secret shorter than `run` is masked wherever it occurs whole.
    """
    size = min(run, len(secret))
    if size == 0 or len(text) < size:
        return text
    wanted = _fold(secret)
    grams = {wanted[i : i + size] for i in range(len(wanted) - size + 1)}
    folded = _fold(text)  # same length as `text`: one character for one
    hidden = [False] * len(text)
    for start in range(len(text) - size + 1):
        if folded[start : start + size] in grams:
            hidden[start : start + size] = [True] * size
    out: list[str] = []
    for index, char in enumerate(text):
        if not hidden[index]:
            out.append(char)
        elif index == 0 or not hidden[index - 1]:
            out.append(MASK)
    return "".join(out)


def _fold(text: str) -> str:
    """Case-folded one character at a time, so indexes keep matching the original."""
    return "".join(f if len(f := ch.casefold()) == 1 else ch for ch in text)
