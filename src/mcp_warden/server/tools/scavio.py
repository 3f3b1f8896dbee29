"""The Scavio Search API behind three protected tools: web_search, extract_url, usage.

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

The API key is loaded just-in-time for every attempt through `load_key`
(inline: with the store unchanged it is one stat and one AES-GCM open, about
7 us, where a worker-thread hop cost about 160 us per call; a changed store
adds one read and parse of a small local file),
lives in local variables only, and is never logged or put in a message:
error messages name the failure and the remedy, never the key and never the
caller's query or URL (the SDK logs tool-error messages).

What a client sees of a failure is fixed text per upstream status, never the
upstream's own words (an upstream may echo the key, upper-cased or in pieces)
and never a server path (a credential store error names its file). The
upstream's words and the local cause go to the server log instead, the key
masked in any case and in any piece of 8 characters or more (`masking`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Annotated, Any, Literal, TypeGuard, get_args
from urllib.parse import urlsplit

import httpx
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from typing_extensions import TypedDict

from mcp_warden import __version__
from mcp_warden.config import ScavioProfile, Settings
from mcp_warden.errors import ConfigError, WardenError
from mcp_warden.server.tools.base import ToolSpec
from mcp_warden.server.tools.masking import mask_secret
from mcp_warden.server.tools.retry import (
    Sleep,
    Transient,
    TransientReason,
    retry_after_seconds,
    retrying,
)
from mcp_warden.urls import redacted

log = logging.getLogger("mcp_warden.server.tools.scavio")

QUERY_MAX = 500
NUM_RESULTS_MAX = 10
URL_MAX = 2048
TIMEOUT = 15.0
ATTEMPTS = 3  # the first try and up to two retries

Format = Literal["markdown", "text", "html"]
FailureReason = Literal[
    TransientReason,
    "no_credential",
    "invalid_request",
    "rejected",
    "out_of_credits",
    "bad_response",
]

_COUNTRY = re.compile(r"[A-Za-z]{2}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,4})?")
_KEY = re.compile(r"[\x21-\x7e]{1,4096}")  # printable ASCII, no spaces: safe in a header
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_REASON_MAX = 200
_UPSTREAM_TEXT_READ = 2000  # characters of an upstream error read before masking
UNAVAILABLE = (
    "the upstream credential is not available on this server (no_credential); "
    "the server log has the cause"
)


class InvalidArgument(ToolError, WardenError):
    """A tool argument outside its documented range; nothing was sent upstream."""

    reason = "invalid_argument"  # for audit logs, like ScavioError.reason


class ScavioError(ToolError, WardenError):
    """An upstream call that failed; `reason` is a stable word for audit logs."""

    reason: FailureReason

    def __init__(self, reason: FailureReason, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


class ApiKeyCheckError(WardenError):
    """A candidate API key that Scavio refused, or that could not be checked."""


# -- what the tools return -------------------------------------------------
# typing_extensions.TypedDict: pydantic needs it on Python < 3.12.


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


# -- tool argument types: the SDK publishes and enforces these limits ---------

QueryArg = Annotated[
    str,
    Field(min_length=1, max_length=QUERY_MAX, description="What to search for (1-500 characters)."),
]
NumResultsArg = Annotated[
    int, Field(ge=1, le=NUM_RESULTS_MAX, description="How many results to return (1-10).")
]
CountryArg = Annotated[
    str | None,
    Field(pattern=rf"^{_COUNTRY.pattern}$", description="Two-letter country code, e.g. 'us'."),
]
LanguageArg = Annotated[
    str | None,
    Field(pattern=rf"^{_LANGUAGE.pattern}$", description="Language code, e.g. 'en' or 'pt-BR'."),
]
UrlArg = Annotated[
    str, Field(min_length=1, max_length=URL_MAX, description="The http(s) page to read.")
]
FormatArg = Annotated[Format, Field(description="markdown (default), text or html.")]


# -- the two ways of speaking to the upstream -------------------------------


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


class ScavioClient:
    """One pooled HTTP client for every Scavio call of a server process.

    Build it once (`from_settings`), share it across requests, close it with
    `aclose()` (or `async with`). `request_json` is the hardened call that a
    further Scavio tool reuses: key loading, retries and error mapping.
    """

    def __init__(
        self,
        *,
        base_url: str,
        profile: ScavioProfile,
        load_key: Callable[[], str],
        credential_name: str = "scavio_api_key",
        timeout: float = TIMEOUT,
        attempts: int = ATTEMPTS,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._origin = _check_base_url(base_url)
        self.profile = PROFILES[profile]
        self.credential_name = credential_name
        self._load_key = load_key
        self._timeout = timeout
        self._attempts = attempts
        self._sleep = sleep
        # trust_env=False: no proxy or .netrc credentials picked up behind our back;
        # no redirects: the key is never replayed to another address.
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": f"mcp-warden/{__version__}", "Accept": "application/json"},
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, load_key: Callable[[], str], **options: Any
    ) -> ScavioClient:
        """The client the settings describe (`timeout`, `attempts`, `sleep` may be overridden)."""
        return cls(
            base_url=settings.scavio_base_url,
            profile=settings.scavio_profile,
            load_key=load_key,
            credential_name=settings.scavio_credential,
            **options,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ScavioClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the three operations ------------------------------------------------

    async def search(
        self,
        query: str,
        num_results: int = 5,
        *,
        country: str | None = None,
        language: str | None = None,
    ) -> SearchResults:
        """Web results for `query`, normalized to `{query, results[position,title,url,snippet]}`."""
        query = _check_query(query)
        _check_range("num_results", num_results, 1, NUM_RESULTS_MAX)
        profile = self.profile
        body: dict[str, object] = {"query": query}
        if profile.count_field is not None:
            body[profile.count_field] = num_results
        if country is not None:
            body[profile.country_field] = _check_code("country", country, _COUNTRY).lower()
        if language is not None:
            body[profile.language_field] = _check_code("language", language, _LANGUAGE)
        payload = await self.request_json("POST", profile.search_path, body, sensitive=(query,))
        items = payload.get(profile.results_field)
        if not isinstance(items, list):
            raise _shape(f"`{profile.results_field}` is not a list")
        hits = [_hit(item, index, profile) for index, item in enumerate(items[:num_results])]
        return {"query": query, "results": hits}

    async def extract(self, url: str, format: Format = "markdown") -> Extracted:
        """The readable content of one web page, fetched by Scavio."""
        url = _check_url(url)
        if format not in get_args(Format):
            raise InvalidArgument(f"format must be one of {', '.join(get_args(Format))}")
        body = {"url": url, "format": format}
        payload = await self.request_json("POST", EXTRACT_PATH, body, sensitive=(url,))
        content = payload.get("content")
        if not isinstance(content, str):
            raise _shape("`content` is not a string")
        final = payload.get("url")
        url = final if isinstance(final, str) else url
        return {"url": url, "format": format, "content": content}

    async def usage(self) -> Usage:
        """The account's plan and credit balance (costs no credit)."""
        payload = await self.request_json("GET", USAGE_PATH)
        plan, balance = payload.get("plan"), payload.get("credit_balance")
        if not isinstance(plan, str) or not _is_int(balance):
            raise _shape("`plan` or `credit_balance` is missing")
        used, start = payload.get("searches_used"), payload.get("period_start")
        return {
            "plan": plan,
            "credit_balance": balance,
            "searches_used": used if _is_int(used) else None,
            "period_start": start if isinstance(start, str) else None,
        }

    # -- the hardened call ---------------------------------------------------

    async def request_json(
        self,
        method: Literal["GET", "POST"],
        path: str,
        body: Mapping[str, object] | None = None,
        *,
        sensitive: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Send one logical request (with retries) and return its JSON object.

        `sensitive` lists caller text (a query, a URL) that must not appear in
        an error message even when the upstream echoes it back.
        """
        policy = retrying(attempts=self._attempts, sleep=self._sleep)
        hidden = tuple(sensitive)
        try:
            response: httpx.Response = await policy(self._attempt, method, path, body, hidden)
        except Transient as failure:
            attempts = int(policy.statistics.get("attempt_number", 1))
            if failure.upstream_text is not None:
                _log_upstream(method, path, failure.status, failure.upstream_text)
            raise ScavioError(failure.reason, failure.describe(attempts), failure.status) from None
        return _json_object(response)

    async def _attempt(
        self,
        method: str,
        path: str,
        body: Mapping[str, object] | None,
        sensitive: tuple[str, ...],
    ) -> httpx.Response:
        """One try: returns a 2xx response, raises Transient or ScavioError."""
        key = await self._api_key()
        failure: Transient | None = None
        try:
            response = await self._http.request(
                method, path, json=body, headers=self.profile.auth(key)
            )
        except httpx.TimeoutException:
            failure = Transient("timeout", f"Scavio did not answer within {self._timeout:g} s")
        except httpx.TransportError as exc:
            failure = Transient(
                "unreachable", f"could not reach Scavio at {self._origin} ({type(exc).__name__})"
            )
        if failure is not None:  # raised outside `except`: no httpx request chained to it
            raise failure
        status = response.status_code
        if 200 <= status < 300:
            return response
        said = _upstream_text(response, key, sensitive)  # for the server log only
        if status == 429:
            raise Transient(
                "rate_limited",
                "Scavio's rate limit was reached (HTTP 429)",
                status,
                retry_after_seconds(response.headers),
                said,
            )
        if status in (500, 502, 503, 504):
            raise Transient(
                "unavailable",
                f"Scavio is unavailable (HTTP {status})",
                status,
                retry_after_seconds(response.headers),
                said,
            )
        _log_upstream(method, path, status, said)
        raise self._refusal(status, path)

    def _refusal(self, status: int, path: str) -> ScavioError:
        """The client's fixed text for a status that is not retried (never the upstream's)."""
        name = self.credential_name
        if status == 400:
            return ScavioError(
                "invalid_request",
                "Scavio refused the request as invalid (HTTP 400); check the arguments "
                "(Scavio's own reason is in the server log)",
                400,
            )
        if status in (401, 403):
            return ScavioError(
                "rejected",
                f"the stored Scavio key was rejected (HTTP {status}); "
                f"run `mcp-warden cred rotate {name}`",
                status,
            )
        if status == 402:
            return ScavioError(
                "out_of_credits",
                "the Scavio account is out of credits (HTTP 402); top up at "
                "https://dashboard.scavio.dev, the same key keeps working afterwards",
                402,
            )
        if status == 404:
            return ScavioError(
                "bad_response",
                f"Scavio has no endpoint {path} (HTTP 404); check SCAVIO_BASE_URL "
                "and SCAVIO_PROFILE",
                404,
            )
        return ScavioError("bad_response", f"Scavio answered with unexpected HTTP {status}", status)

    async def _api_key(self) -> str:
        """The key, read now from the store (inline: see the module docstring), never cached."""
        name = self.credential_name
        hint = f"store one with `mcp-warden cred set {name}`"
        try:
            raw = self._load_key()
        except LookupError:
            raise ScavioError(
                "no_credential", f"no Scavio API key is stored as {name!r}; {hint}"
            ) from None
        except Exception as exc:  # any cause: the client gets the reason, the log the cause
            # the cause names server files (the store, its key): the log gets it, not the client
            log.warning(
                "the Scavio API key %r could not be loaded: %s",
                name,
                str(exc) or type(exc).__name__,
            )
            raise ScavioError("no_credential", UNAVAILABLE) from None
        key = clean_key(raw)
        if key is None:
            raise ScavioError(
                "no_credential",
                f"the stored Scavio key {name!r} is empty or malformed (printable ASCII "
                f"without spaces expected); replace it with `mcp-warden cred rotate {name}`",
            )
        return key


def tools(scavio: ScavioClient) -> list[ToolSpec]:
    """The Scavio tools, bound to the server's shared client."""

    async def web_search(
        query: QueryArg,
        num_results: NumResultsArg = 5,
        country: CountryArg = None,
        language: LanguageArg = None,
    ) -> SearchResults:
        return await scavio.search(query, num_results, country=country, language=language)

    async def extract_url(url: UrlArg, format: FormatArg = "markdown") -> Extracted:
        return await scavio.extract(url, format)

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


