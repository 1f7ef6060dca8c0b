"""``extensions.cost`` in the bytes of an answer: taken out of what the response cache keeps,
put back, with the caller's bucket of the moment, into each answer it serves."""

from __future__ import annotations

from typing import Any

import orjson


def _suffix(report: dict[str, Any]) -> bytes:
    return b',"extensions":' + orjson.dumps({"cost": report}) + b"}"


def without_cost(body: bytes, report: dict[str, Any]) -> bytes | None:
    """``body`` (``{"data":…,"extensions":{"cost":report}}``) without its extensions; None
    when it has others (such an answer is not kept)."""
    suffix = _suffix(report)
    if body.endswith(suffix):
        return body[: -len(suffix)] + b"}"
    answer = orjson.loads(body)
    extensions = answer.pop("extensions", None) if isinstance(answer, dict) else None
    if extensions is not None and set(extensions) != {"cost"}:
        return None
    return orjson.dumps(answer)


def with_cost(body: bytes, report: dict[str, Any]) -> bytes:
    """A kept answer (a JSON object without extensions) with ``extensions.cost``."""
    return body[:-1] + _suffix(report)
