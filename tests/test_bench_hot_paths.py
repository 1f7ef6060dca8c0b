"""``make bench`` runs ``hot_paths`` (and, with PostgreSQL and Redis, ``scale_out``) at a tiny
size through the runner: rows come out and the benchmarks' own correctness checks pass. No
timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import require_postgres, require_redis

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--quick", "--orders", "200", "--duration", "0.3", "--repetitions", "1", "--clients", "4"]


def run_bench(only: str, results: Path) -> dict[str, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "bench/runner.py", "--only", only, *TINY, "--results-dir", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads((results / "latest.json").read_text())
    return {row["name"]: row for row in rows}


@pytest.mark.slow
def test_hot_paths_rows_and_checks(tmp_path: Path) -> None:
    rows = run_bench("hot_paths", tmp_path)
    for name in ("pay", "pay_from_stock", "withdraw"):
        row = rows[f"hot_paths.{name}"]
        assert row["unit"] == "req/s" and row["value"] > 0 and row["baseline"] > 0, row
        assert rows[f"hot_paths.{name}.p99"]["unit"] == "ms"
        check = rows[f"hot_paths.{name}.checked"]
        assert check["met"] is True and check["value"] > 0, check
    assert rows["hot_paths.withdraw.cascade"]["unit"] == "s"
    assert rows["hot_paths.withdraw.cascade_rate"]["value"] > 0
    assert rows["hot_paths.withdraw.to_withdrawn.p99"]["value"] > 0
    series = json.loads((tmp_path / "latencies.json").read_text())["series"]
    assert series["hot_paths.pay"]["samples"] and series["hot_paths.baseline"]["samples"]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_scale_out_rows_and_nothing_lost(tmp_path: Path) -> None:
    require_postgres("bench: scale_out")
    require_redis("bench: scale_out")
    rows = run_bench("scale_out", tmp_path)
    for name in ("scale_out.two", "scale_out.uncached.two"):
        assert rows[name]["value"] > 0 and rows[name]["baseline"] > 0, rows[name]
    for side in ("same", "cross"):
        assert rows[f"scale_out.{side}.p99"]["value"] > 0
        lost = rows[f"scale_out.{side}.lost"]
        assert lost["value"] == 0 and lost["met"] is True, lost
    assert rows["scale_out.cross.p99"]["target"] == "ratio <= 1.3"
    assert isinstance(rows["scale_out.cross.p99"]["met"], bool)
