"""Every package that src imports is named in pyproject.toml's dependencies.

A package that only arrives with another one (httpx2 with the mcp SDK) can
leave with that package's next release; a user's install would then break.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib

from tests.support.procs import REPO


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_top_level_modules() -> set[str]:
    modules: set[str] = set()
    for path in (REPO / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.partition(".")[0])
    return modules - set(sys.stdlib_module_names) - {"mcp_warden"}


def test_every_imported_package_is_a_declared_dependency() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    # An optional integration (mcp_warden.fastmcp) may import what its extra declares.
    specs = [*project["dependencies"]]
    for extra, extra_specs in project["optional-dependencies"].items():
        if extra != "dev":
            specs += extra_specs
    declared = {
        normalized(re.match(r"[A-Za-z0-9._-]+", spec).group())  # type: ignore[union-attr]
        for spec in specs
    }
    distributions = importlib.metadata.packages_distributions()
    modules = imported_top_level_modules()
    assert {"mcp", "httpx2", "starlette"} <= modules  # the scan sees the imports
    undeclared = {
        module: distributions.get(module, ["?"])
        for module in modules
        if not {normalized(d) for d in distributions.get(module, [])} & declared
    }
    assert undeclared == {}, "add these to [project] dependencies in pyproject.toml"
