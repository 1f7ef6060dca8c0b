"""`make bench`'s live_subscribers runs end to end at a tiny size: its rows, and nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("a20", "b20")  # both scenarios, 20 subscribers each
FIGURES = ("cpu_per_delivery", "p50", "p99", "max", "lost", "rss_per_1000", "rss_after_close")


def quick_bench(tmp_path: Path, only: str, **env: str) -> dict[str, dict]:
    """``bench/runner.py --quick --only ONLY`` at a tiny size; its rows by name."""
    command = [sys.executable, "bench/runner.py", "--quick", "--only", only, "--orders", "110"]
    result = subprocess.run(
        [*command, "--results-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {row["name"]: row for row in json.loads((tmp_path / "latest.json").read_text())}


@pytest.mark.slow
def test_live_subscribers_tiny_run_delivers_every_change(tmp_path: Path) -> None:
    rows = quick_bench(
        tmp_path,
        "live_subscribers",
        BENCH_LIVE_SUBSCRIBERS="20",
        BENCH_LIVE_CHANGES="3",
        BENCH_LIVE_BLOCKS="2",
    )
    assert set(rows) == {f"live_subscribers.{s}.{f}" for s in SCENARIOS for f in FIGURES}
    for scenario in SCENARIOS:
        name = f"live_subscribers.{scenario}"
        lost = rows[f"{name}.lost"]
        assert lost["value"] == 0 and lost["baseline"] == 0 and lost["met"] is True, lost
        for figure in ("p50", "p99", "max"):
            row = rows[f"{name}.{figure}"]
            assert row["unit"] == "ms" and row["value"] > 0 and row["baseline"] > 0, row
        cpu = rows[f"{name}.cpu_per_delivery"]
        assert cpu["unit"] == "us" and cpu["value"] >= 0 and cpu["target"] == "ratio <= 1.3"
        assert isinstance(cpu["met"], bool) and isinstance(rows[f"{name}.p99"]["met"], bool)
        assert rows[f"{name}.rss_after_close"]["value"] > 0
    series = json.loads((tmp_path / "latencies.json").read_text())["series"]
    for scenario in SCENARIOS:
        for name in (f"live_subscribers.{scenario}", f"live_subscribers.{scenario}.floor"):
            assert len(series[name]["samples"]) == 20 * 2 * 3, name


@pytest.mark.slow
def test_live_mix_one_round_delivers_every_event_to_every_panel(tmp_path: Path) -> None:
    rows = quick_bench(tmp_path, "live_mix", BENCH_LIVE_MIX_ROUNDS="1")
    for source in ("request", "worker"):
        for figure in ("p50", "p99"):
            row = rows[f"live_mix.{source}.{figure}"]
            assert row["unit"] == "ms" and row["value"] > 0 and row["baseline"] > 0, row
        assert rows[f"live_mix.{source}.p99"]["target"] == "ratio <= 1.3"
    assert rows["live_mix.wrong"]["value"] == 0 and rows["live_mix.wrong"]["met"] is True
    assert rows["live_mix.deliveries"]["value"] > rows["live_mix.deliveries"]["baseline"] > 0
