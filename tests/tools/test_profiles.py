"""Both upstream profiles, over HTTP to the stub, normalize to the same shapes (the stub
in-process, except where the connection pool itself is under test)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from mcp_warden.config import ScavioProfile, Settings
from mcp_warden.demo.harness import Stub
from mcp_warden.demo.stub import key_id
from mcp_warden.scavio.client import ScavioClient
from mcp_warden.scavio.errors import ScavioError
from tests.tools.inprocess import InProcessStub

pytestmark = pytest.mark.anyio

PROFILES: list[ScavioProfile] = ["scavio-v2", "tutorial"]
SEARCH_PATH = {"scavio-v2": "/api/v2/google", "tutorial": "/api/v1/search"}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("count", [1, 5, 10])
async def test_search_normalizes_both_profiles(
    make_client: Callable[..., ScavioClient], stub: Stub, profile: ScavioProfile, count: int
) -> None:
    async with make_client(profile) as client:
        found = await client.search("mcp server security", count, country="FR", language="fr")
    assert found["query"] == "mcp server security"
    assert len(found["results"]) == count
    assert [hit["position"] for hit in found["results"]] == list(range(1, count + 1))
    for hit in found["results"]:
        assert set(hit) == {"position", "title", "url", "snippet"}
        assert hit["url"].startswith("https://example.com/stub/")
        assert hit["title"].startswith("Stub result")
        assert hit["snippet"]
    assert stub.calls(SEARCH_PATH[profile]) == 1
    assert stub.statuses() == [200]


async def test_the_tutorial_prints_results_5(
    make_client: Callable[..., ScavioClient], stub: Stub
) -> None:
    """The tutorial's own line, `Results: 5`, from its default of five results."""
    async with make_client("tutorial") as client:
        found = await client.search("MCP server security best practices 2026")
    assert f"Results: {len(found['results'])}" == "Results: 5"


@pytest.mark.parametrize("profile", PROFILES)
async def test_extract_and_usage_normalize(
    make_client: Callable[..., ScavioClient], stub: Stub, profile: ScavioProfile, api_key: str
) -> None:
    async with make_client(profile) as client:
        page = await client.extract("https://example.org/article", "text")
        usage = await client.usage()
    assert page == {
        "url": "https://example.org/article",
        "format": "text",
        "content": "Stub page\n\nOffline content from the mcp-warden stub upstream.",
    }
    assert usage == {
        "plan": "stub",
        "credit_balance": 999,
        "searches_used": 1,
        "period_start": "2026-01-01T00:00:00Z",
    }
    assert stub.calls("/api/v1/extract") == 1
    assert stub.calls("/api/v1/usage") == 1
    assert stub.keys_used() == [key_id(api_key)] * 2


@pytest.mark.parametrize("profile", PROFILES)
async def test_each_profile_sends_its_own_auth_header(
    stub: InProcessStub, api_key: str, profile: ScavioProfile
) -> None:
    """Each search path accepts only its profile's header: the other one gets a 401."""
    other: ScavioProfile = "tutorial" if profile == "scavio-v2" else "scavio-v2"
    settings = Settings(scavio_base_url=stub.url, scavio_profile=profile)
    client = ScavioClient.from_settings(settings, lambda: api_key, transport=stub.transport())
    async with client:
        await client.search("header check")
        with pytest.raises(ScavioError) as refused:
            await client.request_json("POST", SEARCH_PATH[other], {"query": "header check"})
    assert refused.value.reason == "rejected"
    assert stub.statuses() == [200, 401]
    assert stub.keys_used() == [key_id(api_key), None]


async def test_connections_are_reused(
    make_live_client: Callable[..., ScavioClient], live_stub: Stub
) -> None:
    """One pooled client: sequential calls share one keep-alive connection."""
    async with make_live_client() as client:
        for _ in range(5):
            await client.search("reuse")
    connections = [request["connection"] for request in live_stub.stats()["requests"]]
    assert len(connections) == 5
    assert len(set(connections)) == 1


async def test_one_shared_client_serves_concurrent_calls(
    make_live_client: Callable[..., ScavioClient], live_stub: Stub
) -> None:
    live_stub.mode(status=503, times=1)
    async with make_live_client() as client:
        found = await asyncio.gather(*(client.search(f"query {n}", 3) for n in range(16)))
    assert all(len(each["results"]) == 3 for each in found)
    assert [each["query"] for each in found] == [f"query {n}" for n in range(16)]
    assert live_stub.calls() == 17
    assert sorted(live_stub.statuses()) == [200] * 16 + [503]
