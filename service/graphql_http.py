"""GraphQL over HTTP, the rules the view follows beyond Strawberry's defaults.

- **Media type.** A client that accepts ``application/graphql-response+json`` (and does not
  prefer ``application/json``) gets it; any other gets ``application/json``, as before.
- **Status.** With ``application/graphql-response+json`` a request error (the document does not
  parse or validate, a variable cannot be coerced, nothing was executed) is a 400; a result
  that executed is a 200, whatever its field errors. With ``application/json`` every
  well-formed request is a 200, as legacy clients expect.
- **Request errors carry no ``data``** (the GraphQL spec: ``data`` is absent when execution did
  not begin), under either media type.
- **Every error body is JSON in the GraphQL error shape** — a batch that is too long, a body
  that is not JSON, a method that is not allowed — with a machine-readable ``code``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"

# HTTP statuses of refused requests, as the ``code`` of their error
STATUS_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def _accepted(accept: str) -> dict[str, float]:
    """The media ranges of an ``Accept`` header and their quality."""
    ranges: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges[media.lower()] = max(quality, ranges.get(media.lower(), 0.0))
    return ranges


def response_media_type(accept: str | None) -> str:
    """The media type of the answer to a request with this ``Accept`` header."""
    if not accept:
        return JSON
    ranges = _accepted(accept)
    wanted = ranges.get(GRAPHQL_RESPONSE_JSON, 0.0)
    if wanted > 0 and wanted >= ranges.get(JSON, 0.0):
        return GRAPHQL_RESPONSE_JSON
    return JSON


def is_request_error(data: object, errors: list[Any] | None) -> bool:
    """Whether a result is a request error: errors, no data, and no error tied to a field
    (parse, validation and variable coercion errors have no ``path``)."""
    if data is not None or not errors:
        return False
    return all(getattr(error, "path", None) is None for error in errors)


def error_body(message: str, code: str, **extensions: object) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]}


def error_response(
    status: int,
    message: str,
    media_type: str,
    headers: dict[str, str] | None = None,
    code: str | None = None,
    **extensions: object,
) -> Response:
    """A refused request, as a GraphQL error in JSON; ``code`` is the status's unless given."""
    if code is None:
        code = STATUS_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")
    return Response(
        orjson.dumps(error_body(message, code, **extensions)),
        status_code=status,
        media_type=media_type,
        headers={"cache-control": "no-store", **(headers or {})},
    )
