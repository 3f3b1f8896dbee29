"""The library's top-level names: importable, lazily loaded, and the error tree as drawn."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import mcp_warden
from mcp_warden import errors
from mcp_warden.errors import WardenError

HEAVY = ("mcp", "httpx", "cryptography", "starlette", "uvicorn")


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_from_mcp_warden_import_warden_works() -> None:
    done = python("from mcp_warden import Warden; print(Warden.__module__)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "mcp_warden.warden"


def test_importing_the_package_loads_no_heavy_library() -> None:
    code = f"import sys, mcp_warden; print([m for m in {HEAVY!r} if m in sys.modules])"
    done = python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_public_name_resolves_and_is_listed() -> None:
    names = [name for name in mcp_warden.__all__ if name != "__version__"]
    assert len(names) == len(set(names))
    for name in names:
        value = getattr(mcp_warden, name)
        assert getattr(value, "__name__", name) == name
    assert set(names) <= set(dir(mcp_warden))
    for required in ("Warden", "CredentialStore", "Verifier", "Claims", "TokenError"):
        assert required in names
    for required in ("WardenError", "ConfigError", "Settings", "Grant", "Refusal"):
        assert required in names


def test_the_errors_docstring_draws_every_warden_error() -> None:
    for module in pkgutil.walk_packages(mcp_warden.__path__, "mcp_warden."):
        if not module.name.endswith(".__main__"):  # that one runs the CLI
            importlib.import_module(module.name)
    found: set[type[WardenError]] = set()
    pending: list[type[WardenError]] = [WardenError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    drawn = errors.__doc__ or ""
    mine = {cls for cls in found if cls.__module__.startswith("mcp_warden.")}
    assert {cls.__name__ for cls in mine if cls.__name__ not in drawn} == set()
    for cls in mine:  # a declared reason on every class, narrowed or inherited
        assert isinstance(cls.reason, str)
        assert cls.reason
