"""What the client returns: one normalized shape per operation, whatever the profile.

Responses are read strictly: a field missing or of the wrong type is a
`bad_response` failure that names the field, never a KeyError or a guess.
The MCP tools publish these TypedDicts as their output schemas
(`typing_extensions.TypedDict`: pydantic needs it on Python < 3.12).
"""

from __future__ import annotations

from typing import Any

import httpx
from typing_extensions import TypedDict

from mcp_warden.scavio.arguments import is_int
from mcp_warden.scavio.errors import ScavioError
from mcp_warden.scavio.profiles import Profile


class SearchHit(TypedDict):
    position: int
    title: str
    url: str
    snippet: str


class SearchResults(TypedDict):
    query: str
    results: list[SearchHit]


class Extracted(TypedDict):
    url: str
    format: str
    content: str


class Usage(TypedDict):
    plan: str
    credit_balance: int
    searches_used: int | None
    period_start: str | None


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The response body as a JSON object."""
    try:
        payload = response.json()
    except ValueError:
        raise ScavioError(
            "bad_response",
            f"Scavio sent a response that is not valid JSON (HTTP {response.status_code})",
            response.status_code,
        ) from None
    if not isinstance(payload, dict):
        raise _shape("not a JSON object")
    return payload


def parse_search(
    payload: dict[str, Any], profile: Profile, query: str, num_results: int
) -> SearchResults:
    """The first `num_results` hits of a search answer (the upstream may send more)."""
    items = payload.get(profile.results_field)
    if not isinstance(items, list):
        raise _shape(f"`{profile.results_field}` is not a list")
    hits = [_hit(item, index, profile) for index, item in enumerate(items[:num_results])]
    return {"query": query, "results": hits}


def parse_extract(payload: dict[str, Any], url: str, format: str) -> Extracted:
    """An extract answer; `url` is the final address when the upstream names one."""
    content = payload.get("content")
    if not isinstance(content, str):
        raise _shape("`content` is not a string")
    final = payload.get("url")
    return {"url": final if isinstance(final, str) else url, "format": format, "content": content}


def parse_usage(payload: dict[str, Any]) -> Usage:
    """A usage answer; the optional fields are None when absent or malformed."""
    plan, balance = payload.get("plan"), payload.get("credit_balance")
    if not isinstance(plan, str) or not is_int(balance):
        raise _shape("`plan` or `credit_balance` is missing")
    used, start = payload.get("searches_used"), payload.get("period_start")
    return {
        "plan": plan,
        "credit_balance": balance,
        "searches_used": used if is_int(used) else None,
        "period_start": start if isinstance(start, str) else None,
    }


def _hit(item: object, index: int, profile: Profile) -> SearchHit:
    where = f"`{profile.results_field}[{index}]`"
    if not isinstance(item, dict):
        raise _shape(f"{where} is not an object")
    url, title, snippet = (item.get(k) for k in (profile.url_field, "title", "snippet"))
    position = item.get("position", index + 1)
    if not isinstance(url, str) or not url:
        raise _shape(f"{where} has no `{profile.url_field}`")
    if not isinstance(title, str | None) or not isinstance(snippet, str | None):
        raise _shape(f"{where} has a non-text title or snippet")
    if not is_int(position):
        raise _shape(f"{where} has a non-integer position")
    return {"position": position, "title": title or "", "url": url, "snippet": snippet or ""}


def _shape(what: str) -> ScavioError:
    return ScavioError("bad_response", f"Scavio's response has an unexpected shape: {what}")
