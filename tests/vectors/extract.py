"""Regenerate the values-only vectors in this folder from their upstream files.

usage: python3 tests/vectors/extract.py AES_GCM_JSON ED25519_JSON RFC8037_JSON

AES_GCM_JSON and ED25519_JSON are Wycheproof's `testvectors_v1/aes_gcm_test.json` and
`testvectors_v1/ed25519_test.json` (or the copies in the steering repo's shared/vectors,
which keep every upstream field); RFC8037_JSON is a file with the RFC 8037 Appendix A
values under the names this folder uses (shared/vectors/rfc8037_a4.json). What is kept
is what the tests read: keys, IVs, messages, ciphertexts, tags, signatures and expected
results; no prose. See SOURCE.md for where each comes from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
AES_FIELDS = ("tcId", "key", "iv", "aad", "msg", "ct", "tag", "result")
ED_FIELDS = ("tcId", "msg", "sig", "result")


def aes_gcm_256(source: dict[str, Any]) -> dict[str, Any]:
    groups = [
        {
            "ivSize": group["ivSize"],
            "keySize": group["keySize"],
            "tagSize": group["tagSize"],
            "tests": [{f: test[f] for f in AES_FIELDS} for test in group["tests"]],
        }
        for group in source["testGroups"]
        if group["keySize"] == 256
    ]
    return {"numberOfTests": sum(len(g["tests"]) for g in groups), "testGroups": groups}


def ed25519(source: dict[str, Any]) -> dict[str, Any]:
    groups = [
        {
            "publicKeyJwk": {k: group["publicKeyJwk"][k] for k in ("kty", "crv", "x")},
            "tests": [{f: test[f] for f in ED_FIELDS} for test in group["tests"]],
        }
        for group in source["testGroups"]
    ]
    return {"numberOfTests": sum(len(g["tests"]) for g in groups), "testGroups": groups}


def rfc8037(source: dict[str, Any]) -> dict[str, Any]:
    keep = ("jwk_private", "jwk_public", "d_hex", "x_hex", "jwk_thumbprint_sha256", "a4")
    return {k: source[k] for k in keep}


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        sys.exit(__doc__)
    aes, ed, rfc = (json.loads(Path(p).read_text()) for p in argv)
    for name, doc in (
        ("aes_gcm_256.json", aes_gcm_256(aes)),
        ("ed25519.json", ed25519(ed)),
        ("rfc8037_a4.json", rfc8037(rfc)),
    ):
        (HERE / name).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
