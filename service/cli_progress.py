"""Progress of the long commands (``migrate``, ``seed-demo``, ``simulate``), drawn by rich.

stdout carries what a command produces (tokens, summaries, the simulation's lines), which
scripts and tests read; progress is for a person watching. So it is drawn on stderr, and only
when stderr is a terminal: in a pipe or a log file it would be nothing but redraws, and the
command prints its plain lines alone. When stdout is the same terminal, what the command prints
meanwhile scrolls above the live line instead of tearing it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

# ``progress(description, done, total)``, called after each step of a counted piece of work
Steps = Callable[[str, int, int], None]
# one printed line of ``service.simulate.run``
Out = Callable[[str], None]

# a simulation step as ``service.simulate`` prints it: "   12 14:03:27 ACTOR      what it did",
# "ACTOR      failed: why" when the action failed
SIMULATION_STEP = re.compile(r"^\s*(?P<step>\d+) \d{2}:\d{2}:\d{2} (?P<action>.*)$")
SIMULATION_FAILURE = re.compile(r"^\S+\s+failed: ")
BAR_WIDTH = 20  # the simulation's bar, short: the line is for the last action


def _terminal() -> Console | None:
    """A console on stderr if stderr is a terminal that takes escape sequences, else None."""
    if not sys.stderr.isatty():
        return None
    console = Console(stderr=True)
    return console if console.is_terminal else None


def _progress(console: Console, *columns: ProgressColumn) -> Progress:
    return Progress(
        *columns,
        console=console,
        redirect_stdout=sys.stdout.isatty(),  # else stdout is a file or pipe: leave it alone
    )


@contextmanager
def steps(title: str) -> Iterator[Steps | None]:
    """A progress bar for work done in counted steps, as the ``progress`` callback the work
    takes (``service.demo.seed_demo``, ``service.cli.apply_migrations``); None (no progress
    reported) when stderr is not a terminal."""
    console = _terminal()
    if console is None:
        yield None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with _progress(console, *columns) as bar:
        task = bar.add_task(escape(title), total=None)

        def report(description: str, done: int, total: int) -> None:
            bar.update(
                task, description=escape(f"{title}: {description}"), completed=done, total=total
            )

        yield report


class SimulationTally:
    """What the simulation's printed lines say so far: steps done, how many failed, the last."""

    def __init__(self) -> None:
        self.done = 0
        self.failed = 0
        self.last = "starting"

    def read(self, line: str) -> bool:
        """Count ``line`` if it is a step; whether it was one."""
        step = SIMULATION_STEP.match(line)
        if step is None:
            return False
        self.done = int(step["step"])
        self.last = " ".join(step["action"].split())
        self.failed += SIMULATION_FAILURE.match(step["action"]) is not None
        return True

    def status(self, width: int | None = None) -> str:
        """The live line's text; the last action cut to fit ``width`` characters."""
        head = f"{self.done} actions · {self.failed} failed · last: "
        last = self.last
        if width is not None and len(head) + len(last) > width:
            last = last[: max(width - len(head) - 1, 0)] + "…"
        return head + last


@contextmanager
def simulation(steps: int | None) -> Iterator[Out]:
    """``out`` for ``service.simulate.run``: every line printed to stdout, as without a
    terminal, and on a terminal one live line on stderr (actions done of ``steps``, failures,
    the last action)."""

    def plain(line: str) -> None:
        print(line, flush=True)

    console = _terminal()
    if console is None:
        yield plain
        return
    tally = SimulationTally()
    columns: list[ProgressColumn] = [SpinnerColumn(), TextColumn("{task.description}")]
    if steps is not None:
        columns += [BarColumn(bar_width=BAR_WIDTH), MofNCompleteColumn()]
    # what the spinner, the bar, the count and the elapsed time take of the line
    beside = 12 + (BAR_WIDTH + 10 if steps is not None else 0)
    with _progress(console, *columns, TimeElapsedColumn()) as bar:
        task = bar.add_task(escape(tally.status()), total=steps)

        def out(line: str) -> None:
            plain(line)
            if tally.read(line):
                text = tally.status(width=console.width - beside)
                bar.update(task, description=escape(text), completed=tally.done)

        yield out
