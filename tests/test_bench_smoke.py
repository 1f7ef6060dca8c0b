"""`make bench` still runs: the SQL count and a very short orders page, on a database of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"name", "value", "unit", "baseline", "ratio", "target", "met"}


@pytest.mark.slow
def test_bench_runner_quick_writes_results(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "bench/runner.py",
            "--quick",
            "--only",
            "sql_per_request,orders_page",
            "--orders",
            "200",
            "--duration",
            "0.3",
            "--repetitions",
            "1",
            "--clients",
            "4",
            "--results-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads((tmp_path / "latest.json").read_text())
    assert rows and all(set(row) == KEYS for row in rows), rows
    by_name = {row["name"]: row for row in rows}
    first_10, first_100 = by_name["sql_per_request.first_10"], by_name["sql_per_request.first_100"]
    assert first_10["unit"] == "statements" and first_10["value"] > 0
    assert first_100["baseline"] == first_10["value"]
    assert isinstance(first_100["met"], bool)
    page = by_name["orders_page"]
    assert page["unit"] == "req/s" and page["value"] > 0 and page["baseline"] > 0
    assert page["target"] == "ratio >= 1" and isinstance(page["met"], bool)
    series = json.loads((tmp_path / "latencies.json").read_text())["series"]
    assert series["orders_page"]["samples"] and series["orders_page.baseline"]["samples"]
