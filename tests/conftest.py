"""Shared fixtures: real processes and real services (see tests/support)."""

pytest_plugins = ["tests.support.redis_server"]
