"""Masking a secret in text an upstream sent, before that text is logged.

An upstream may echo the key it was sent: whole, upper-cased, cut short or
split across a line. Removing an exact match is not enough, so every run of
`RUN` or more characters that also occurs in the secret, compared without
case, is replaced. Clients never receive upstream text at all (they get a
fixed reason per status); this is for the server log, which may keep it.
"""

from __future__ import annotations

RUN = 8
"""The shortest run of the secret that is masked (shorter pieces reveal too little to use)."""

MASK = "[redacted]"


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