async def check_api_key(
    settings: Settings, api_key: str, *, timeout: float = TIMEOUT, sleep: Sleep = asyncio.sleep
) -> None:
    """Ask Scavio whether `api_key` works (a free `usage` call) before it is stored.

    Raises ApiKeyCheckError when Scavio refuses it or cannot be asked.
    """
    if clean_key(api_key) is None:
        raise ApiKeyCheckError(
            "the new value is not a usable Scavio key (printable ASCII without spaces expected)"
        )
    client = ScavioClient.from_settings(settings, lambda: api_key, timeout=timeout, sleep=sleep)
    async with client:
        try:
            await client.usage()
        except ScavioError as exc:
            if exc.reason == "rejected":
                raise ApiKeyCheckError(f"Scavio rejected the new key (HTTP {exc.status})") from None
            raise ApiKeyCheckError(f"could not verify the new key with Scavio: {exc}") from None


def clean_key(raw: object) -> str | None:
    """The key without surrounding whitespace, or None if it cannot go in a header."""
    if not isinstance(raw, str):
        return None
    key = raw.strip()
    return key if _KEY.fullmatch(key) else None


# -- checks and parsing ----------------------------------------------------


def _check_base_url(base_url: str) -> str:
    """The upstream origin for messages; https only, except plain http on this machine."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL:
        raise ConfigError("SCAVIO_BASE_URL is not a valid URL") from None
    if url.userinfo:  # checked first: never echo a URL that holds a password
        raise ConfigError("SCAVIO_BASE_URL must not contain a user name or password")
    if url.query or url.fragment or "?" in base_url or "#" in base_url:
        raise ConfigError(
            "SCAVIO_BASE_URL must not contain a query or fragment (the key goes in a header); "
            f"use {redacted(base_url)}"
        )
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"SCAVIO_BASE_URL={redacted(base_url)!r} is not an http(s) URL")
    if url.scheme == "http" and url.host not in _LOCAL_HOSTS:
        raise ConfigError(
            "SCAVIO_BASE_URL must use https; plain http is allowed only for 127.0.0.1 or "
            "localhost (the offline stub)"
        )
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}"


def _check_query(query: object) -> str:
    if not isinstance(query, str) or not query.strip() or len(query) > QUERY_MAX:
        raise InvalidArgument(f"query must be 1-{QUERY_MAX} characters and not blank")
    return query


def _check_range(name: str, value: object, low: int, high: int) -> None:
    if not _is_int(value) or not low <= value <= high:
        raise InvalidArgument(f"{name} must be a whole number from {low} to {high}")


def _check_code(name: str, value: object, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        example = "'us'" if name == "country" else "'en' or 'pt-BR'"
        raise InvalidArgument(f"{name} must be a code such as {example}")
    return value


def _check_url(url: object) -> str:
    problem = "url must be an http or https address with a host, up to 2048 characters"
    if not isinstance(url, str) or len(url) > URL_MAX or not url.isprintable() or " " in url:
        raise InvalidArgument(problem)
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise InvalidArgument(problem) from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise InvalidArgument(problem)
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument("url must not contain a user name or password")
    return url


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _shape(what: str) -> ScavioError:
    return ScavioError("bad_response", f"Scavio's response has an unexpected shape: {what}")


def _json_object(response: httpx.Response) -> dict[str, Any]:
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
    if not _is_int(position):
        raise _shape(f"{where} has a non-integer position")
    return {"position": position, "title": title or "", "url": url, "snippet": snippet or ""}


def _upstream_text(response: httpx.Response, key: str, caller_text: Iterable[str]) -> str:
    """The upstream's own reason on one line, for the server log: key and caller text masked.

    The key is masked in any case and in any piece of 8 characters or more;
    the caller's text (a query, a URL) as whole words, in any case.
    """
    try:
        payload = response.json()
    except ValueError:
        payload = None
    error = None
    if isinstance(payload, dict):
        error = payload.get("error") or payload.get("message")
    if isinstance(error, dict):
        error = error.get("message")
    if not isinstance(error, str) or not error.strip():
        return "no reason given"
    text = " ".join(error[:_UPSTREAM_TEXT_READ].split())
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    text = mask_secret(text, key)
    for value in sorted((v for v in caller_text if v.strip()), key=len, reverse=True):
        whole = rf"(?<!\w){re.escape(' '.join(value.split()))}(?!\w)"
        text = re.sub(whole, "[redacted]", text, flags=re.IGNORECASE)
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 3] + "..."


def _log_upstream(method: str, path: str, status: int | None, said: str) -> None:
    """One warning with what the upstream said (already masked by `_upstream_text`)."""
    log.warning("Scavio answered HTTP %s to %s %s: %s", status, method, path, said)
