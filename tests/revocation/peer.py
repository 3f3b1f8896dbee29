"""A second process on the shared denylist, for the cross-process tests.

python -m tests.revocation.peer watch JTI SUB IAT
    open the denylist named by MCP_REVOCATION_URL, print "ready", then poll
    is_revoked every millisecond and print "seen <time.time()>" once the
    token is revoked ("timeout" after 10 s).
python -m tests.revocation.peer revoke PREFIX COUNT EXP
    revoke the jtis PREFIX-0 .. PREFIX-(COUNT-1) until EXP, one by one.
"""

from __future__ import annotations

import sys
import time

from mcp_warden.config import Settings
from mcp_warden.tokens.revocation import open_denylist


def watch(iat: int, tokens: list[str]) -> int:
    denylist = open_denylist(Settings.from_env())
    pending = {token: token.split("/", 1) for token in tokens}
    try:
        print("ready", flush=True)
        deadline = time.monotonic() + 15.0
        while pending and time.monotonic() < deadline:
            for token, (jti, sub) in list(pending.items()):
                if denylist.is_revoked(jti, sub, iat):
                    print(f"seen {token} {time.time():.6f}", flush=True)
                    del pending[token]
            time.sleep(0.001)
        if pending:
            print("timeout", flush=True)
            return 1
        return 0
    finally:
        denylist.close()


def revoke(prefix: str, count: int, exp: int) -> int:
    denylist = open_denylist(Settings.from_env())
    try:
        for i in range(count):
            denylist.revoke_jti(f"{prefix}-{i}", exp)
        return 0
    finally:
        denylist.close()


def main(argv: list[str]) -> int:
    match argv:
        case ["watch", iat, *tokens] if tokens:
            return watch(int(iat), tokens)
        case ["revoke", prefix, count, exp]:
            return revoke(prefix, int(count), int(exp))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
