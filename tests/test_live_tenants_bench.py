"""`make bench`'s live_tenants runs end to end at a tiny size: its rows, and nothing lost.

20 organisations x 2 dashboards, each organisation with a subscription document of its own,
one event per organisation a second for 2 s, recorded by the bench into the outbox; the floor
gets the same events routed by hand. No timing is asserted (the machine is shared); what must
hold is that every socket got every event of its organisation, once and in order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = {
    "BENCH_TENANTS_ORGS": "20",
    "BENCH_TENANTS_DASHBOARDS": "2",
    "BENCH_TENANTS_SECONDS": "2",
    "BENCH_TENANTS_STEPS": "1",
}


@pytest.mark.slow
def test_live_tenants_tiny_run_delivers_every_event_to_its_organisation(tmp_path: Path) -> None:
    command = [sys.executable, "bench/runner.py", "--quick", "--only", "live_tenants"]
    result = subprocess.run(
        [*command, "--orders", "110", "--results-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, **TINY},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {row["name"]: row for row in json.loads((tmp_path / "latest.json").read_text())}

    opened = rows["live_tenants.subscribers"]
    assert opened["value"] == opened["baseline"] == 40 and opened["met"] is True, opened
    lost = rows["live_tenants.base.lost"]
    assert lost["value"] == 0 and lost["baseline"] == 0 and lost["met"] is True, lost
    for figure in ("p50", "p99", "max"):
        row = rows[f"live_tenants.base.{figure}"]
        assert row["unit"] == "ms" and row["value"] > 0 and row["baseline"] > 0, row
    assert rows["live_tenants.base.p99"]["target"] == "<= 1000 ms"
    assert isinstance(rows["live_tenants.base.p99"]["met"], bool)
    rate = rows["live_tenants.max_rate"]
    assert rate["unit"] == "events/s" and rate["target"] == "ratio >= 0.5", rate
    assert isinstance(rate["met"], bool)

    series = json.loads((tmp_path / "latencies.json").read_text())["series"]
    # 20 organisations x 1 event a second x 2 s, each to 2 sockets
    assert len(series["live_tenants.base"]["samples"]) == 80
    assert len(series["live_tenants.base.floor"]["samples"]) == 80
    if os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL"):
        two = rows["live_tenants.two.base.lost"]
        assert two["value"] == 0 and two["met"] is True, two
