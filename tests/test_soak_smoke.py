"""`make soak` still runs: a short soak with few subscribers passes and prints its summary."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(
    r"^soak: PASS [\d,]+ requests, 0 errors, [\d,]+ subscriptions, [\d,]+ events; "
    r"RSS [\d.]+ -> [\d.]+ MB",
    re.MULTILINE,
)


@pytest.mark.slow
def test_short_soak_passes_and_prints_its_summary() -> None:
    result = subprocess.run(
        [sys.executable, "bench/soak.py", "--duration", "20", "--subscribers", "50"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout[-4000:] + result.stderr[-4000:]
    assert result.returncode == 0, output
    assert SUMMARY.search(result.stdout), output
    assert "server RSS:" in result.stdout and "growth after warm-up:" in result.stdout, output
