"""Bad arguments are refused with a clear message before anything reaches the upstream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mcp_warden.config import Settings
from mcp_warden.demo.harness import Stub
from mcp_warden.errors import ConfigError
from mcp_warden.scavio.client import ScavioClient
from mcp_warden.scavio.errors import InvalidArgument

pytestmark = pytest.mark.anyio

SEARCHES: list[tuple[dict[str, Any], str]] = [
    ({"query": "x" * 501}, "query must be 1-500 characters and not blank"),
    ({"query": ""}, "query must be 1-500 characters and not blank"),
    ({"query": " \t\n"}, "query must be 1-500 characters and not blank"),
    ({"query": "ok", "num_results": 11}, "num_results must be a whole number from 1 to 10"),
    ({"query": "ok", "num_results": 0}, "num_results must be a whole number from 1 to 10"),
    ({"query": "ok", "num_results": True}, "num_results must be a whole number from 1 to 10"),
    ({"query": "ok", "country": "usa"}, "country must be a code such as 'us'"),
    ({"query": "ok", "country": "u1"}, "country must be a code such as 'us'"),
    ({"query": "ok", "language": "english"}, "language must be a code such as 'en' or 'pt-BR'"),
    ({"query": "ok", "language": "en US"}, "language must be a code such as 'en' or 'pt-BR'"),
]
URLS: list[tuple[str, str]] = [
    ("ftp://example.org/file", "url must be an http or https address"),
    ("file:///etc/passwd", "url must be an http or https address"),
    ("javascript:alert(1)", "url must be an http or https address"),
    ("example.org/page", "url must be an http or https address"),
    ("https://", "url must be an http or https address"),
    ("https://exa mple.org/", "url must be an http or https address"),
    ("https://example.org/\n", "url must be an http or https address"),
    ("https://[::1/", "url must be an http or https address"),
    ("https://example.org/" + "a" * 2048, "url must be an http or https address"),
    ("https://user:pw@example.org/", "url must not contain a user name or password"),
]


@pytest.mark.parametrize(("arguments", "message"), SEARCHES)
async def test_bad_search_arguments_never_reach_the_stub(
    make_client: Callable[..., ScavioClient], stub: Stub, arguments: dict[str, Any], message: str
) -> None:
    query = arguments.pop("query")
    async with make_client() as client:
        with pytest.raises(InvalidArgument, match=message) as refused:
            await client.search(query, **arguments)
    assert query.strip() == "" or query not in str(refused.value)
    assert stub.calls() == 0


@pytest.mark.parametrize(("url", "message"), URLS)
async def test_bad_urls_never_reach_the_stub(
    make_client: Callable[..., ScavioClient], stub: Stub, url: str, message: str
) -> None:
    async with make_client() as client:
        with pytest.raises(InvalidArgument, match=message):
            await client.extract(url)
    assert stub.calls() == 0


async def test_bad_format_never_reaches_the_stub(
    make_client: Callable[..., ScavioClient], stub: Stub
) -> None:
    async with make_client() as client:
        with pytest.raises(InvalidArgument, match="format must be one of markdown, text, html"):
            await client.extract("https://example.org/", "pdf")  # type: ignore[arg-type]
    assert stub.calls() == 0


async def test_the_limits_themselves_are_accepted(
    make_client: Callable[..., ScavioClient], stub: Stub
) -> None:
    async with make_client("tutorial") as client:
        longest = await client.search("q" * 500, 10, country="gb", language="pt-BR")
        shortest = await client.search("q", 1)
        page = await client.extract("http://example.org/" + "a" * 2000, "html")
    assert len(longest["results"]) == 10
    assert len(shortest["results"]) == 1
    assert page["content"].startswith("<html>")
    assert stub.calls() == 3


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("http://api.scavio.dev", "must use https; plain http is allowed only for 127.0.0.1"),
        ("ftp://127.0.0.1", "is not an http\\(s\\) URL"),
        ("https://user:secret@api.scavio.dev", "must not contain a user name or password"),
        ("ftp://user:secret@127.0.0.1", "must not contain a user name or password"),
        ("http://[::1", "is not a valid URL"),
    ],
)
def test_unsafe_base_urls_are_a_configuration_error(base_url: str, message: str) -> None:
    settings = Settings(scavio_base_url=base_url)
    with pytest.raises(ConfigError, match=message) as refused:
        ScavioClient.from_settings(settings, lambda: "unused")
    assert "secret" not in str(refused.value)
