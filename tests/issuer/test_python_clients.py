"""The official `mcp` Python client gets its own tokens from `issuer serve` (real processes).

`mcp-warden issuer serve` over TLS (the test CA), `mcp-warden serve` with
MCP_TOKEN_ISSUER = the issuer URL and MCP_JWKS = its jwks_uri (no key file
reaches the server), the stub upstream. The client starts with no token: the
server's 401 names its RFC 9728 metadata, which names the issuer; the client
reads the issuer's RFC 8414 metadata, fetches a token (client_secret_basic,
or a private_key_jwt assertion it signs) and calls `web_search`. Then
`extract_url`: the server answers 403 insufficient_scope naming the tool,
the SDK asks the issuer again for the union of its scopes and the tool, and
the call succeeds when the operator has allowed the client that tool
(`clients set`); when not, the issuer grants what it may and the client gets
a clear error, while the upstream never sees an extract call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.auth.extensions.client_credentials import (
    ClientCredentialsOAuthProvider,
    PrivateKeyJWTOAuthProvider,
    SignedJWTParameters,
)
from mcp.client.streamable_http import streamable_http_client

from mcp_warden.demo.harness import mcp_error
from mcp_warden.demo.oauth import MemoryTokens
from tests.issuer.lab import Registered
from tests.issuer.stack import Stack, protected_by_issuer
from tests.support.server import audit_lines, run

pytestmark = pytest.mark.slow  # real issuer / serve / CLI processes

EXTRACT = "/api/v1/extract"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with protected_by_issuer(tmp_path_factory.mktemp("issuer-e2e")) as stack:
        yield stack


def provider_for(setup: Stack, client: Registered) -> Any:
    url = setup.server.audience
    if client.secret is not None:
        return ClientCredentialsOAuthProvider(
            server_url=url,
            storage=MemoryTokens(),
            client_id=client.client_id,
            client_secret=client.secret,
            issuer=setup.lab.issuer_url,
        )
    params = SignedJWTParameters(
        issuer=client.client_id,
        subject=client.client_id,
        signing_key=client.private_pem,
        signing_algorithm="EdDSA",
    )
    return PrivateKeyJWTOAuthProvider(
        server_url=url,
        storage=MemoryTokens(),
        client_id=client.client_id,
        assertion_provider=params.create_assertion_provider(),
        issuer=setup.lab.issuer_url,
    )


async def two_calls(setup: Stack, client: Registered, before_extract: Any = None) -> Any:
    """web_search, then extract_url, through one client session; the second's result or error."""
    provider = provider_for(setup, client)
    async with (
        httpx2.AsyncClient(
            auth=provider, verify=setup.lab.pki.client_context(), timeout=30
        ) as http,
        Client(streamable_http_client(setup.server.audience, http_client=http)) as session,
    ):
        first = await session.call_tool("web_search", {"query": "warden"})
        assert not first.is_error, first
        if before_extract is not None:
            before_extract()
        try:
            return await session.call_tool("extract_url", {"url": "https://example.com/"})
        except BaseException as exc:  # the SDK raises inside task groups
            found = mcp_error(exc)
            if found is None:
                raise
            return found


@pytest.mark.parametrize("method", ["client_secret_basic", "private_key_jwt"])
def test_step_up_succeeds_once_the_client_may_use_the_tool(setup: Stack, method: str) -> None:
    client = setup.lab.add_client(
        f"stepup-{method}", ["web_search"], key=method == "private_key_jwt"
    )
    extracts = setup.server.stub.calls(EXTRACT)

    def allow_extract() -> None:
        done = setup.lab.cli(
            "clients", "set", client.client_id, "--tools", "web_search,extract_url"
        )
        assert done.returncode == 0, done.stderr

    result = run(lambda: two_calls(setup, client, allow_extract))
    assert not isinstance(result, Exception), result
    assert not result.is_error, result
    assert setup.server.stub.calls(EXTRACT) == extracts + 1
    # One token at the 401, a second at the 403 step-up, which names the new tool.
    assert setup.issued_to(client.client_id) == [["web_search"], ["extract_url", "web_search"]]
    server_audit = audit_lines(setup.server.audit_log)
    mine = [line for line in server_audit if line["sub"] == client.client_id]
    assert [(line["tool"], line["outcome"]) for line in mine] == [
        ("web_search", "allowed"),
        ("extract_url", "denied"),
        ("extract_url", "allowed"),
    ]


@pytest.mark.parametrize("method", ["client_secret_basic", "private_key_jwt"])
def test_step_up_refused_when_the_client_may_not_use_the_tool(setup: Stack, method: str) -> None:
    client = setup.lab.add_client(
        f"no-extract-{method}", ["web_search"], key=method == "private_key_jwt"
    )
    extracts = setup.server.stub.calls(EXTRACT)
    result = run(lambda: two_calls(setup, client))
    assert isinstance(result, Exception), result
    assert "tool 'extract_url' is not available with this token" in str(result)
    assert setup.server.stub.calls(EXTRACT) == extracts
    # The step-up asked again; the issuer granted only what the client may have.
    assert setup.issued_to(client.client_id) == [["web_search"], ["web_search"]]
