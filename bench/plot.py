"""``make bench-plot``: latency distributions of the last ``make bench`` as a picture.

Reads ``bench/results/latencies.json`` and draws, per benchmark, the cumulative distribution
of each series' latencies (supplygraph and its baseline of the same run) on a log time axis,
with p50 and p99 marked; writes ``bench/results/latency.png``.

    .venv/bin/python bench/plot.py [--input FILE] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--input", type=Path, default=RESULTS / "latencies.json")
    parser.add_argument("--output", type=Path, default=RESULTS / "latency.png")
    args = parser.parse_args(argv)
    if not args.input.exists():
        sys.exit(f"{args.input} not found: run `make bench` first")
    plot(json.loads(args.input.read_text()), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
