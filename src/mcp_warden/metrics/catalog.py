"""Every Prometheus metric mcp-warden exports, declared once, and the calls that update them.

Each call is made at the one place its concept already lives:

    tool_call               server/audit.py: the audit line of every tools/call
    refusal                 server/audit.py: the audit line of every request our HTTP layers
                            refuse (401, 503, 400, 405, 413), and the 403 insufficient_scope
    upstream_request        scavio/client.py: each attempt, where its status is mapped
    revocation_synced       tokens/revocation/sync.py: each successful sync of the view
    jwks_loaded             tokens/jwks.py: each time a JWKS file or URL is (re)loaded
    credential_load_failed  warden.py: the just-in-time credential load
    issuer_request          server/audit.py: the audit line of every issuer token or revocation

Labels come from bounded sets only, never from what a request says: a tool
name this process registered (`register_tool`, called by `Warden.tool`),
else UNREGISTERED; a reason from a fixed enum (REFUSAL_REASONS,
ISSUER_REASONS), else OTHER; an HTTP status that `http.HTTPStatus` names,
else OTHER; an issuer client_id only once the client authenticated (a
registry id, so at most the registered clients), else UNAUTHENTICATED. No
token, sub, jti, address, argument or secret is ever a label value.

Ages are exported as the time of the last success (`*_timestamp_seconds`,
Unix time), as Prometheus recommends: an age set when the sync runs would
freeze when the sync stops, while `time() - timestamp` keeps growing.

Several processes (`serve --workers N`): prometheus_client's multiprocess
mode, chosen when PROMETHEUS_MULTIPROC_DIR is set before prometheus_client
is first imported (`endpoint.prepare_multiprocess_dir` sets it for the
workers). Counters and histograms add up over the workers; the gauges are
`livemin`, the worst live worker: the stalest revocation view, the smallest
one, the fewest keys. Every metric has labels, so a process that never
observes one (the supervisor; the issuer, which follows no revocation view)
exports no series of it instead of a misleading 0.
"""

from __future__ import annotations

import http
import re
import time
from typing import Any, Final, TypeVar, cast, get_args

from prometheus_client import Counter, Gauge, Histogram

from mcp_warden.errors import WardenError
from mcp_warden.tokens.dpop import DpopReason
from mcp_warden.tokens.errors import Reason as TokenReason

M = TypeVar("M", Counter, Gauge, Histogram)

OTHER: Final = "other"
UNREGISTERED: Final = "(unregistered)"  # parentheses: no tool name can be this
UNAUTHENTICATED: Final = "unauthenticated"
NO_REASON: Final = "none"

_DPOP: Final = frozenset(f"dpop_{reason}" for reason in get_args(DpopReason))

REFUSAL_REASONS: Final = frozenset(
    {
        *get_args(TokenReason),  # 401 (503: revocation_unavailable)
        *_DPOP,  # 401 invalid_dpop_proof
        "missing_token",  # 401 without a token
        "tool_not_allowed",  # 403 insufficient_scope
        "overloaded",  # 503 beyond MCP_MAX_CONCURRENT_REQUESTS
        "method_not_allowed",  # 405
        "batch",  # 400
        "body_too_large",  # 413
    }
)
"""The reasons the HTTP layers of `serve` write in a refusal's audit line."""

ISSUER_REASONS: Final = _DPOP | frozenset(
    {
        *(
            f"assertion_{check}"
            for check in (
                "algorithm",
                "audience",
                "claims",
                "expired",
                "issuer",
                "lifetime",
                "malformed",
                "missing",
                "not_yet_valid",
                "replayed",
                "signature",
                "subject",
                "type",
            )
        ),
        "body_too_large",
        "client_id_mismatch",
        "client_key_unusable",
        "dpop_required",
        "duplicate_parameter",
        "invalid_scope",
        "invalid_secret",
        "malformed_basic",
        "malformed_body",
        "no_client_authentication",
        "no_client_id",
        "no_grant_type",
        "no_resource",
        "no_token",
        "not_a_valid_token",
        "not_own_token",
        "rate_limited",
        "several_auth_methods",
        "several_resources",
        "store_unavailable",
        "unknown_client",
        "unknown_resource",
        "unsupported_grant_type",
        "wrong_auth_method",
    }
)
"""The reasons of the issuer's audit lines (tests/metrics checks the issuer raises no other)."""

_STATUSES: Final = frozenset(int(status) for status in http.HTTPStatus)
_TRANSPORT: Final = frozenset({"timeout", "unreachable"})  # the upstream client's words

CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UPSTREAM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)

