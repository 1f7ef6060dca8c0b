"""The codes of top-level GraphQL errors (``errors[].extensions.code``) and what each means.

A refused mutation answers ``userErrors`` with a ``domain.errors.ErrorCode``; everything else a
client can be refused with is one of these, and a query field that refuses answers a top-level
error whose code is one of ``ErrorCode``'s (``NOT_FOUND``, ``FORBIDDEN``, ...). The README's
table is printed from here (``markdown``); ``tests/test_error_codes.py`` keeps this list, the
places that answer these codes and the README in step.
"""

from __future__ import annotations

from domain.errors import MEANINGS

TOP_LEVEL_CODES: dict[str, str] = {
    "UNAUTHENTICATED": "No token, or one that is malformed, expired or revoked; a socket whose "
    "token is revoked gets it on each of its subscriptions.",
    "BAD_USER_INPUT": "An argument or variable is malformed: an id of another type, a cursor "
    "this API did not hand out, `first` outside its range.",
    "GRAPHQL_PARSE_FAILED": "The document is not GraphQL.",
    "GRAPHQL_VALIDATION_FAILED": "The document does not fit the schema.",
    "QUERY_TOO_COMPLEX": "The document passes the depth, token or alias limit.",
    "MAX_COST_EXCEEDED": "The operation's calculated cost passes the most one operation may cost.",
    "THROTTLED": "The caller's cost budget is spent for now (HTTP 429); `extensions.retryAfter` "
    "says after how many seconds to retry.",
    "PERSISTED_QUERY_NOT_FOUND": "A persisted query's hash this server does not know: send the "
    "document with it.",
    "PERSISTED_QUERY_NOT_IN_LIST": "Trusted documents only: the document is not in the list.",
    "PERSISTED_QUERY_NOT_SUPPORTED": "Persisted queries are switched off on this server.",
    "BAD_REQUEST": "The HTTP request is malformed: no query, a body that is not JSON, a bad "
    "batch (HTTP 400).",
    "NOT_FOUND": "No such path (HTTP 404); from a query field, no such object or not visible "
    "to the caller.",
    "METHOD_NOT_ALLOWED": "An HTTP method `/graphql` does not serve (HTTP 405).",
    "NOT_ACCEPTABLE": "The `Accept` header allows no media type this API answers in (HTTP 406).",
    "PAYLOAD_TOO_LARGE": "The body passes `MAX_BODY_BYTES` (HTTP 413).",
    "UNSUPPORTED_MEDIA_TYPE": "A body in a media type other than JSON (HTTP 415).",
    "SERVICE_UNAVAILABLE": "The database cannot be reached (HTTP 503 with `Retry-After`): retry "
    "shortly.",
    "INTERNAL_SERVER_ERROR": 'Anything unexpected: the message is masked ("Unexpected error.") '
    "and `extensions.requestId` names the log line with the full exception.",
}


def markdown() -> list[str]:
    """The README's two tables: the ``userErrors`` codes, then the top-level ones."""
    rows = ["| `userErrors` code | Meaning |", "| --- | --- |"]
    rows += [f"| `{code.value}` | {meaning} |" for code, meaning in MEANINGS.items()]
    rows += ["", "| Top-level `extensions.code` | Meaning |", "| --- | --- |"]
    rows += [f"| `{code}` | {meaning} |" for code, meaning in TOP_LEVEL_CODES.items()]
    return rows
