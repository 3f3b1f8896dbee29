"""The Scavio tools as MCP publishes them: web_search, extract_url and usage.

Each tool is one call of the shared `mcp_warden.scavio.ScavioClient`, which
holds everything about the upstream (profiles, the just-in-time key, retries,
error mapping, masking). This module adds only what MCP needs: argument
types whose limits the SDK publishes and enforces before a tool runs, the
descriptions clients show, and `reported`, which raises the client's
failures as the SDK's `ToolError`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from mcp_warden.scavio.arguments import (
    COUNTRY,
    LANGUAGE,
    NUM_RESULTS_MAX,
    QUERY_MAX,
    URL_MAX,
    Format,
)
from mcp_warden.scavio.client import ScavioClient
from mcp_warden.scavio.errors import ScavioError
from mcp_warden.scavio.results import Extracted, SearchResults, Usage
from mcp_warden.server.tools.base import ToolSpec

P = ParamSpec("P")
R = TypeVar("R")


class ScavioToolError(ScavioError, ToolError):
    """A ScavioError as the SDK reports it.

    A `ToolError`, so the MCP client gets a result with `isError` and the
    message (any other exception reaches it as a bare "Error executing
    tool"); still a `ScavioError`, so the guard's audit line keeps its `reason`.
    """


def reported(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """`fn`, whose ScavioErrors are raised as ScavioToolErrors (same text, reason, status).

    `functools.wraps` keeps the signature, from which the SDK builds the schemas.
    """

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except ScavioError as exc:
            raise ScavioToolError(exc.reason, str(exc), exc.status) from None

    return run


QueryArg = Annotated[
    str,
    Field(min_length=1, max_length=QUERY_MAX, description="What to search for (1-500 characters)."),
]
NumResultsArg = Annotated[
    int, Field(ge=1, le=NUM_RESULTS_MAX, description="How many results to return (1-10).")
]
CountryArg = Annotated[
    str | None,
    Field(pattern=rf"^{COUNTRY.pattern}$", description="Two-letter country code, e.g. 'us'."),
]
LanguageArg = Annotated[
    str | None,
    Field(pattern=rf"^{LANGUAGE.pattern}$", description="Language code, e.g. 'en' or 'pt-BR'."),
]
UrlArg = Annotated[
    str, Field(min_length=1, max_length=URL_MAX, description="The http(s) page to read.")
]
FormatArg = Annotated[Format, Field(description="markdown (default), text or html.")]


def tools(scavio: ScavioClient) -> list[ToolSpec]:
    """The Scavio tools, bound to the server's shared client."""

    @reported
    async def web_search(
        query: QueryArg,
        num_results: NumResultsArg = 5,
        country: CountryArg = None,
        language: LanguageArg = None,
    ) -> SearchResults:
        return await scavio.search(query, num_results, country=country, language=language)

    @reported
    async def extract_url(url: UrlArg, format: FormatArg = "markdown") -> Extracted:
        return await scavio.extract(url, format)

    @reported
    async def usage() -> Usage:
        return await scavio.usage()

    return [
        ToolSpec(
            "web_search",
            "Search the web (Google results through Scavio). Returns the query and up to "
            "num_results results, each with position, title, url and snippet.",
            web_search,
        ),
        ToolSpec(
            "extract_url",
            "Read one http(s) web page through Scavio and return its content as "
            "markdown (default), plain text or raw html.",
            extract_url,
        ),
        ToolSpec(
            "usage",
            "Show the Scavio account's plan, remaining credits and searches used this period.",
            usage,
        ),
    ]
