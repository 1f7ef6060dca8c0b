"""The bench tools' command lines: one typer command per tool, run by path or as ``main(argv)``.

Every tool (``bench/runner.py``, ``bench/soak.py``, ``bench/readme_table.py``, ...) declares its
options on a one-command typer app made by ``command_app`` and runs it through ``exit_code``,
from its ``__main__`` (``sys.exit(main())``) as from a test (``main(["--check", ...])``): the
same parsing, help, usage errors (exit code 2) and exit codes either way, the code returned
rather than raised.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import typer


def command_app() -> typer.Typer:
    """A typer app for one command (its help is the command's). No shell completion to install
    (the tools are run by path with the venv's Python, not found on PATH), and Python's own
    tracebacks (a failed benchmark's traceback is read in logs and CI output, where a framed
    one only takes room)."""
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def exit_code(app: typer.Typer, script: str, argv: list[str] | None, **context: Any) -> int:
    """Run ``app`` as ``python bench/<script's name> ARGV`` would (``sys.argv[1:]`` when ``argv``
    is None) and return its exit code instead of exiting: 0, the code the command exits with,
    2 after a usage error (printed with the usage, as typer prints it). ``context`` goes to the
    command's ``typer.Context`` (``obj=...``)."""
    try:
        app(args=argv, prog_name=f"bench/{Path(script).name}", **context)
    except SystemExit as done:  # typer's standalone mode always ends this way
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)  # what the interpreter does with sys.exit("message")
        return 1
    return 0


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """``main`` on uvloop when installed (the servers' loop under uvicorn too, so the load
    generator is not the slower side), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
