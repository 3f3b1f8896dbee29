"""`ScavioClient`: one pooled, hardened HTTP client for every Scavio call of a process.

Each logical call loads the key just-in-time (`keys`), sends one request per
attempt under the retry policy (`retry`), maps every failure to a
`ScavioError` with fixed text per upstream status (`errors`), logs what the
upstream said with the key masked (`masking`) and normalizes the answer
(`results`). Neither the key nor the caller's query or URL reaches a message.

The HTTP client is `transport.UpstreamHttp` (httpx's, keeping no cookies)
and its transport `transport.upstream_transport()` (the `httpx` API over
aiohttp) unless one is given: tests hand it `httpx.ASGITransport(app=...)`
to run the stub upstream in-process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal

import httpx

from mcp_warden import __version__
from mcp_warden.config import ScavioProfile, Settings
from mcp_warden.errors import ConfigError
from mcp_warden.metrics import catalog as metrics
from mcp_warden.scavio.arguments import (
    COUNTRY,
    LANGUAGE,
    NUM_RESULTS_MAX,
    Format,
    check_code,
    check_format,
    check_query,
    check_range,
    check_url,
)
from mcp_warden.scavio.errors import ScavioError
from mcp_warden.scavio.keys import load_api_key
from mcp_warden.scavio.masking import upstream_reason
from mcp_warden.scavio.profiles import EXTRACT_PATH, PROFILES, USAGE_PATH
from mcp_warden.scavio.results import (
    Extracted,
    SearchResults,
    Usage,
    json_object,
    parse_extract,
    parse_search,
    parse_usage,
)
from mcp_warden.scavio.retry import Sleep, Transient, retry_after_seconds, retrying
from mcp_warden.scavio.transport import UpstreamHttp, upstream_transport
from mcp_warden.urls import redacted

log = logging.getLogger(__name__)

_URLS_KEPT = 32
"""Joined URLs a client keeps (`request_json` is public: a caller may pass any path)."""

ATTEMPTS = 3  # the first try and up to two retries
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ScavioClient:
    """One pooled HTTP client for every Scavio call of a server process.

    Build it once (`from_settings`), share it across requests, close it with
    `aclose()` (or `async with`). `request_json` is the hardened call that a
    further Scavio operation reuses: key loading, retries and error mapping.
    """

    def __init__(
        self,
        *,
        base_url: str,
        profile: ScavioProfile,
        load_key: Callable[[], str],
        credential_name: str = Settings.scavio_credential,
        timeout: float = Settings.scavio_timeout,
        attempts: int = ATTEMPTS,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
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
        self._http = UpstreamHttp(
            base_url=base_url,
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            transport=transport if transport is not None else upstream_transport(),
            headers={"User-Agent": f"mcp-warden/{__version__}", "Accept": "application/json"},
        )
        self._urls: dict[str, httpx.URL] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, load_key: Callable[[], str], **options: Any
    ) -> ScavioClient:
        """The client the settings describe; `options` (`timeout`, `attempts`, `sleep`,
        `transport`) override them."""
        options.setdefault("timeout", settings.scavio_timeout)
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
        query = check_query(query)
        check_range("num_results", num_results, 1, NUM_RESULTS_MAX)
        profile = self.profile
        body: dict[str, object] = {"query": query}
        if profile.count_field is not None:
            body[profile.count_field] = num_results
        if country is not None:
            body[profile.country_field] = check_code("country", country, COUNTRY).lower()
        if language is not None:
            body[profile.language_field] = check_code("language", language, LANGUAGE)
        payload = await self.request_json("POST", profile.search_path, body, sensitive=(query,))
        return parse_search(payload, profile, query, num_results)

    async def extract(self, url: str, format: Format = "markdown") -> Extracted:
        """The readable content of one web page, fetched by Scavio."""
        url = check_url(url)
        check_format(format)
        body = {"url": url, "format": format}
        payload = await self.request_json("POST", EXTRACT_PATH, body, sensitive=(url,))
        return parse_extract(payload, url, format)

    async def usage(self) -> Usage:
        """The account's plan and credit balance (costs no credit)."""
        return parse_usage(await self.request_json("GET", USAGE_PATH))

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
        hidden = tuple(sensitive)
        try:
            response = await self._attempt(method, path, body, hidden)
        except Transient as failure:
            first = failure
        else:
            return json_object(response)
        return json_object(await self._retried(first, method, path, body, hidden))

    async def _retried(
        self,
        first: Transient,
        method: Literal["GET", "POST"],
        path: str,
        body: Mapping[str, object] | None,
        hidden: tuple[str, ...],
    ) -> httpx.Response:
        """The call under the retry policy, once its first attempt failed with `first`.

        The policy sees `first` as its attempt 1 (no request is sent again for it),
        so its waits and its count of attempts are those of a policy run from the
        start; a call whose first attempt succeeds never builds one.
        """
        policy = retrying(attempts=self._attempts, sleep=self._sleep)
        pending: list[Transient] = [first]

        async def attempt() -> httpx.Response:
            if pending:
                raise pending.pop()
            return await self._attempt(method, path, body, hidden)

        try:
            response: httpx.Response = await policy(attempt)
        except Transient as failure:
            attempts = int(policy.statistics.get("attempt_number", 1))
            if failure.upstream_text is not None:
                _log_upstream(method, path, failure.status, failure.upstream_text)
            raise ScavioError(failure.reason, failure.describe(attempts), failure.status) from None
        return response

    async def _attempt(
        self,
        method: str,
        path: str,
        body: Mapping[str, object] | None,
        sensitive: tuple[str, ...],
    ) -> httpx.Response:
        """One try: returns a 2xx response, raises Transient or ScavioError."""
        key = load_api_key(self._load_key, self.credential_name)
        failure: Transient | None = None
        started = time.perf_counter()
        try:
            response = await self._http.request(
                method, self._url(path), json=body, headers=self.profile.auth(key)
            )
        except httpx.TimeoutException:
            failure = Transient("timeout", f"Scavio did not answer within {self._timeout:g} s")
        except httpx.TransportError as exc:
            failure = Transient(
                "unreachable", f"could not reach Scavio at {self._origin} ({type(exc).__name__})"
            )
        answered = failure.reason if failure is not None else response.status_code
        metrics.upstream_request(answered, time.perf_counter() - started)
        if failure is not None:  # raised outside `except`: no httpx request chained to it
            raise failure
        status = response.status_code
        if 200 <= status < 300:
            return response
        said = upstream_reason(response, key, sensitive)  # for the server log only
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

    def _url(self, path: str) -> httpx.URL:
        """The absolute URL of `path`, joined to the base URL once per path.

        The join is httpx's own for a relative URL (the base URL's path, then
        `path`), which it would otherwise parse again on every request.
        """
        url = self._urls.get(path)
        if url is None:
            base = self._http.base_url
            relative = httpx.URL(path).raw_path.lstrip(b"/")
            url = base.copy_with(raw_path=base.raw_path + relative)
            if len(self._urls) < _URLS_KEPT:  # our paths are a few constants; bounded anyway
                self._urls[path] = url
        return url

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


def _log_upstream(method: str, path: str, status: int | None, said: str) -> None:
    """One warning with what the upstream said (already masked by `upstream_reason`)."""
    log.warning("Scavio answered HTTP %s to %s %s: %s", status, method, path, said)
