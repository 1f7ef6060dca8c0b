"""supplygraph: ``python main.py --help`` (or the installed ``supplygraph --help``) for commands;
``main:app_factory`` for ASGI servers.

``python main.py ...`` run by a Python that lacks the dependencies (the system's ``python3``
while ``make`` installed them in ``.venv``) runs itself again with ``.venv/bin/python``; without
that venv it says, in one line, how to make it (see ``_run_with_the_venv``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.applications import Starlette

ROOT = Path(__file__).resolve().parent
# the checkout's own packages: a missing one is a broken checkout, not a missing install
OWN_PACKAGES = {"compat", "domain", "integrations", "resolvers", "schema", "service"}
# set for the run in the venv, so that a venv lacking the dependencies too ends in the message
REEXEC_MARK = "SUPPLYGRAPH_VENV_REEXEC"


def app_factory() -> Starlette:
    """The app configured from the environment (uvicorn ``--factory main:app_factory``)."""
    from service.app import create_app
    from service.observability import configure_logging
    from service.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise SystemExit(f"supplygraph: {exc}") from None
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    return create_app(settings)


def _in_venv(venv: Path) -> bool:
    """Whether this interpreter is ``venv``'s: by its prefix, or (under ``-S``, which leaves
    the prefix the base's) by the directory of the executable it was started as."""
    if Path(sys.prefix).resolve() == venv.resolve():
        return True
    # not resolved: the venv's python is a symlink to the base interpreter
    return Path(os.path.abspath(sys.executable)).parent == Path(os.path.abspath(venv / "bin"))


def _run_with_the_venv(missing: ModuleNotFoundError) -> None:
    """This Python lacks a dependency: run this command again with the checkout's
    ``.venv/bin/python`` (``os.execv``, same arguments and directory) when it exists and is not
    this interpreter; otherwise exit with one line saying how to install them."""
    venv = ROOT / ".venv"
    python = venv / "bin" / "python"
    if not python.exists():
        raise SystemExit(
            f"supplygraph: {sys.executable} lacks supplygraph's dependencies ({missing}): "
            "`make run` installs them in .venv (and serves the demo); then run "
            "`.venv/bin/python main.py ...`."
        )
    if _in_venv(venv) or os.environ.get(REEXEC_MARK):
        raise SystemExit(
            f"supplygraph: .venv lacks supplygraph's dependencies ({missing}): "
            "`.venv/bin/python -m pip install -e .` installs them."
        )
    os.environ[REEXEC_MARK] = "1"
    # named as main.py was (".venv/bin/python main.py" from the checkout), which the usage
    # lines show: a path from the same working directory
    shown = Path(sys.argv[0]).parent / ".venv" / "bin" / "python"
    os.execv(python, [str(shown), *sys.argv])


def _main() -> None:
    try:
        from service.cli import main, script_invocation
    except ModuleNotFoundError as missing:
        if (missing.name or "").partition(".")[0] in OWN_PACKAGES:
            raise
        _run_with_the_venv(missing)
        raise  # not reached: _run_with_the_venv execs or exits
    main(prog_name=script_invocation())


if __name__ == "__main__":
    _main()
