"""Request ids and structured logs.

Every line goes through structlog's processors, whoever logs it: this project's
``logging.getLogger(__name__)`` loggers, uvicorn, tortoise and httpx reach them through
``ProcessorFormatter`` on the root handler, ``structlog.get_logger()`` loggers directly. So every
line has the same fields, rendered as one JSON object (production) or as a readable line
(coloured on a terminal).

A request's id and, once its viewer is known, its organisation are bound once, as structlog
context variables (``bind_request``, ``bind_viewer``): every line logged while serving it names
both, without passing them around.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Mapping
from contextvars import Token
from typing import TYPE_CHECKING, Any

import structlog
from structlog.contextvars import bind_contextvars, reset_contextvars, unbind_contextvars
from structlog.stdlib import ProcessorFormatter
from structlog.typing import EventDict, Processor, WrappedLogger

from domain.request_context import request_id_var

if TYPE_CHECKING:
    from domain.access import Viewer

__all__ = [
    "RequestBinding",
    "bind_request",
    "bind_viewer",
    "configure_logging",
    "new_request_id",
    "request_id_var",
    "unbind_request",
]

_FORMATS = ("auto", "json", "text")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# what ``extra=`` may add to a standard-library line: the context that is also bound
_CONTEXT_KEYS = ("request_id", "organisation_id")
# the fields a JSON line starts with, in this order (what readers of the log look for)
_JSON_HEAD = ("time", "level", "logger", "message")

RequestBinding = tuple[Token[str | None], Mapping[str, Token[Any]]]


def new_request_id(incoming: str | None = None) -> str:
    """Keep a well-formed incoming ``X-Request-Id``; otherwise make one."""
    if incoming and _SAFE_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


def bind_request(request_id: str) -> RequestBinding:
    """Make ``request_id`` the id of the request being served: ``request_id_var`` holds it
    (background work it starts keeps it) and every line logged in this context carries it,
    until ``unbind_request``."""
    return request_id_var.set(request_id), bind_contextvars(request_id=request_id)


def unbind_request(binding: RequestBinding) -> None:
    """Undo ``bind_request``, and forget the organisation bound meanwhile (``bind_viewer``)."""
    request_token, log_tokens = binding
    unbind_contextvars("organisation_id")
    reset_contextvars(**log_tokens)
    request_id_var.reset(request_token)


def bind_viewer(viewer: Viewer | None) -> None:
    """Name the viewer's organisation on every line logged from here on in this request (or
    subscription): called where the token is resolved. No viewer, nothing bound."""
    if viewer is not None:
        bind_contextvars(organisation_id=viewer.organisation_id)


def _request_id_of_work(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The request id of work that carries one without being bound to it: a warehouse task run
    sets only ``request_id_var`` (to the id of the request that queued it)."""
    if "request_id" not in event_dict:
        request_id = request_id_var.get()
        if request_id is not None:
            event_dict["request_id"] = request_id
    return event_dict


def _json_head(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """``time``, ``level``, ``logger`` and ``message`` first, the level in upper case as
    ``logging`` names it: the shape readers of the log (``bench/soak.py``) look for."""
    head = {key: event_dict.pop(key) for key in _JSON_HEAD if key in event_dict}
    if "level" in head:
        head["level"] = str(head["level"]).upper()
    head.update(event_dict)
    return head


def _shared_processors() -> list[Processor]:
    """What every line gets, from a structlog logger or a standard-library one."""
    return [
        structlog.contextvars.merge_contextvars,
        _request_id_of_work,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]


def _renderer(fmt: str, *, colors: bool) -> list[Processor]:
    if fmt == "json":
        return [
            structlog.processors.EventRenamer("message"),
            structlog.processors.format_exc_info,  # the traceback, as ``exception``
            _json_head,
            structlog.processors.JSONRenderer(),
        ]
    # a terminal gets rich's tracebacks (without local variables: they may hold secrets)
    exceptions = (
        structlog.dev.RichTracebackFormatter(show_locals=False)
        if colors
        else structlog.dev.plain_traceback
    )
    return [
        structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=exceptions, timestamp_key="time"
        )
    ]


def configure_logging(*, level: str, fmt: str) -> None:
    """Log ``level`` and above to standard error, as ``fmt``: ``json`` (one object a line),
    ``text`` (readable lines, coloured when standard error is a terminal) or ``auto`` (text on a
    terminal, else json)."""
    if fmt not in _FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {', '.join(_FORMATS)}")
    stream = sys.stderr
    terminal = stream.isatty()
    if fmt == "auto":
        fmt = "text" if terminal else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(_CONTEXT_KEYS), *_shared_processors()],
            processors=[
                ProcessorFormatter.remove_processors_meta,
                *_renderer(fmt, colors=terminal),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,  # before any work: a line below the level is free
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
