"""`make run` on a fresh SQLite file, as the README's first lines tell a newcomer: it migrates,
makes the demo world, prints where the API, GraphiQL and the dashboard are and a token for each
demo owner, and serves; the printed seller token answers the README's first query."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from domain.orders.models import OrderStatus
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TOKEN_LINE = re.compile(r"^(Demo \w+)\s+(BUYER|SUPPLIER)\s+\S+\s+token: (sg_\S+)$")


def readme_first_query() -> str:
    """The first ```graphql block of the README's opening lines (before "## What it is")."""
    opening = README.read_text(encoding="utf-8").split("\n## What it is", 1)[0]
    found = re.search(r"```graphql\n(.*?)```", opening, re.DOTALL)
    assert found is not None, "the README's first lines show no GraphQL query"
    return found.group(1).strip()


def test_the_readme_s_curl_sends_the_first_query() -> None:
    opening = README.read_text(encoding="utf-8").split("\n## What it is", 1)[0]
    body = re.search(r"curl .*?-d '(\{.*?\})'", opening, re.DOTALL)
    assert body is not None, "the README's first lines show no curl command"
    assert json.loads(body.group(1)) == {"query": readme_first_query()}


class Output:
    """What a process prints, read on a thread as it comes (a pipe nobody reads would fill)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        self._process = process
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_prints_the_addresses_and_tokens_and_serves_the_demo(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite://{tmp_path / 'fresh.sqlite3'}",
        "SECRETS_KEY": "",
        "SECRETS_KEY_FILE": str(tmp_path / "supplygraph.key"),
        "REDIS_URL": "",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PUBLIC_URL": "",
        "PYTHON": sys.executable,
    }
    for name in ("DEMO", "DEBUG"):  # as a newcomer's shell has them: not set
        env.pop(name, None)
    process = subprocess.Popen(
        ["make", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output = Output(process)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:  # `seed-demo` serves the app for a while first: wait for `serve`'s
            try:
                ready = httpx.get(f"{base}/readyz", timeout=1)
                if ready.status_code == 200 and "GraphQL API" in output.text():
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"make run did not come up:\n{output.text()}")
            time.sleep(0.2)
        assert ready.json() == {"status": "ready"}

        printed = output.text()
        assert f"{base}/graphql" in printed, printed
        assert re.search(rf"GraphiQL\s+{re.escape(base)}/graphql", printed), printed
        assert f"{base}/dashboard" in printed, printed
        tokens = {
            found[1]: found[3]
            for line in output.lines
            if (found := TOKEN_LINE.match(line.strip())) is not None
        }
        assert set(tokens) == {"Demo Supplier", "Demo Seller", "Demo Distributor"}, printed

        answer = httpx.post(
            f"{base}/graphql",
            json={"query": readme_first_query()},
            headers={"Authorization": f"Bearer {tokens['Demo Seller']}"},
            timeout=10,
        ).json()
        assert "errors" not in answer, answer
        assert answer["data"]["me"]["organisation"]["name"] == "Demo Seller"
        statuses = {c["status"] for c in answer["data"]["orderCounts"] if c["count"]}
        assert statuses == {s.value for s in OrderStatus}, answer
        # the world's simulators are served by the same process
        store = httpx.post(f"{base}/_demo/warehouse/_sim/faults", json={}, timeout=10)
        assert store.status_code == 200, store.text
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_installs_what_running_needs_and_make_test_adds_the_rest() -> None:
    """`make run` installs the project without its `test` extra (no pytest, ruff or plotting
    packages in a venv made for running); `make test` adds the extra on top."""
    import tomllib

    def recipe(target: str) -> str:
        made = subprocess.run(
            ["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return made.stdout

    run, test = recipe("run"), recipe("test")
    assert "pip install --quiet -e ." in run and "[test]" not in run
    assert "pip install --quiet -e '.[test]'" in test
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    running = " ".join(project["dependencies"])
    for tool in ("pytest", "ruff", "matplotlib", "hypothesis", "playwright"):
        assert tool not in running, tool
        assert any(tool in d for d in project["optional-dependencies"]["test"]), tool
