"""``make bench-plot``: latency distributions of the last ``make bench`` as a picture.

Reads ``bench/results/latencies.json`` and draws, per benchmark, the cumulative distribution
of each series' latencies (supplygraph and its baseline of the same run) on a log time axis,
with p50 and p99 marked; writes ``bench/results/latency.png``.

    .venv/bin/python bench/plot.py [--input FILE] [--output FILE]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import matplotlib
import typer

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

if __name__ == "__main__":  # run by path: import from the checkout's root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.command_line import command_app, exit_code

RESULTS = Path(__file__).resolve().parent / "results"


def _minor_label(value: float, _position: object) -> str:
    """Label the 2s and 5s between the decades, so a narrow range still has numbers."""
    if value <= 0:
        return ""
    lead = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(lead, 6) in (2, 5) else ""


def plot(data: dict, output: Path) -> None:
    series: dict[str, dict] = data["series"]
    benchmarks: dict[str, list[tuple[str, dict]]] = {}
    for name, s in series.items():
        if s["samples"]:
            benchmarks.setdefault(s["benchmark"], []).append((name, s))
    if not benchmarks:
        raise SystemExit("no latency samples: run `make bench` first (sql_per_request has none)")
    fig, axes = plt.subplots(len(benchmarks), 1, figsize=(9, 3.6 * len(benchmarks)), squeeze=False)
    for ax, (benchmark, members) in zip(axes[:, 0], benchmarks.items(), strict=True):
        for name, s in members:
            samples = sorted(s["samples"])
            n = len(samples)
            y = [(i + 1) / n for i in range(n)]
            label = (
                f"{s['role']} ({name}): {s['requests_per_second']:g} req/s, "
                f"p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms"
            )
            (line,) = ax.step(samples, y, where="post", label=label)
            for q in ("p50", "p99"):
                ax.axvline(s[q], color=line.get_color(), linestyle=":", linewidth=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(_minor_label))
        ax.set_ylim(0, 1.01)
        ax.set_title(benchmark)
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("fraction of requests")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    meta = data.get("meta", {})
    fig.suptitle(
        f"make bench {meta.get('started_at', '')}: {meta.get('database', '')}, "
        f"{meta.get('clients', '?')} clients, {meta.get('repetitions', '?')} x "
        f"{meta.get('duration', '?')} s",
        fontsize=10,
    )
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)


app = command_app()


@app.command(help=(__doc__ or "").splitlines()[0])
def draw(
    latencies: Annotated[
        Path,
        typer.Option(
            "--input",
            help="latency samples written by make bench",
            show_default="bench/results/latencies.json",
        ),
    ] = RESULTS / "latencies.json",
    output: Annotated[
        Path, typer.Option(help="the picture (PNG)", show_default="bench/results/latency.png")
    ] = RESULTS / "latency.png",
) -> None:
    if not latencies.exists():
        print(f"{latencies} not found: run `make bench` first", file=sys.stderr)
        raise typer.Exit(1)
    plot(json.loads(latencies.read_text()), output)
    print(f"wrote {output}")


def main(argv: list[str] | None = None) -> int:
    """The command on ``argv`` (the script's arguments when None); its exit code."""
    return exit_code(app, __file__, argv)


if __name__ == "__main__":
    sys.exit(main())
