"""`make run` on a fresh SQLite file: migrates, serves, answers /readyz and a GraphQL query."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.server import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_serves_on_a_fresh_database(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite://{tmp_path / 'fresh.sqlite3'}",
        "REDIS_URL": "",
        "PORT": str(port),
        "PYTHON": sys.executable,
    }
    process = subprocess.Popen(
        ["make", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode() if process.stdout else ""
                    pytest.fail(f"make run did not come up:\n{output}")
                time.sleep(0.2)
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}

        made = subprocess.run(
            [
                sys.executable,
                "main.py",
                "create-org",
                "--name",
                "Smoke",
                "--kind",
                "SUPPLIER",
                "--owner-email",
                "smoke@example.test",
                "--with-token",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        token = made.stdout.strip().rsplit(" ", 1)[-1]
        answer = httpx.post(
            f"{base}/graphql",
            json={"query": "{ me { organisation { name kind } } }"},
            headers={"authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.json() == {
            "data": {"me": {"organisation": {"name": "Smoke", "kind": "SUPPLIER"}}}
        }
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
