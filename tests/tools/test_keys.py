"""The API key: loaded just-in-time for every attempt, never cached, never logged or
shown; a missing or malformed key is a clear error; candidate keys can be checked,
by `cred rotate --verify` without importing the MCP SDK or the server."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mcp_warden.config import Settings
from mcp_warden.credentials.envelope import parse_key
from mcp_warden.credentials.errors import CredentialNotFound, DecryptionFailed
from mcp_warden.credentials.store import CredentialStore
from mcp_warden.demo.harness import Stub, free_port, run_cli
from mcp_warden.demo.stub import key_id
from mcp_warden.errors import ConfigError, WardenError
from mcp_warden.scavio.client import ScavioClient
from mcp_warden.scavio.errors import ScavioError
from mcp_warden.scavio.verify import ApiKeyCheckError, check_api_key
from tests.support.credentials import cred_env, new_master_key
from tests.support.stub import new_api_key
from tests.tools.cases import missing_key_logged
from tests.tools.fakes import Sleeps
from tests.tools.inprocess import InProcessStub

pytestmark = pytest.mark.anyio

QUERY = "acquisition target shortlist"

# `mcp-warden cred rotate scavio_api_key --verify`, recording the modules it imported
ROTATE_VERIFY = """
import atexit, json, sys
out = sys.argv.pop()
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from mcp_warden.cli import main
sys.argv = ["mcp-warden", "cred", "rotate", "scavio_api_key", "--verify"]
main()
"""


class Store:
    """Stands in for the credential store: counts loads, can be rotated."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.loads = 0

    def load(self) -> str:
        self.loads += 1
        return self.key


async def test_each_call_and_each_retry_loads_the_key_afresh(
    make_client: Callable[..., ScavioClient], stub: Stub, api_key: str
) -> None:
    store = Store(api_key)
    async with make_client(load_key=store.load) as client:
        await client.search(QUERY)
        await client.usage()
        assert store.loads == 2
        stub.mode(status=429, times=2)
        await client.search(QUERY)
    assert store.loads == 5  # one load per attempt
    assert stub.keys_used() == [key_id(api_key)] * 5


async def test_a_rotated_key_is_used_on_the_next_call(
    make_client: Callable[..., ScavioClient], stub: Stub, api_key: str
) -> None:
    store = Store(api_key)
    rotated = new_api_key()
    async with make_client(load_key=store.load) as client:
        await client.search(QUERY)
        stub.set_keys(api_key, rotated)  # the upstream accepts both during the rotation
        store.key = rotated
        await client.search(QUERY)
        stub.set_keys(rotated)  # the old key is revoked upstream
        await client.extract("https://example.org/")
        store.key = api_key  # a replica still holding the old key would now fail
        with pytest.raises(ScavioError, match="key was rejected"):
            await client.usage()
    assert stub.keys_used() == [key_id(api_key), key_id(rotated), key_id(rotated), key_id(api_key)]
    assert stub.statuses() == [200, 200, 200, 401]


async def refused_load(client: ScavioClient) -> ScavioError:
    """The error of a call whose key cannot be loaded, checked for what all such errors share:
    one fixed reason for the client, no chained cause, nothing sent upstream."""
    with pytest.raises(ScavioError) as refused:
        await client.usage()
    assert refused.value.reason == "no_credential"
    assert str(refused.value) == (
        "the upstream credential is not available on this server (no_credential); "
        "the server log has the cause"
    )
    assert refused.value.__cause__ is None
    assert refused.value.__suppress_context__
    return refused.value


