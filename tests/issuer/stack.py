"""An issuer-protected deployment as real processes: issuer, MCP server, stub upstream.

with protected_by_issuer(root) as stack:
    stack.issuer        # `mcp-warden issuer serve` over TLS (the test CA), tests/issuer/lab.py
    stack.served        # `mcp-warden serve`: MCP_TOKEN_ISSUER = the issuer URL,
                        # MCP_JWKS = its jwks_uri (no key file reaches the server)
    stack.server.stub   # the stub upstream the server calls

The issuer serves the one resource the server is (its MCP_TOKEN_AUDIENCE)
and both share the SQLite denylist. Clients are registered with `mcp-warden
clients add` (`stack.lab.add_client`, or `add_es256_client` for a P-256
private_key_jwt client, as TypeScript users hold keys as PEM).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from tests.issuer.lab import IssuerLab, Registered, RunningIssuer, issuer_lab
from tests.support.server import Deployment, Served, audit_lines, deployment


@dataclass(frozen=True)
class KeyClient:
    """A private_key_jwt client: its id and private key as the TypeScript SDK takes it."""

    client_id: str
    alg: str
    private_key: str  # a PKCS#8 PEM (ES256), or a private JWK as JSON (EdDSA)


@dataclass
class Stack:
    lab: IssuerLab
    issuer: RunningIssuer
    server: Deployment
    served: Served

    @property
    def url(self) -> str:
        """The MCP server's URL (MCP_TOKEN_AUDIENCE), which the clients are given."""
        return self.server.audience

    def issued_to(self, client_id: str) -> list[list[str]]:
        """The tools of every token the issuer issued to `client_id`, in order."""
        return [
            line["tools"]
            for line in audit_lines(self.issuer.audit_log)
            if line["client_id"] == client_id and line["outcome"] == "issued"
        ]

    def server_calls(self, sub: str) -> list[tuple[str, str]]:
        """(tool, outcome) of every tools/call the server audited for `sub`."""
        return [
            (line["tool"], line["outcome"])
            for line in audit_lines(self.server.audit_log)
            if line.get("sub") == sub and "tool" in line
        ]

    def allow(self, client_id: str, *tools: str) -> None:
        """`mcp-warden clients set ID --tools ...` (another process) while everything runs."""
        done = self.lab.cli("clients", "set", client_id, "--tools", ",".join(tools))
        assert done.returncode == 0, done.stderr

    def add_es256_client(self, name: str, tools: list[str]) -> KeyClient:
        """`clients add NAME --jwk` with a fresh P-256 key; the private key as PKCS#8 PEM."""
        key = ec.generate_private_key(ec.SECP256R1())
        jwk_file = self.lab.root / f"{name}.jwk"
        jwk_file.write_text(ECAlgorithm.to_jwk(key.public_key()), encoding="utf-8")
        args = ["clients", "add", name, "--tools", ",".join(tools), "--jwk", str(jwk_file)]
        done = self.lab.cli(*args)
        assert done.returncode == 0, done.stderr
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
        return KeyClient(json.loads(done.stdout)["client_id"], "ES256", pem)

    def add_eddsa_client(self, name: str, tools: list[str]) -> KeyClient:
        """`clients add NAME --jwk` with a fresh Ed25519 key; the private key as a JWK."""
        registered: Registered = self.lab.add_client(name, tools, key=True)
        assert registered.key is not None
        private: dict[str, Any] = OKPAlgorithm.to_jwk(registered.key, as_dict=True)
        return KeyClient(registered.client_id, "EdDSA", json.dumps(private))


@contextlib.contextmanager
def protected_by_issuer(root: Path) -> Iterator[Stack]:
    """The issuer, the MCP server that trusts it and the stub upstream, under `root`."""
    (root / "server").mkdir(parents=True)
    with (
        issuer_lab(root / "issuer") as lab,
        deployment(
            root / "server",
            MCP_TOKEN_ISSUER=lab.issuer_url,
            MCP_JWKS=lab.issuer_url + "/jwks.json",
            SSL_CERT_FILE=str(lab.pki.ca_file),
        ) as server,
    ):
        lab.env["MCP_TOKEN_AUDIENCE"] = server.audience  # the one resource it serves
        lab.env["MCP_REVOCATION_URL"] = server.env["MCP_REVOCATION_URL"]
        with lab.issuer() as issuer, server.serve() as served:
            yield Stack(lab, issuer, server, served)