TOOL_CALLS = Counter(
    "mcp_warden_tool_calls",
    "tools/call requests by tool and outcome (allowed, denied before it ran, error)",
    ["tool", "outcome"],
)
TOOL_CALL_SECONDS = Histogram(
    "mcp_warden_tool_call_duration_seconds",
    "Time from a tools/call's arrival to its audit line, every outcome",
    ["tool"],
    buckets=CALL_BUCKETS,
)
REFUSALS = Counter(
    "mcp_warden_http_refusals",
    "Requests the HTTP layers refused before a tool ran, by status and reason",
    ["status", "reason"],
)
UPSTREAM_SECONDS = Histogram(
    "mcp_warden_upstream_request_duration_seconds",
    "Upstream (Scavio) HTTP attempts by status (or timeout, unreachable), and their time",
    ["status"],
    buckets=UPSTREAM_BUCKETS,
)
REVOCATION_SYNCED = Gauge(
    "mcp_warden_revocation_synced_timestamp_seconds",
    "When the revocation view last synced from its shared store (Unix time)",
    ["store"],
    multiprocess_mode="livemin",
)
REVOCATION_ENTRIES = Gauge(
    "mcp_warden_revocation_entries",
    "Revocations (jti and sub entries) in the view after its last sync",
    ["store"],
    multiprocess_mode="livemin",
)
JWKS_KEYS = Gauge(
    "mcp_warden_jwks_keys",
    "Signing keys the verifier trusts, from its last JWKS load",
    ["source"],
    multiprocess_mode="livemin",
)
JWKS_LOADED = Gauge(
    "mcp_warden_jwks_loaded_timestamp_seconds",
    "When the JWKS was last (re)loaded (Unix time)",
    ["source"],
    multiprocess_mode="livemin",
)
CREDENTIAL_FAILURES = Counter(
    "mcp_warden_credential_load_failures",
    "Just-in-time credential loads that failed, by the error's kind",
    ["reason"],
)
ISSUER_REQUESTS = Counter(
    "mcp_warden_issuer_requests",
    "Issuer token and revocation requests by outcome, authenticated client and reason",
    ["endpoint", "outcome", "client", "reason"],
)

_tools: set[str] = set()
_OUTCOMES = ("allowed", "denied", "error")
_children: dict[tuple[object, tuple[str, ...]], Any] = {}


def _child(metric: M, *labels: str) -> M:
    """`metric.labels(*labels)`, kept: a dict lookup instead of the library's lock per call."""
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        child = _children.setdefault(key, metric.labels(*labels))
    return cast("M", child)


def register_tool(name: str) -> None:
    """Make `name` a tool label value (its series start at 0): the server registered it."""
    _tools.add(name)
    for outcome in _OUTCOMES:
        _child(TOOL_CALLS, name, outcome)
    _child(TOOL_CALL_SECONDS, name)


def tool_call(tool: object, outcome: str, seconds: float) -> None:
    """One tools/call, as its audit line records it."""
    name = tool if isinstance(tool, str) and tool in _tools else UNREGISTERED
    _child(TOOL_CALLS, name, outcome).inc()
    _child(TOOL_CALL_SECONDS, name).observe(seconds)


def refusal(status: int, reason: str | None) -> None:
    """One request an HTTP layer answered `status` before a tool ran."""
    _child(REFUSALS, status_label(status), _known(reason, REFUSAL_REASONS)).inc()


def upstream_request(status: int | str, seconds: float) -> None:
    """One upstream attempt: its HTTP status, or `timeout`/`unreachable` when none came back."""
    if isinstance(status, int):
        label = status_label(status)
    else:
        label = status if status in _TRANSPORT else OTHER
    _child(UPSTREAM_SECONDS, label).observe(seconds)


def revocation_synced(store: object, entries: int) -> None:
    """The view synced from `store` (labelled by its kind: sqlite, redis) and holds `entries`."""
    kind = type(store).__name__.removesuffix("Store").lower() or OTHER
    REVOCATION_SYNCED.labels(kind).set(time.time())
    REVOCATION_ENTRIES.labels(kind).set(entries)


def jwks_loaded(source: str, keys: int) -> None:
    """A JWKS was (re)loaded from `source` (file or https) with `keys` trusted keys."""
    JWKS_KEYS.labels(source).set(keys)
    JWKS_LOADED.labels(source).set(time.time())


def credential_load_failed(exc: BaseException) -> None:
    """A just-in-time credential load raised `exc` (labelled by its class: decryption_failed...)."""
    CREDENTIAL_FAILURES.labels(error_label(exc)).inc()


def issuer_request(endpoint: str, outcome: str, client: str | None, reason: str | None) -> None:
    """One issuer answer; `client` is None unless the client authenticated."""
    word = _known(reason, ISSUER_REASONS)
    ISSUER_REQUESTS.labels(endpoint, outcome, client or UNAUTHENTICATED, word).inc()


def _known(reason: str | None, reasons: frozenset[str]) -> str:
    if reason is None:
        return NO_REASON
    return reason if reason in reasons else OTHER


def status_label(status: int) -> str:
    """An HTTP status as a label: the code when `http.HTTPStatus` names it, else OTHER."""
    return str(status) if status in _STATUSES else OTHER


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def error_label(exc: BaseException) -> str:
    """snake_case of one of our error classes (DecryptionFailed: decryption_failed), else OTHER."""
    kind = type(exc)
    if not isinstance(exc, WardenError) or not kind.__module__.startswith("mcp_warden."):
        return OTHER
    return _CAMEL.sub("_", kind.__name__).lower()
