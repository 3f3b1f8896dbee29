"""The issuer service: an OAuth authorization server for MCP clients (client credentials).

`mcp-warden issuer serve` (run.py, app.py) serves RFC 8414 metadata, the
JWKS, the token endpoint (service.py; private_key_jwt in assertions.py) and
RFC 7009 revocation at MCP_TOKEN_ISSUER; `mcp-warden clients` manages the
client registry (clients.py, registry/) that every issuer process shares.
Tokens are `tokens.issuer.mint`'s, signed with the keys of MCP_KEYS_DIR
(keys.py); revocations go to the servers' denylist (MCP_REVOCATION_URL).
"""
