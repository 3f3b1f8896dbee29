"""The two dialects of the Scavio API: how each authenticates, searches and lists results.

`scavio-v2` is what the vendor's own clients speak (the Python SDK
`scavio-ai/scavio-python`, the MCP server `scavio-ai/scavio-mcp`); `tutorial`
is what the French tutorial calls. Extract and usage share one path each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mcp_warden.config import ScavioProfile


@dataclass(frozen=True)
class Profile:
    """How one upstream dialect authenticates, searches and lists results."""

    name: ScavioProfile
    search_path: str
    key_header: str
    key_prefix: str
    results_field: str
    url_field: str
    count_field: str | None  # None: the upstream has no count, trim locally
    country_field: str
    language_field: str

    def auth(self, key: str) -> dict[str, str]:
        return {self.key_header: self.key_prefix + key}


PROFILES: Mapping[ScavioProfile, Profile] = {
    "scavio-v2": Profile(
        name="scavio-v2",
        search_path="/api/v2/google",
        key_header="Authorization",
        key_prefix="Bearer ",
        results_field="organic_results",
        url_field="link",
        count_field=None,
        country_field="gl",
        language_field="hl",
    ),
    "tutorial": Profile(
        name="tutorial",
        search_path="/api/v1/search",
        key_header="x-api-key",
        key_prefix="",
        results_field="results",
        url_field="url",
        count_field="num_results",
        country_field="country",
        language_field="language",
    ),
}
EXTRACT_PATH = "/api/v1/extract"
USAGE_PATH = "/api/v1/usage"
