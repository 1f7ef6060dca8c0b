"""supplygraph: ``python main.py --help`` (or the installed ``supplygraph --help``) for commands;
``main:app_factory`` for ASGI servers."""

from __future__ import annotations

from starlette.applications import Starlette


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


if __name__ == "__main__":
    from service.cli import main, script_invocation

    main(prog_name=script_invocation())
