"""Shared fixtures: real processes and real services.

Conftest files hold fixtures only; helpers live in tests/support, and the
process plumbing the demo shares in `mcp_warden.demo.harness`. A test that
starts a real process (the CLI, `serve`, the stub, redis-server, Node) or runs
faults, load or replicas is marked `slow`: `pytest -m "not slow"` is the quick
loop, `make test` runs everything.
"""

pytest_plugins = ["tests.support.redis_server"]
