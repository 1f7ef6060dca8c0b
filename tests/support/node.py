"""JavaScript clients and conformance tools (``tests/js``) run with the machine's Node.js.

``node_tools`` installs ``tests/js``'s locked packages on first use (``npm ci``, from the npm
registry) and returns a runner; without Node.js the suite is skipped, and under ``CI=true`` it
fails, like a missing service.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.services import unavailable

JS = Path(__file__).resolve().parent.parent / "js"


@dataclass(frozen=True)
class NodeTools:
    node: str

    async def run(self, script: str, *args: str, timeout: float = 120) -> str:
        """Run ``tests/js/<script>`` and return its standard output (it must exit 0)."""
        process = await asyncio.create_subprocess_exec(
            self.node,
            str(JS / script),
            *args,
            cwd=JS,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout)
        assert process.returncode == 0, f"{script} exited {process.returncode}: {err.decode()}"
        return out.decode()

    async def json(self, script: str, *args: str) -> Any:
        return json.loads(await self.run(script, *args))

    async def lines(self, script: str, *args: str) -> list[Any]:
        return [json.loads(line) for line in (await self.run(script, *args)).splitlines() if line]


def node_tools(suite: str) -> NodeTools:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable(suite, "Node.js (node and npm) is not installed")
    assert node is not None and npm is not None
    lock = JS / "package-lock.json"
    installed = JS / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            unavailable(suite, f"npm ci in tests/js failed: {done.stderr.strip()[-500:]}")
    return NodeTools(node)
