"""Which real services this run uses, and the rule for when one is missing.

Without ``DATABASE_URL`` the suite runs on SQLite; without ``REDIS_URL`` the Redis suites are
skipped. A service that is configured but does not answer is a skip on a developer's machine
and a failure under ``CI=true``.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
SKIPPED_SUITES: dict[str, str] = {}


def answers(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2
        ):
            return True
    except OSError:
        return False


def unavailable(suite: str, reason: str) -> None:
    """Skip (or, in CI, fail) because a service this suite needs is missing."""
    SKIPPED_SUITES[suite] = reason
    if IN_CI:
        pytest.fail(f"{suite}: {reason} (CI=true: a missing service is a failure)")
    pytest.skip(f"{suite}: {reason}")


def postgres_url() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    return url if urlparse(url).scheme in {"postgres", "postgresql", "asyncpg"} else None


def redis_url() -> str | None:
    return os.environ.get("REDIS_URL") or None


def require_redis(suite: str) -> str:
    url = redis_url()
    if url is None:
        SKIPPED_SUITES[suite] = "REDIS_URL is not set"
        pytest.skip(f"{suite}: REDIS_URL is not set")
    if not answers(url, 6379):
        unavailable(suite, f"Redis at {url} does not answer")
    return url


def require_postgres(suite: str) -> str:
    url = postgres_url()
    if url is None:
        SKIPPED_SUITES[suite] = "DATABASE_URL is not PostgreSQL (SQLite is for one process)"
        pytest.skip(f"{suite}: needs PostgreSQL in DATABASE_URL")
    return url
