"""The id of the request being served, so work it starts elsewhere (background tasks) logs it."""

from __future__ import annotations

import contextvars

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
