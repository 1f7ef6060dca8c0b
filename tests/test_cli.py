"""The command line (``service/cli.py``): every command and option explained, choices in any
case, the errors a user can fix as one ``supplygraph: ...`` line and exit code 1, the console
script with its completion, progress on a terminal's stderr only, the settings' JSON schema.

Commands that touch the database run as processes (``python main.py ...``, as ``make`` runs
them) on a SQLite database of their own in ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
import tomllib
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from domain.secrets import generate_key
from service import cli, cli_progress, simulate
from service.settings import Settings, describe
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "serve",
    "migrate",
    "create-org",
    "create-token",
    "seed-demo",
    "simulate",
    "export-schema",
    "settings",
    "error-codes",
    "generate-key",
}
MIGRATIONS = len(list((ROOT / "domain" / "migrations").glob("[0-9]*.py")))
# what pip's launcher for a console script does (bin/supplygraph), from any directory
LAUNCHER = (
    "import sys; from service.cli import main; sys.argv[0] = '/venv/bin/supplygraph'; "
    "sys.exit(main())"
)
WIDE = {"COLUMNS": "200"}  # help on one line a row, whatever the terminal
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colours, cursor moves

runner = CliRunner()


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_on_terminal(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """``python main.py ARGS`` with stderr on a terminal (a pseudo-terminal) and stdout on a
    pipe: (exit code, stdout, what the terminal showed, without its escape sequences)."""
    leader, follower = pty.openpty()
    shown = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the process closed its end
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    try:
        process = subprocess.run(
            [sys.executable, "main.py", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=120,
        )
    finally:
        os.close(follower)
        reader.join(timeout=10)
        os.close(leader)
    return process.returncode, process.stdout, ESCAPES.sub("", shown.decode(errors="replace"))


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """This process's environment with a database and a secrets key of the test's own."""
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite://{tmp_path / 'cli.sqlite3'}",
        "SECRETS_KEY": generate_key(),
        **WIDE,
    }


# --- help and completion ---------------------------------------------------------------------


def test_every_command_and_option_has_help() -> None:
    group = typer.main.get_command(cli.app)
    assert isinstance(group, typer.core.TyperGroup)
    assert set(group.commands) == COMMANDS
    for param in group.params:  # --install-completion, --show-completion
        assert param.help, param.name
    for name, command in group.commands.items():
        assert command.help, name
        for param in command.params:
            assert param.help, f"{name} {param.name}"  # type: ignore[attr-defined]


def test_help_lists_the_commands_and_their_options() -> None:
    listed = runner.invoke(cli.app, ["--help"], prog_name="supplygraph", env=WIDE)
    assert listed.exit_code == 0, listed.output
    assert "Usage: supplygraph [OPTIONS] COMMAND [ARGS]..." in listed.stdout
    for name in COMMANDS:
        assert name in listed.stdout, name
    group = typer.main.get_command(cli.app)
    for name, command in group.commands.items():
        shown = runner.invoke(cli.app, [name, "--help"], prog_name="supplygraph", env=WIDE)
        assert shown.exit_code == 0, shown.output
        assert f"Usage: supplygraph {name}" in shown.stdout
        for param in command.params:
            for option in param.opts:
                assert option in shown.stdout, f"{name} {option}"


def test_main_py_names_itself_as_it_was_run() -> None:
    shown = subprocess.run(
        [sys.executable, "main.py", "create-org", "--help"],
        cwd=ROOT,
        env={**os.environ, **WIDE},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # plain words whatever the terminal: a forced-colour CI sets escapes in the usage line
    usage = " ".join(ESCAPES.sub("", shown.stdout).split())
    assert f"Usage: {sys.executable} main.py create-org [OPTIONS]" in usage
    # no shell completes "python main.py": completion is the console script's
    listed = run({**os.environ, **WIDE}, "--help")
    assert listed.returncode == 0, listed.stderr
    assert "--install-completion" not in listed.stdout


VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
# the interpreter the running one's venv was made from (itself when it is no venv's)
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


@pytest.mark.skipif(not VENV_PYTHON.exists(), reason="no .venv in the checkout")
def test_main_py_run_by_a_python_without_the_dependencies_runs_with_the_venv() -> None:
    """``python3 main.py ...`` (a Python without the dependencies: here the base interpreter
    with ``-S``, which leaves out every site-packages) runs the command with ``.venv``'s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPLYGRAPH_")}
    shown = subprocess.run(
        [BASE_PYTHON, "-S", "-E", "main.py", "create-org", "--help"],
        cwd=ROOT,
        env={**env, **WIDE},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    usage = " ".join(ESCAPES.sub("", shown.stdout).split())
    assert "Usage: .venv/bin/python main.py create-org [OPTIONS]" in usage, usage


def test_main_py_without_the_dependencies_or_a_venv_says_how_to_run_it(tmp_path: Path) -> None:
    """A checkout without ``.venv`` (main.py copied beside no venv; the packages from the
    real checkout, the dependencies from nowhere): one line saying what to run, exit code 1."""
    (tmp_path / "main.py").write_bytes((ROOT / "main.py").read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPLYGRAPH_")}
    ran = subprocess.run(
        [sys.executable, "-S", str(tmp_path / "main.py"), "seed-demo"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 1, ran
    assert ran.stdout == "" and len(ran.stderr.splitlines()) == 1, ran.stderr
    assert ran.stderr.startswith("supplygraph: "), ran.stderr
    assert "No module named" in ran.stderr and "`make run`" in ran.stderr, ran.stderr
    assert "`.venv/bin/python main.py ...`" in ran.stderr, ran.stderr


@pytest.mark.skipif(not VENV_PYTHON.exists(), reason="no .venv in the checkout")
def test_main_py_run_by_the_venv_s_python_without_the_dependencies_does_not_loop() -> None:
    """The venv's own interpreter lacking them (``-S``) says how to install them: it never
    runs itself again."""
    ran = subprocess.run(
        [str(VENV_PYTHON), "-S", "main.py", "generate-key"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 1, ran
    assert ran.stderr.startswith("supplygraph: .venv lacks"), ran.stderr
    assert "pip install -e ." in ran.stderr and len(ran.stderr.splitlines()) == 1, ran.stderr


def test_the_console_script_is_service_cli_main(tmp_path: Path) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    entry = EntryPoint(name="supplygraph", value=scripts["supplygraph"], group="console_scripts")
    assert entry.load() is cli.main
    for installed in entry_points(group="console_scripts", name="supplygraph"):
        assert installed.value == entry.value  # an install of this version

    # run as the installed script runs, from another directory
    env = {**os.environ, **WIDE, "PYTHONPATH": str(ROOT)}
    shown = subprocess.run(
        [sys.executable, "-c", LAUNCHER, "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "Usage: supplygraph [OPTIONS] COMMAND [ARGS]..." in shown.stdout
    assert "--install-completion" in shown.stdout


def test_the_console_script_completes_commands_and_choices(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1",
    }

    def launch(*args: str, **extra: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", LAUNCHER, *args],
            cwd=tmp_path,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    script = launch("--show-completion", "bash")
    assert "_SUPPLYGRAPH_COMPLETE=complete_bash" in script
    assert script.rstrip().endswith("supplygraph")  # complete -o default -F ... supplygraph

    def complete(words: str) -> set[str]:
        cword = str(len(words.split(" ")) - 1)
        answer = launch(_SUPPLYGRAPH_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=cword)
        return set(answer.split())

    assert complete("supplygraph se") == {"serve", "seed-demo", "settings"}
    assert {c.upper() for c in complete("supplygraph create-org --kind ")} == {
        "BUYER",
        "SUPPLIER",
    }


# --- choices, refusals and errors ------------------------------------------------------------


def test_migrate_then_create_org_with_the_kind_in_any_case(cli_env: dict[str, str]) -> None:
    migrated = run(cli_env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == f"migrations applied: {MIGRATIONS}\n"
    again = run(cli_env, "migrate")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "migrations applied: none needed\n"

    for kind, expected in (("buyer", "BUYER"), ("Supplier", "SUPPLIER")):
        email = f"owner-{kind}@example.test"
        made = run(
            cli_env,
            "create-org",
            "--name",
            kind,
            "--kind",
            kind,
            "--owner-email",
            email,
            "--with-token",
        )
        assert made.returncode == 0, made.stderr
        assert f"({expected}) {kind!r}; owner user" in made.stdout
        assert made.stdout.rsplit("token (shown once): ", 1)[1].strip()

    unknown = run(
        cli_env, "create-org", "--name", "W", "--kind", "warehouse", "--owner-email", "w@x.test"
    )
    assert unknown.returncode == 2  # a usage error, before anything is done
    assert "'warehouse' is not one of" in unknown.stderr

    refused = run(cli_env, "create-org", "--name", "Bad", "--kind", "buyer", "--owner-email", "no")
    assert refused.returncode == 1
    assert refused.stderr.startswith("supplygraph: "), refused.stderr
    assert "Traceback" not in refused.stderr

    issued = run(cli_env, "create-token", "--email", "OWNER-BUYER@example.test", "--name", "ops")
    assert issued.returncode == 0, issued.stderr
    assert issued.stdout.strip()
    nobody = run(cli_env, "create-token", "--email", "nobody@example.test")
    assert nobody.returncode == 1
    assert nobody.stderr == "supplygraph: no user with e-mail 'nobody@example.test'\n"


def test_a_bad_setting_is_one_line_and_exit_code_1() -> None:
    failed = runner.invoke(cli.app, ["migrate"], env={"PORT": "99999"})
    assert failed.exit_code == 1
    assert failed.stderr.startswith("supplygraph: ")
    assert "PORT" in failed.stderr
    assert failed.stdout == ""
    # help needs no settings
    helped = runner.invoke(cli.app, ["migrate", "--help"], env={"PORT": "99999"})
    assert helped.exit_code == 0


@pytest.mark.parametrize("args", [["--interval", "-1"], ["--steps", "0"]])
def test_simulate_refuses_a_negative_interval_or_no_steps(args: list[str]) -> None:
    refused = runner.invoke(cli.app, ["simulate", *args])
    assert refused.exit_code == 2
    assert args[0] in refused.stderr


# --- progress ----------------------------------------------------------------------------------


def test_progress_goes_to_a_terminal_stderr_and_never_to_stdout(cli_env: dict[str, str]) -> None:
    code, stdout, terminal = run_on_terminal(cli_env, "migrate")
    assert code == 0, terminal
    assert stdout == f"migrations applied: {MIGRATIONS}\n"
    assert f"{MIGRATIONS}/{MIGRATIONS}" in terminal  # the bar, complete
    assert "models.0001_initial" in terminal or "migrations" in terminal


def test_seed_demo_shows_its_steps_and_prints_the_tokens(cli_env: dict[str, str]) -> None:
    assert run(cli_env, "migrate").returncode == 0
    # nothing answers at HOST:PORT: seed-demo serves the app there while it seeds
    env = {**cli_env, "HOST": "127.0.0.1", "PORT": str(free_port())}
    code, stdout, terminal = run_on_terminal(env, "seed-demo")
    assert code == 0, terminal
    tokens = [line for line in stdout.splitlines() if " token: " in line]
    assert len(tokens) == 3, stdout
    assert "demo world: done" in terminal
    assert re.search(r"\b(\d+)/\1\b", terminal)  # every step done
    assert "token:" not in terminal


def test_the_simulation_line_counts_actions_and_failures() -> None:
    tally = cli_progress.SimulationTally()
    assert not tally.read("simulating against http://127.0.0.1:8000; ...")
    assert tally.read(f"{1:>5} 14:03:27 {simulate.said('place', 'seller placed #1001')}")
    assert tally.read(f"{2:>5} 14:03:29 {simulate.said('push', 'failed: warehouse down')}")
    assert not tally.read("simulation stopped after 2 steps (1 failed)")
    assert (tally.done, tally.failed) == (2, 1)
    assert tally.status() == "2 actions · 1 failed · last: push failed: warehouse down"
    assert tally.status(width=40) == "2 actions · 1 failed · last: push faile…"  # 40 long


# --- serve -------------------------------------------------------------------------------------


def test_serve_says_where_the_api_graphiql_and_dashboard_are() -> None:
    debug = Settings.from_env({"DEBUG": "true"})
    assert cli.addresses(debug, host="0.0.0.0", port=8123) == [
        "supplygraph: GraphQL API  http://127.0.0.1:8123/graphql",
        "supplygraph: GraphiQL     http://127.0.0.1:8123/graphql (in a browser; DEBUG is on)",
        "supplygraph: dashboard    http://127.0.0.1:8123/dashboard",  # built: it is checked in
    ]
    plain = Settings.from_env({})
    assert cli.addresses(plain, host="::1", port=8123) == [
        "supplygraph: GraphQL API  http://[::1]:8123/graphql",
        "supplygraph: dashboard    http://[::1]:8123/dashboard",
    ]


# --- settings ----------------------------------------------------------------------------------


def test_settings_json_schema_names_every_variable() -> None:
    printed = runner.invoke(cli.app, ["settings", "--json-schema"])
    assert printed.exit_code == 0, printed.output
    schema = json.loads(printed.stdout)
    assert set(schema["properties"]) == {env for env, _default, _doc in describe()}
    assert schema["properties"]["PORT"]["type"] == "integer"


def test_settings_prints_the_markdown_table() -> None:
    printed = runner.invoke(cli.app, ["settings"])
    assert printed.exit_code == 0, printed.output
    lines = printed.stdout.splitlines()
    assert lines[:2] == ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    assert len(lines) == 2 + len(describe())
