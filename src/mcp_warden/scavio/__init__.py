"""The Scavio Search API as an upstream: the client, without anything of MCP.

What the upstream expects, from the vendor's own public clients (the Python
SDK `scavio-ai/scavio-python` and the MCP server `scavio-ai/scavio-mcp`):

- search: `POST /api/v2/google` with `Authorization: Bearer KEY` and a JSON
  body `{"query" (1-500 characters), "gl" (country, ISO 3166-1 alpha-2),
  "hl" (language, ISO 639-1)}`; results in `organic_results[]` with
  `position`, `title`, `link`, `snippet`. The endpoint has no result-count
  field (a page holds about ten), so `num_results` is applied here.
- extract: `POST /api/v1/extract` with `{"url", "format"}` (`markdown`, `text`
  or `html`); answers `{url, format, mode, content, content_length}`.
- usage: `GET /api/v1/usage` (free); answers `{plan, credit_balance,
  searches_used, period_start, ...}`.
- errors: a JSON body `{"error": "..."}` (or `{"error": {"message": ...}}`);
  400 invalid request, 401 bad key, 402 out of credits, 429 rate limited.

The `tutorial` profile speaks what the French tutorial calls:
`POST /api/v1/search` with `x-api-key` and `{"query", "num_results"}`,
results in `results[]` with `url`. The tutorial shows no extract or usage
call; under this profile we send the same `/api/v1/extract` and
`/api/v1/usage` requests with the `x-api-key` header, and `country` /
`language` body fields when given. That part is our choice, not documented.

Modules: `client` (ScavioClient), `profiles` (the two dialects), `arguments`
(limits and checks), `results` (the normalized shapes), `errors`
(ScavioError and its reasons), `keys` (the just-in-time key), `retry` (when
and how long to retry), `masking` (upstream text bound for the server log),
`verify` (check_api_key, for `cred rotate --verify`). The MCP tools built on
the client are `mcp_warden.server.tools.scavio`; nothing here imports the
MCP SDK or the server.
"""

from __future__ import annotations

from mcp_warden.scavio.client import ScavioClient
from mcp_warden.scavio.errors import InvalidArgument, ScavioError
from mcp_warden.scavio.verify import ApiKeyCheckError, check_api_key

__all__ = ["ApiKeyCheckError", "InvalidArgument", "ScavioClient", "ScavioError", "check_api_key"]
