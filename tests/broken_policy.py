"""A policy module that fails on import, for tests/test_checks.py."""

raise RuntimeError("misconfigured")
