"""The metric labels stay in bounded sets whatever a request says, and the enums are complete.

In-process: the catalog's update calls against prometheus_client's default
registry (values read as deltas, other tests may have counted before), and an
AST scan of the sources that write reasons, so a new reason cannot slip past
the enums into "other" unnoticed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from mcp_warden.credentials.errors import BindingMismatch
from mcp_warden.errors import ConfigError
from mcp_warden.metrics import catalog
from mcp_warden.server.guard import DENIED
from tests.support.procs import REPO

SRC = REPO / "src" / "mcp_warden"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_tool_the_server_did_not_register_is_one_label() -> None:
    catalog.register_tool("registered_tool")
    before = value("mcp_warden_tool_calls_total", tool=catalog.UNREGISTERED, outcome="denied")
    for name in ("no_such_tool", "x" * 500, ["a", "list"], None, 7):
        catalog.tool_call(name, "denied", 0.001)
    catalog.tool_call("registered_tool", "allowed", 0.002)
    assert (
        value("mcp_warden_tool_calls_total", tool=catalog.UNREGISTERED, outcome="denied")
        == before + 5
    )
    assert value("mcp_warden_tool_calls_total", tool="registered_tool", outcome="allowed") == 1
    assert value("mcp_warden_tool_calls_total", tool="registered_tool", outcome="error") == 0
    assert value("mcp_warden_tool_call_duration_seconds_count", tool="registered_tool") == 1


@pytest.mark.parametrize(
    ("status", "reason", "labels"),
    [
        (401, "bad_signature", {"status": "401", "reason": "bad_signature"}),
        (401, "eyJhbGciOi.caller.text", {"status": "401", "reason": "other"}),
        (999, "overloaded", {"status": "other", "reason": "overloaded"}),
    ],
)
def test_refusals_take_known_reasons_and_statuses_only(
    status: int, reason: str, labels: dict[str, str]
) -> None:
    before = value("mcp_warden_http_refusals_total", **labels)
    catalog.refusal(status, reason)
    assert value("mcp_warden_http_refusals_total", **labels) == before + 1


@pytest.mark.parametrize(
    ("answered", "label"),
    [(200, "200"), (429, "429"), (799, "other"), ("timeout", "timeout"), ("weird", "other")],
)
def test_upstream_statuses_are_bounded(answered: int | str, label: str) -> None:
    name = "mcp_warden_upstream_request_duration_seconds_count"
    before = value(name, status=label)
    catalog.upstream_request(answered, 0.01)
    assert value(name, status=label) == before + 1


def test_an_issuer_client_is_a_label_only_once_authenticated() -> None:
    name = "mcp_warden_issuer_requests_total"
    claimed = {"endpoint": "token", "outcome": "refused", "reason": "invalid_secret"}
    before = value(name, client=catalog.UNAUTHENTICATED, **claimed)
    catalog.issuer_request("token", "refused", None, "invalid_secret")
    assert value(name, client=catalog.UNAUTHENTICATED, **claimed) == before + 1
    catalog.issuer_request("token", "refused", "mcpw_known", "no such reason")
    assert value(name, endpoint="token", outcome="refused", client="mcpw_known", reason="other")
    catalog.issuer_request("token", "issued", "mcpw_known", None)
    assert value(name, endpoint="token", outcome="issued", client="mcpw_known", reason="none")


def test_credential_failures_are_named_by_our_error_classes_only() -> None:
    assert catalog.error_label(BindingMismatch("x")) == "binding_mismatch"
    assert catalog.error_label(ConfigError("x")) == "config_error"
    assert catalog.error_label(OSError("x")) == "other"
    before = value("mcp_warden_credential_load_failures_total", reason="binding_mismatch")
    catalog.credential_load_failed(BindingMismatch("x"))
    assert value("mcp_warden_credential_load_failures_total", reason="binding_mismatch") == (
        before + 1
    )


def string_arguments(root: Path, functions: dict[str, int]) -> Iterator[tuple[str, str]]:
    """(where, text) of each string literal passed as the reason argument of `functions`."""
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name not in functions:
                continue
            at = functions[name]
            arg = node.args[at] if len(node.args) > at else None
            arg = arg or next((k.value for k in node.keywords if k.arg == "reason"), None)
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield f"{path.name}:{node.lineno}", arg.value


def test_every_issuer_reason_is_in_the_enum() -> None:
    functions = {"OAuthError": 2, "invalid_request": 1, "invalid_client": 1, "_refuse": 1}
    found = dict(string_arguments(SRC / "issuer", functions))
    assert len(found) > 30  # the scan sees them
    assert {where: r for where, r in found.items() if r not in catalog.ISSUER_REASONS} == {}


def test_every_refusal_reason_of_the_http_layers_is_in_the_enum() -> None:
    found = dict(string_arguments(SRC / "server", {"refused": 1}))
    assert {"overloaded", "method_not_allowed", "batch", "body_too_large"} <= set(found.values())
    assert {where: r for where, r in found.items() if r not in catalog.REFUSAL_REASONS} == {}
    assert DENIED in catalog.REFUSAL_REASONS
    assert "missing_token" in catalog.REFUSAL_REASONS
