"""Hardening tests share the suite-wide guard of tests/conftest.py: every async test under ``trio.fail_after``."""
