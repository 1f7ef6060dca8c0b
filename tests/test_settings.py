"""Settings: checked types, clear messages, and a start-up that refuses bad values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from domain.secrets import generate_key
from service.settings import Settings, SettingsError, describe, json_schema

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_embedded() -> None:
    settings = Settings.from_env({})
    assert settings.database_url.startswith("sqlite://")
    assert settings.broadcast_url == "memory://"
    assert (settings.host, settings.port, settings.debug) == ("127.0.0.1", 8000, False)


def test_postgres_urls_are_normalised() -> None:
    for scheme in ("postgres", "postgresql", "asyncpg"):
        url = Settings.from_env({"DATABASE_URL": f"{scheme}://u@h:5432/db"}).database_url
        assert url == "postgres://u@h:5432/db"


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env(
            {
                "PORT": "eighty",
                "DEBUG": "maybe",
                "MAX_QUERY_DEPTH": "0",
                "REDIS_URL": "http://x",
                "DATABASE_URL": "mysql://x",
            }
        )
    message = str(error.value)
    for name in ("PORT", "DEBUG", "MAX_QUERY_DEPTH", "REDIS_URL", "DATABASE_URL"):
        assert name in message


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for env, _default, _ in describe():
        assert f"`{env}`" in readme, env


def test_bad_settings_stop_start_up_with_a_clear_message() -> None:
    result = subprocess.run(
        [sys.executable, "main.py", "serve"],
        cwd=ROOT,
        env={**os.environ, "PORT": "99999"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "PORT='99999': must be between 1 and 65535" in result.stderr
    assert "Traceback" not in result.stderr


def test_each_bad_value_is_one_line_in_plain_words() -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env(
            {
                "DATABASE_URL": "mysql://x",
                "PORT": "eighty",
                "DEBUG": "maybe",
                "LOG_LEVEL": "loud",
                "MAX_QUERY_DEPTH": "0",
                "HSTS_SECONDS": "-1",
                "ANONYMOUS_RATE": "inf",
                "EVENT_RESYNC_INTERVAL": "0",
                "WORKERS": "1.5",
            }
        )
    assert isinstance(error.value, ValueError)
    assert str(error.value).splitlines() == [
        "invalid settings:",
        "  DATABASE_URL='mysql://x': expected sqlite://PATH or postgres://USER@HOST:PORT/DB",
        "  PORT='eighty': expected a whole number",
        "  WORKERS='1.5': expected a whole number",
        "  DEBUG='maybe': expected one of true/false/1/0/yes/no/on/off",
        "  LOG_LEVEL='loud': expected DEBUG, INFO, WARNING, ERROR or CRITICAL",
        "  MAX_QUERY_DEPTH='0': must be greater than 0",
        "  HSTS_SECONDS='-1': must be 0 or more",
        "  ANONYMOUS_RATE='inf': expected a finite number",
        "  EVENT_RESYNC_INTERVAL='0': must be greater than 0",
    ]


def test_values_are_read_as_typed_values() -> None:
    settings = Settings.from_env(
        {
            "PORT": "9000",
            "DEBUG": " Yes ",
            "GC_TUNING": "",
            "LOG_LEVEL": "debug",
            "LOG_FORMAT": "JSON",
            "INTROSPECTION": " Open ",
            "THROTTLE_RESTORE_RATE": "0.5",
            "SLA_SWEEP_INTERVAL": "0",
            "WS_ALLOWED_ORIGINS": " https://a.example , *,",
            "OUTBOUND_ALLOWED_HOSTS": "LocalHost,127.0.0.1",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
        }
    )
    assert (settings.port, settings.debug, settings.gc_tuning) == (9000, True, False)
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    assert settings.introspection == "open" and settings.introspection_open
    assert (settings.throttle_restore_rate, settings.sla_sweep_interval) == (0.5, 0.0)
    assert settings.ws_allowed_origins == ("https://a.example", "*")
    assert settings.outbound_allowed_hosts == ("localhost", "127.0.0.1")
    assert settings.broadcast_url == "redis://127.0.0.1:6379/0"
    assert settings.is_sqlite


def test_the_documented_defaults_are_the_defaults() -> None:
    written = {env: default for env, default, _ in describe()}
    assert Settings.from_env(written) == Settings.from_env({})


def test_overrides_win_and_settings_do_not_change() -> None:
    settings = Settings.from_env({"PORT": "9000", "DEBUG": "false"}, port=9100, debug=True)
    assert (settings.port, settings.debug) == (9100, True)
    with pytest.raises(ValidationError):
        settings.port = 9200  # type: ignore[misc]
    with pytest.raises(TypeError, match="unknown settings: prot"):
        Settings.from_env({}, prot=9100)


def test_other_variables_are_ignored() -> None:
    settings = Settings.from_env({"UNRELATED": "x", "port": "1", "Debug": "maybe", "PATH": "/bin"})
    assert (settings.port, settings.debug) == (8000, False)


def test_a_dotenv_file_in_the_working_directory_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "# this machine\nPORT=9000\nLOG_LEVEL=debug\n"
        "CORS_ALLOWED_ORIGINS=http://localhost:3000\nOTHER_TOOL=1\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"PORT": "9100"})
    assert settings.port == 9100
    assert settings.log_level == "DEBUG"
    assert settings.cors_allowed_origins == ("http://localhost:3000",)
    assert Settings.from_env({"ENV_FILE": ""}).log_level == "INFO"


def test_env_file_names_another_file_whose_bad_values_are_reported(tmp_path: Path) -> None:
    env_file = tmp_path / "staging.env"
    env_file.write_text("WORKERS=4\n", encoding="utf-8")
    assert Settings.from_env({"ENV_FILE": str(env_file)}).workers == 4
    env_file.write_text("WORKERS=0\nPORT=99999\n", encoding="utf-8")
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"ENV_FILE": str(env_file)})
    assert str(error.value).splitlines()[1:] == [
        "  PORT='99999': must be between 1 and 65535",
        "  WORKERS='0': must be greater than 0",
    ]
    missing = tmp_path / "missing.env"
    with pytest.raises(SettingsError, match=f"ENV_FILE='{missing}': no such file"):
        Settings.from_env({"ENV_FILE": str(missing)})


def test_secrets_are_read_from_files_in_the_secrets_directory(tmp_path: Path) -> None:
    key = generate_key()
    (tmp_path / "SECRETS_KEY").write_text(key + "\n", encoding="utf-8")
    (tmp_path / "DATABASE_URL").write_text("postgresql://app:pw@db:5432/app\n", encoding="utf-8")
    settings = Settings.from_env({"SECRETS_DIR": str(tmp_path)})
    assert settings.secrets_key == key
    assert settings.database_url == "postgres://app:pw@db:5432/app"
    assert key not in repr(settings)

    env_file = tmp_path / "local.env"
    env_file.write_text("DATABASE_URL=sqlite://./local.sqlite3\n", encoding="utf-8")
    environ = {"SECRETS_DIR": str(tmp_path), "ENV_FILE": str(env_file)}
    assert Settings.from_env(environ).database_url == "sqlite://./local.sqlite3"
    environ["DATABASE_URL"] = "sqlite://./env.sqlite3"
    assert Settings.from_env(environ).database_url == "sqlite://./env.sqlite3"

    (tmp_path / "SECRETS_KEY").write_text("not-a-key\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="SECRETS_KEY='not-a-key': expected 32 url-safe"):
        Settings.from_env({"SECRETS_DIR": str(tmp_path)})
    missing = tmp_path / "missing"
    with pytest.raises(SettingsError, match=f"SECRETS_DIR='{missing}': no such directory"):
        Settings.from_env({"SECRETS_DIR": str(missing)})


def test_the_readme_configuration_table_is_what_describe_prints() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    start = section.index("| Variable | Default | Meaning |")
    table = section[start:].split("\n\n", 1)[0].splitlines()
    rows = [
        f"| `{env}` | {f'`{default}`' if default else '(empty)'} | {doc} |"
        for env, default, doc in describe()
    ]
    assert table == ["| Variable | Default | Meaning |", "| --- | --- | --- |", *rows]


def test_the_json_schema_names_the_variables_with_defaults_and_meanings() -> None:
    schema = json.loads(json.dumps(json_schema()))
    properties = schema["properties"]
    assert list(properties) == [env for env, _, _ in describe()]
    for env, _default, doc in describe():
        assert properties[env]["description"] == doc, env
    port = {key: properties["PORT"][key] for key in ("type", "default", "minimum", "maximum")}
    assert port == {"type": "integer", "default": 8000, "minimum": 1, "maximum": 65535}
    assert properties["LOG_LEVEL"]["enum"] == ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    assert properties["DEBUG"]["default"] is False
    assert properties["CORS_ALLOWED_ORIGINS"]["default"] == []
