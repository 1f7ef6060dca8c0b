"""Databases made for one benchmark run: next to DATABASE_URL's when that names PostgreSQL
(``bench_<random>``, dropped afterwards), else a SQLite file in a temporary folder; migrated the
way ``make run`` does it."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from bench.common import PYTHON, ROOT

POSTGRES_SCHEMES = {"postgres", "postgresql", "asyncpg"}


def is_postgres(url: str) -> bool:
    return urlparse(url).scheme in POSTGRES_SCHEMES


def scratch_database(source: str) -> tuple[str, str | None, Path | None]:
    """(URL for the run, PostgreSQL database to drop after, temporary folder to remove after)."""
    if is_postgres(source):
        name = f"bench_{uuid.uuid4().hex[:8]}"
        url = urlunparse(urlparse(source)._replace(scheme="postgres", path=f"/{name}"))
        return url, name, None
    folder = Path(tempfile.mkdtemp(prefix="supplygraph-bench-"))
    return f"sqlite://{folder / 'bench.sqlite3'}", None, folder


def asyncpg_url(url: str) -> str:
    """``url`` as asyncpg takes it (scheme ``postgresql``)."""
    return urlunparse(urlparse(url)._replace(scheme="postgresql"))


async def admin(source: str, sql: str) -> None:
    """One statement on the PostgreSQL server of ``source`` (CREATE or DROP DATABASE)."""
    import asyncpg

    conn = await asyncpg.connect(asyncpg_url(source))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def settle(url: str) -> str:
    """Between benchmarks on PostgreSQL: ``CHECKPOINT`` (the last benchmark's dirty pages are
    written now, not behind the next one's figures) and ``ANALYZE`` (with autovacuum off, as on
    this machine's PostgreSQL, the planner would plan the next benchmark's statements on
    statistics from before the last one's writes: the outbox claim once walked the primary key
    past 13,000 published events to find 3). What ran and how long, or why it could not."""
    import asyncpg

    started = time.perf_counter()
    conn = await asyncpg.connect(asyncpg_url(url))
    try:
        done = []
        try:
            await conn.execute("CHECKPOINT")
            done.append("CHECKPOINT")
        except asyncpg.InsufficientPrivilegeError:
            done.append("no CHECKPOINT (not allowed)")
        await conn.execute("ANALYZE")
        done.append("ANALYZE")
    finally:
        await conn.close()
    return f"{', '.join(done)} in {time.perf_counter() - started:.1f} s"


def migrate(url: str) -> None:
    """As ``make run`` does: ``python main.py migrate`` in its own process."""
    result = subprocess.run(
        [PYTHON, "main.py", "migrate"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{result.stderr}")
