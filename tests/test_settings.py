"""Settings: checked types, clear messages, and a start-up that refuses bad values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.settings import Settings, SettingsError, describe

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