async def test_a_missing_credential_states_its_fix_once_in_the_server_log(
    make_client: Callable[..., ScavioClient],
    stub: Stub,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The real path: the credential store without the entry raises CredentialNotFound."""
    caplog.set_level(logging.WARNING, logger="mcp_warden")
    path = tmp_path / "mcp_credentials.enc"
    store = CredentialStore(path, parse_key(new_master_key()))
    store.set("other_api_key", "a value")  # a store as `cred set` writes it, without ours

    async with make_client(load_key=lambda: store.load("scavio_api_key")) as client:
        await refused_load(client)
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("mcp_warden")]
    assert logged == [missing_key_logged(path)]
    assert stub.calls() == 0


async def test_a_master_key_missing_at_load_is_a_clear_error(
    make_client: Callable[..., ScavioClient], stub: Stub
) -> None:
    def load() -> str:
        raise ConfigError("MCP_ENCRYPTION_KEY is not set; create one with `mcp-warden keygen`")

    async with make_client(load_key=load) as client:
        await refused_load(client)
    assert stub.calls() == 0


@pytest.mark.parametrize(
    "failure",
    [
        lambda path: CredentialNotFound(
            f"no credential 'scavio_api_key' in {path}; list them with `mcp-warden cred list`"
        ),
        lambda path: DecryptionFailed(f"credential 'scavio_api_key' in {path} does not open"),
        lambda path: PermissionError(13, "Permission denied", str(path)),
    ],
    ids=["not_found", "undecryptable", "unreadable"],
)
async def test_a_credential_error_shows_the_client_no_server_path_and_logs_it(
    make_client: Callable[..., ScavioClient],
    stub: Stub,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    failure: Callable[[Path], Exception],
) -> None:
    caplog.set_level(logging.WARNING, logger="mcp_warden")
    store = tmp_path / "secret-dir" / "mcp_credentials.enc"

    def load() -> str:
        raise failure(store)

    async with make_client(load_key=load) as client:
        refused = await refused_load(client)
    assert str(tmp_path) not in str(refused)
    assert "secret-dir" not in str(refused)
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("mcp_warden")]
    assert len(logged) == 1
    assert logged[0].startswith("the Scavio API key 'scavio_api_key' could not be loaded: ")
    assert str(store) in logged[0]
    assert stub.calls() == 0


@pytest.mark.parametrize(
    "bad", ["", "   ", "sk test with spaces", "sk_t\x00est", "sk_\u00e9t\u00e9"]
)
async def test_a_malformed_key_is_refused_without_being_sent_or_shown(
    make_client: Callable[..., ScavioClient], stub: Stub, bad: str
) -> None:
    async with make_client(load_key=lambda: bad) as client:
        with pytest.raises(ScavioError, match="is empty or malformed") as refused:
            await client.search(QUERY)
    assert "cred rotate scavio_api_key" in str(refused.value)
    assert bad.strip() == "" or bad not in str(refused.value)
    assert stub.calls() == 0


async def test_surrounding_whitespace_of_a_stored_key_is_ignored(
    make_client: Callable[..., ScavioClient], stub: Stub, api_key: str
) -> None:
    async with make_client(load_key=lambda: f"  {api_key}\n") as client:
        await client.usage()
    assert stub.keys_used() == [key_id(api_key)]


async def test_neither_key_nor_query_reaches_logs_or_messages(
    make_live_client: Callable[..., ScavioClient],
    live_stub: Stub,
    api_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    async with make_live_client(timeout=0.2) as client:
        await client.search(QUERY, country="de", language="de")
        await client.extract(f"https://example.org/{QUERY.replace(' ', '-')}")
        for mode in (
            {"status": 401},
            {"status": 400, "error": f"bad key {api_key} for {QUERY}"},
            {"status": 500, "error": f"upstream crashed on {QUERY} with {api_key}"},
            {"delay": 0.5},
        ):
            live_stub.mode(**mode, times=3)
            with pytest.raises(ScavioError) as failed:
                await client.search(QUERY)
            messages.append(str(failed.value))
    live_stub.set_keys(new_api_key())
    async with make_live_client() as client:
        with pytest.raises(ScavioError) as failed:
            await client.search(QUERY)
        messages.append(str(failed.value))
    assert "HTTP Request: POST" in caplog.text  # httpx's own log lines were captured
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for text in [logged, *messages]:
        assert api_key not in text
        assert QUERY not in text
        assert QUERY.replace(" ", "-") not in text


async def test_check_api_key_accepts_a_working_key(stub: InProcessStub) -> None:
    candidate = new_api_key()
    stub.set_keys(candidate)
    await check_api_key(Settings(scavio_base_url=stub.url), candidate, transport=stub.transport())
    assert stub.keys_used() == [key_id(candidate)]
    assert stub.calls("/api/v1/usage") == 1


@pytest.mark.parametrize("profile", ["scavio-v2", "tutorial"])
async def test_check_api_key_reports_a_rejected_key(stub: InProcessStub, profile: str) -> None:
    candidate = new_api_key()
    settings = Settings(scavio_base_url=stub.url).with_overrides(scavio_profile=profile)
    with pytest.raises(ApiKeyCheckError) as refused:
        await check_api_key(settings, candidate, transport=stub.transport())
    assert isinstance(refused.value, WardenError)
    assert refused.value.exit_code == 1
    assert str(refused.value) == "Scavio rejected the new key (HTTP 401)"
    assert stub.keys_used() == [key_id(candidate)]


async def test_check_api_key_reports_an_unreachable_upstream(sleeps: Sleeps) -> None:
    settings = Settings(scavio_base_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ApiKeyCheckError, match="could not verify the new key with Scavio: could"):
        await check_api_key(settings, new_api_key(), timeout=1.0, sleep=sleeps)
    assert len(sleeps.waits) == 2


async def test_check_api_key_refuses_a_malformed_value_without_a_call(
    stub: InProcessStub,
) -> None:
    settings = Settings(scavio_base_url=stub.url)
    with pytest.raises(ApiKeyCheckError, match="not a usable Scavio key"):
        await check_api_key(settings, "two words", transport=stub.transport())
    assert stub.calls() == 0


def test_rotate_verify_imports_neither_the_mcp_sdk_nor_the_server(
    live_stub: Stub, tmp_path: Path
) -> None:
    old, rotated = new_api_key(), new_api_key()
    live_stub.set_keys(old, rotated)
    env = cred_env(tmp_path, new_master_key(), SCAVIO_BASE_URL=live_stub.url)
    assert run_cli(["cred", "set", "scavio_api_key"], env, input=old).returncode == 0
    modules = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", ROTATE_VERIFY, str(modules)],
        env=env,
        input=rotated,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "scavio_api_key: rotated\n"
    assert live_stub.keys_used() == [key_id(rotated)]  # the verifying usage call
    loaded = json.loads(modules.read_text())
    assert "mcp_warden.scavio.verify" in loaded
    assert [m for m in loaded if m == "mcp" or m.startswith(("mcp.", "mcp_warden.server"))] == []
