"""The issuer service as real processes, for the tests in tests/issuer.

with issuer_lab(tmp_path) as lab:               # a test CA, signing keys, registry, denylist
    client = lab.add_client("alice", ["web_search"])   # `mcp-warden clients add` (a process)
    with lab.issuer() as running:                 # `mcp-warden issuer serve` over TLS
        reply = running.post_token({"grant_type": "client_credentials"}, auth=client.basic)
        running.audit()                           # its audit lines

Every issuer process of a lab shares the registry (MCP_CLIENTS_URL), the
denylist (MCP_REVOCATION_URL) and the issuer URL (MCP_TOKEN_ISSUER, the first
port: processes started later stand behind it like replicas behind a load
balancer); each listens on its own port and writes its own audit log. The
TLS certificate comes from a throwaway CA (tests/support/tls.py) that the
test clients trust explicitly; nothing relaxes certificate checks.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from mcp_warden.demo.harness import background, cli_env, free_port, run_cli, wait_for_line
from mcp_warden.tokens.jwks import public_jwk
from mcp_warden.tokens.keys import KeyDir
from tests.support.tls import TestPki, make_pki

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
BANNER = "mcp-warden: issuer serving on "


@dataclass(frozen=True)
class Registered:
    """A client as `clients add` printed it (and its private key for private_key_jwt)."""

    client_id: str
    secret: str | None = None
    key: Ed25519PrivateKey | None = None

    @property
    def basic(self) -> str:
        assert self.secret is not None
        raw = f"{quote(self.client_id, safe='')}:{quote(self.secret, safe='')}"
        return "Basic " + base64.b64encode(raw.encode()).decode()

    @property
    def private_pem(self) -> str:
        assert self.key is not None
        return self.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()

    def assertion(self, audience: str, **changes: Any) -> str:
        """A private_key_jwt assertion for `audience` (changes: claims to set, None to drop)."""
        assert self.key is not None
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "iat": now,
            "exp": now + 120,
            "jti": str(uuid.uuid4()),
        }
        for name, value in changes.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return jwt.encode(claims, self.key, algorithm="EdDSA")


@dataclass
class RunningIssuer:
    """One `mcp-warden issuer serve` process."""

    url: str  # where this process listens (https://127.0.0.1:PORT)
    issuer: str  # MCP_TOKEN_ISSUER, the same for every process of the lab
    proc: subprocess.Popen[bytes]
    log: Path
    audit_log: Path
    pki: TestPki
    _http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                verify=self.pki.client_context(), timeout=20.0, trust_env=False
            )
        return self._http

    def post_token(
        self, form: Mapping[str, str] | None = None, *, auth: str | None = None, **kw: Any
    ) -> httpx.Response:
        return self._post("/token", form, auth, **kw)

    def post_revoke(
        self, form: Mapping[str, str] | None = None, *, auth: str | None = None
    ) -> httpx.Response:
        return self._post("/revoke", form, auth)

    def _post(
        self, path: str, form: Mapping[str, str] | None, auth: str | None, **kw: Any
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if auth is not None:
            headers["Authorization"] = auth
        if form is not None:
            kw["data"] = dict(form)
        return self.http.post(self.url + path, headers=headers, **kw)

    def audit(self) -> list[dict[str, Any]]:
        if not self.audit_log.exists():
            return []
        text = self.audit_log.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines()]

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


@dataclass
class IssuerLab:
    root: Path
    pki: TestPki
    port: int
    env: dict[str, str] = field(default_factory=dict)
    started: int = 0

    @property
    def issuer_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    def cli(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(args, {**self.env, **(env or {})})

    def add_client(
        self,
        name: str,
        tools: list[str],
        *,
        ttl: int | None = None,
        key: bool = False,
        require_dpop: bool = False,
    ) -> Registered:
        """`mcp-warden clients add` (key=True: a fresh Ed25519 private_key_jwt client)."""
        args = ["clients", "add", name, "--tools", ",".join(tools)]
        if require_dpop:
            args.append("--require-dpop")
        if ttl is not None:
            args += ["--ttl", str(ttl)]
        private = Ed25519PrivateKey.generate() if key else None
        if private is not None:
            jwk_file = self.root / f"{name}.jwk"
            jwk = public_jwk(private.public_key())
            jwk_file.write_text(json.dumps(jwk), encoding="utf-8")
            args += ["--jwk", str(jwk_file)]
        done = self.cli(*args)
        assert done.returncode == 0, done.stderr
        printed = json.loads(done.stdout)
        return Registered(printed["client_id"], printed.get("client_secret"), private)

    @contextlib.contextmanager
    def issuer(
        self, *, env: Mapping[str, str] | None = None, timeout: float = 20.0
    ) -> Iterator[RunningIssuer]:
        """`mcp-warden issuer serve` over TLS; the first one listens on the issuer URL's port."""
        port = self.port if self.started == 0 else free_port()
        self.started += 1
        n = self.started
        log = self.root / f"issuer-{n}.log"
        audit = self.root / f"issuer-{n}-audit.jsonl"
        argv = [
            sys.executable,
            "-m",
            "mcp_warden",
            "issuer",
            "serve",
            "--port",
            str(port),
            "--certfile",
            str(self.pki.cert_file),
            "--keyfile",
            str(self.pki.key_file),
        ]
        settings = {**self.env, "MCP_AUDIT_LOG": str(audit), **(env or {})}
        with background(argv, env=settings, log=log) as proc:
            wait_for_line(log, proc, BANNER, timeout)
            running = RunningIssuer(
                f"https://127.0.0.1:{port}", self.issuer_url, proc, log, audit, self.pki
            )
            try:
                yield running
            finally:
                running.close()


@contextlib.contextmanager
def issuer_lab(root: Path, **env: str) -> Iterator[IssuerLab]:
    """Keys, a test CA and the settings of an issuer deployment under `root`; `env` adds some."""
    pki = make_pki(root / "pki")
    KeyDir(root / "keys").new()
    lab = IssuerLab(root, pki, free_port())
    lab.env = cli_env(
        {
            "MCP_KEYS_DIR": str(root / "keys"),
            "MCP_CLIENTS_URL": f"sqlite:///{root / 'clients.db'}",
            "MCP_REVOCATION_URL": f"sqlite:///{root / 'revocations.db'}",
            "MCP_TOKEN_ISSUER": lab.issuer_url,
            "MCP_TOKEN_AUDIENCE": "http://127.0.0.1:8000/mcp",
            "MCP_ISSUER_AUTH_FAILURES": "1000",
            **env,
        }
    )
    yield lab


def no_secret_in(text: str, *secrets: str | None) -> bool:
    """True when none of `secrets` (client secrets, assertions, tokens) appears in `text`."""
    return not any(s and s in text for s in secrets)
