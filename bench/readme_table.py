"""The README's benchmark table, rendered from ``bench/results/latest.json``: not typed by hand.

A figure copied by hand drifts from the run it came from (a ratio from one run beside a value
from another, a target that changed since); this renders every row of the last ``make bench``
(name, value and unit, baseline, ratio, target, met) and the run it came from
(``latest.meta.json``: date, quick or full, database and Redis, the command) into the block
between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` in README.md. Nothing outside the
markers is touched.

    python bench/readme_table.py            # write the block (make bench-table)
    python bench/readme_table.py --check    # exit 1 if the README's block is not what the
                                            # results render (BENCH_TABLE_ARGS=--check)

Options: ``--results DIR`` (default ``bench/results``), ``--readme PATH`` (default README.md).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

if __name__ == "__main__":  # run by path: import from the checkout's root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.command_line import command_app, exit_code

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
REGENERATE = "make bench-table"
MISSING = "-"  # a figure the run could not measure (NaN in the results)


class TableError(Exception):
    """The results or the README cannot be rendered into (missing file, missing markers)."""


# --------------------------------------------------------------------------- rendering


def number(value: float | None) -> str:
    """A figure as the table shows it: whole numbers as they are (thousands separated), else
    two decimals below 100, one below 1,000, none above."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _met(met: bool | None) -> str:
    if met is None:
        return ""
    return "✓" if met else "✗"


def table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The Markdown table of ``latest.json``'s rows, in their order."""
    lines = [
        "| figure | value | baseline (same run) | ratio | target | met |",
        "| --- | ---: | ---: | ---: | --- | :---: |",
    ]
    for row in rows:
        value = number(row.get("value"))
        unit = row.get("unit") or ""
        cells = [
            f"`{row['name']}`",
            f"{value} {unit}".strip() if value != MISSING else value,
            number(row.get("baseline")) if row.get("baseline") is not None else "",
            f"{row['ratio']:.2f}" if row.get("ratio") is not None else "",
            row.get("target") or "",
            _met(row.get("met")),
        ]
        lines.append("| " + " | ".join(_cell(str(c)) for c in cells) + " |")
    return lines


def run_note(meta: Mapping[str, Any] | None) -> list[str]:
    """What the run was: when, quick or full, on what, by which command."""
    if not meta:
        return ["Run details not recorded (no `latest.meta.json` beside `latest.json`)."]
    when = str(meta.get("started_at", "unknown time"))
    with contextlib.suppress(ValueError):
        when = datetime.fromisoformat(when).strftime("%Y-%m-%d %H:%M %Z").strip()
    versions: Mapping[str, str] = meta.get("versions") or {}
    database = str(meta.get("database") or "no database")
    engine = " ".join(filter(None, [database, versions.get(database.lower(), "")]))
    if meta.get("redis"):
        engine += " + " + " ".join(filter(None, ["Redis", versions.get("redis", "")]))
    kind = "quick run" if meta.get("quick") else "full run"
    load = (
        f"{meta.get('clients', '?')} clients, {meta.get('repetitions', '?')} x "
        f"{meta.get('duration', '?'):g} s repetitions, median shown"
        if isinstance(meta.get("duration"), int | float)
        else ""
    )
    details = [
        f"{kind.capitalize()} of {when}",
        engine,
        load,
        str(meta.get("pinning") or ""),
        str(meta.get("machine") or ""),
        f"commit {meta['commit']}" if meta.get("commit") else "",
        f"took {meta['seconds']:,.0f} s" if meta.get("seconds") is not None else "",
    ]
    note = "; ".join(d for d in details if d) + "."
    command = meta.get("command")
    return [note, "", f"Command: `{command}`." if command else "Command: not recorded."]


def render(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any] | None) -> str:
    """The block between the markers (markers excluded), ending with a newline."""
    lines = [
        f"<!-- generated by `{REGENERATE}` from bench/results/latest.json: "
        "edit the benchmarks, not this table -->",
        *run_note(meta),
        "",
        *table(rows),
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- files


def load_results(folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """``latest.json``'s rows and, when there, ``latest.meta.json``."""
    latest = folder / "latest.json"
    if not latest.exists():
        raise TableError(f"{latest} does not exist: run `make bench` first")
    rows = json.loads(latest.read_text())
    if not isinstance(rows, list):
        raise TableError(f"{latest} is not a list of rows")
    meta_path = folder / "latest.meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
    return rows, meta


def _bounds(text: str) -> tuple[int, int]:
    """Where the block starts (after the begin marker's line) and ends (at the end marker)."""
    begin = text.find(BEGIN)
    end = text.find(END)
    if begin < 0 or end < 0:
        raise TableError(f"the README has no {BEGIN} ... {END} block")
    if text.count(BEGIN) > 1 or text.count(END) > 1:
        raise TableError(f"the README has more than one {BEGIN} or {END}")
    start = text.find("\n", begin)
    if start < 0 or start >= end:
        raise TableError(f"{BEGIN} must be on a line of its own, before {END}")
    return start + 1, end


def current_block(text: str) -> str:
    start, end = _bounds(text)
    return text[start:end]


def replaced(text: str, block: str) -> str:
    """``text`` with the block between the markers replaced by ``block``."""
    start, end = _bounds(text)
    return text[:start] + block + text[end:]


# --------------------------------------------------------------------------- command line


app = command_app()


@app.command(help=(__doc__ or "").splitlines()[0])
def write_table(
    results: Annotated[
        Path,
        typer.Option(
            help="folder of latest.json and latest.meta.json", show_default="bench/results"
        ),
    ] = RESULTS,
    readme: Annotated[
        Path, typer.Option(help="the README holding the block", show_default="README.md")
    ] = README,
    check: Annotated[
        bool,
        typer.Option("--check", help="write nothing; exit 1 if the README's block differs"),
    ] = False,
) -> None:
    try:
        rows, meta = load_results(results)
        text = readme.read_text()
        block = render(rows, meta)
        if check:
            present = current_block(text)
            if present == block:
                print(f"{readme}: the benchmark table matches {results / 'latest.json'}")
                return
            diff = difflib.unified_diff(
                present.splitlines(), block.splitlines(), "README", "latest.json", lineterm=""
            )
            print("\n".join(diff))
            print(
                f"{readme}: the benchmark table differs from {results / 'latest.json'}"
                f"; run `{REGENERATE}`",
                file=sys.stderr,
            )
            raise typer.Exit(1)
        updated = replaced(text, block)
        if updated != text:
            readme.write_text(updated)
        print(f"{readme}: benchmark table of {len(rows)} rows written")
    except TableError as problem:
        print(f"bench/readme_table.py: {problem}", file=sys.stderr)
        raise typer.Exit(2) from None


def main(argv: list[str] | None = None) -> int:
    """The command on ``argv`` (the script's arguments when None): 0 written or matching, 1 the
    README's block differs (``--check``), 2 no results, no markers or a usage error."""
    return exit_code(app, __file__, argv)


if __name__ == "__main__":
    sys.exit(main())
