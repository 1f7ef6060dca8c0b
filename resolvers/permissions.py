"""The one authorisation mechanism: permission classes on every root field.

A field without one is refused by ``tests/test_schema.py``. Authentication and coarse access
are decided here; which objects a viewer may see is decided by the domain's scoped queries.
"""

from __future__ import annotations

from typing import Any

from strawberry import Info
from strawberry.permission import BasePermission

from domain.access import Viewer
from resolvers.errors import PublicError


class IsAuthenticated(BasePermission):
    message = "Authentication required: send `Authorization: Bearer <token>`."
    error_class = PublicError
    error_extensions = {"code": "UNAUTHENTICATED"}

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        context = info.context
        if context.viewer is not None:
            return True
        if context.auth_problem:
            raise PublicError(context.auth_problem, code="UNAUTHENTICATED")
        return False


def viewer_of(info: Info) -> Viewer:
    """The authenticated viewer; only called behind ``IsAuthenticated``."""
    viewer = info.context.viewer
    if viewer is None:  # pragma: no cover - guarded by the permission class
        raise PublicError("Authentication required.", code="UNAUTHENTICATED")
    return viewer
