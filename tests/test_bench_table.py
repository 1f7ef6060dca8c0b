"""``make bench-table`` renders the README's benchmark table from a run's ``latest.json``: every
row with its target and whether it was met, the run it came from, only between the markers;
``--check`` fails when the README's block is not what the results render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import readme_table

ROWS = [
    {
        "name": "live_subscribers.a1000.cpu_per_delivery",
        "value": 17.5,
        "unit": "us",
        "baseline": 14.2,
        "ratio": 1.232,
        "target": "ratio <= 1.3",
        "met": True,
    },
    {
        "name": "hot_paths.pay",
        "value": 1234.56,
        "unit": "req/s",
        "baseline": 2000.0,
        "ratio": 0.617,
        "target": "ratio >= 0.6",
        "met": True,
    },
    {
        "name": "hot_paths.withdraw.cascade_rate",
        "value": 40.0,
        "unit": "withdrawals/s",
        "baseline": 125.0,
        "ratio": 0.32,
        "target": "ratio >= 0.5",
        "met": False,
    },
    {
        "name": "hot_paths.pay.vs_write_floor",
        "value": 1234.56,
        "unit": "req/s",
        "baseline": 1800.0,
        "ratio": 0.686,
        "target": "report",
        "met": None,
    },
    {
        "name": "write_floor",
        "value": None,
        "unit": "skipped: needs PostgreSQL",
        "baseline": None,
        "ratio": None,
        "target": None,
        "met": None,
    },
]
META = {
    "started_at": "2026-12-06T09:34:07+00:00",
    "quick": True,
    "clients": 32,
    "duration": 1.0,
    "repetitions": 3,
    "pinning": "server on core 0 (taskset), load generator on core 1",
    "redis": True,
    "command": 'DATABASE_URL=… REDIS_URL=… make bench BENCH_ARGS="--quick"',
    "commit": "abc1234",
    "machine": "2 cores, Linux, Python 3.11.7",
    "versions": {"postgresql": "15.20", "redis": "7.0.15"},
    "database": "PostgreSQL",
    "seconds": 612.4,
}
README = """# project

Intro text.

{begin}
| figure | value |
| --- | --- |
| typed by hand | 1 |
{end}

After the table.
"""


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "latest.json").write_text(json.dumps(ROWS))
    (folder / "latest.meta.json").write_text(json.dumps(META))
    return folder


@pytest.fixture
def readme(tmp_path: Path) -> Path:
    path = tmp_path / "README.md"
    path.write_text(README.format(begin=readme_table.BEGIN, end=readme_table.END))
    return path


def run(results: Path, readme: Path, *extra: str) -> int:
    return readme_table.main(["--results", str(results), "--readme", str(readme), *extra])


def test_every_row_with_its_value_baseline_ratio_target_and_met() -> None:
    lines = readme_table.table(ROWS)
    assert lines[0] == "| figure | value | baseline (same run) | ratio | target | met |"
    by_name = {line.split(" | ")[0].strip("| `"): line for line in lines[2:]}
    assert list(by_name) == [row["name"] for row in ROWS]
    assert by_name["live_subscribers.a1000.cpu_per_delivery"] == (
        "| `live_subscribers.a1000.cpu_per_delivery` | 17.50 us | 14.20 | 1.23 | ratio <= 1.3 | ✓ |"
    )
    assert by_name["hot_paths.pay"] == (
        "| `hot_paths.pay` | 1,235 req/s | 2,000 | 0.62 | ratio >= 0.6 | ✓ |"
    )
    assert by_name["hot_paths.withdraw.cascade_rate"].endswith("| ratio >= 0.5 | ✗ |")
    assert by_name["hot_paths.pay.vs_write_floor"].endswith("| report |  |")
    assert by_name["write_floor"] == "| `write_floor` | - |  |  |  |  |"


def test_the_run_it_came_from() -> None:
    block = readme_table.render(ROWS, META)
    note = block.splitlines()[1]
    assert note.startswith("Quick run of 2026-12-06 09:34 UTC; PostgreSQL 15.20 + Redis 7.0.15;")
    assert "32 clients, 3 x 1 s repetitions" in note and "commit abc1234" in note
    assert 'Command: `DATABASE_URL=… REDIS_URL=… make bench BENCH_ARGS="--quick"`.' in block
    full = readme_table.render(ROWS, {**META, "quick": False})
    assert full.splitlines()[1].startswith("Full run of")
    assert "not recorded" in readme_table.render(ROWS, None)


def test_writes_between_the_markers_only(results: Path, readme: Path) -> None:
    before = readme.read_text()
    assert run(results, readme) == 0
    after = readme.read_text()
    head, rest = after.split(readme_table.BEGIN + "\n")
    block, tail = rest.split(readme_table.END)
    assert head == before.split(readme_table.BEGIN)[0]
    assert tail == before.split(readme_table.END)[1]
    assert block == readme_table.render(ROWS, META)
    assert "typed by hand" not in after
    assert run(results, readme) == 0 and readme.read_text() == after  # the same twice


def test_check_fails_until_the_table_is_regenerated(results: Path, readme: Path) -> None:
    assert run(results, readme, "--check") == 1
    assert run(results, readme) == 0
    assert run(results, readme, "--check") == 0
    edited = readme.read_text().replace("17.50 us", "16.00 us")
    readme.write_text(edited)
    assert run(results, readme, "--check") == 1
    rows = [{**ROWS[0], "value": 18.0}, *ROWS[1:]]
    (results / "latest.json").write_text(json.dumps(rows))
    assert run(results, readme, "--check") == 1  # a new run: the README is behind it


def test_missing_markers_or_results_are_errors(results: Path, tmp_path: Path) -> None:
    plain = tmp_path / "PLAIN.md"
    plain.write_text("# no table here\n")
    assert run(results, plain) == 2
    assert plain.read_text() == "# no table here\n"
    assert run(tmp_path / "nowhere", plain, "--check") == 2
