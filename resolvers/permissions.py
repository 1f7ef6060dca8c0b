"""The one authorisation mechanism: a declaration of who may use it on every root field.

``extensions=[requires(BUYER, STAFF)]`` on a Query, Mutation or Subscription field admits an
authenticated member of a buyer organisation with the STAFF role or higher, and refuses anyone
else before the resolver runs. ``tests/test_schema.py`` refuses a root field without one, and
``tests/test_authorization_matrix.py`` reads the declarations to run every field with the
callers they admit and refuse (and checks the domain's own guards refuse them too).

Refusals look as they did when only the domain's guards decided:

* no valid token: a top-level error with ``extensions.code = UNAUTHENTICATED``;
* the wrong organisation kind or too low a role: on a mutation, its payload with one
  ``userErrors`` entry of code ``FORBIDDEN``; on a query or subscription, a top-level error with
  ``extensions.code = FORBIDDEN`` (``DomainError``, coded by ``schema.build``).

The declaration is appended to the field's description (``Requires: …``), so it is in the
schema. Which objects a viewer may see is decided by the domain's scoped queries.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from strawberry import Info
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types.base import get_object_definition

from domain import access
from domain.access import Viewer
from domain.errors import DomainError
from domain.organisations.models import OrganisationKind, Role
from resolvers.errors import PublicError
from schema.types.errors import UserError

if TYPE_CHECKING:
    from strawberry.extensions.field_extension import (
        AsyncExtensionResolver,
        SyncExtensionResolver,
    )
    from strawberry.types.field import StrawberryField

BUYER = OrganisationKind.BUYER
SUPPLIER = OrganisationKind.SUPPLIER
EITHER = None  # an organisation of either kind
VIEWER, STAFF, ADMIN, OWNER = Role.VIEWER, Role.STAFF, Role.ADMIN, Role.OWNER

_KIND_NAMES = {None: "any organisation", BUYER: "a buyer", SUPPLIER: "a supplier"}


class Requires(BasePermission):
    """Who may use a field: an authenticated member of an organisation of ``kind`` (``None``:
    either kind) with ``role`` or higher.

    ``scoped``: a member below ``role`` may use it too and is served less (only what is their
    own, e.g. their own API tokens); the role is then not checked here but by the domain.
    """

    message = "Authentication required: send `Authorization: Bearer <token>`."
    error_class = PublicError
    error_extensions = {"code": "UNAUTHENTICATED"}

    def __init__(
        self,
        kind: OrganisationKind | None = EITHER,
        role: Role = VIEWER,
        *,
        scoped: bool = False,
    ) -> None:
        self.kind = kind
        self.role = role
        self.scoped = scoped

    @classmethod
    def anyone(cls, role: Role = VIEWER, *, scoped: bool = False) -> Requires:
        """A member of any organisation with ``role`` or higher."""
        return cls(EITHER, role, scoped=scoped)

    def __repr__(self) -> str:
        kind = self.kind.value if self.kind else "EITHER"
        return f"Requires({kind}, {self.role.value}{', scoped' if self.scoped else ''})"

    def refusal(self, viewer: Viewer) -> DomainError | None:
        """Why ``viewer`` may not use the field, or None when they may (the domain's rule,
        ``domain.access.refusal``)."""
        return access.refusal(viewer, kind=self.kind, role=VIEWER if self.scoped else self.role)

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        """False without a viewer (``on_unauthorized``: UNAUTHENTICATED); raises the
        ``DomainError`` of a refused viewer (FORBIDDEN)."""
        context = info.context
        viewer = context.viewer
        if viewer is None:
            if context.auth_problem:
                raise PublicError(context.auth_problem, code="UNAUTHENTICATED")
            return False
        refusal = self.refusal(viewer)
        if refusal is not None:
            raise refusal
        return True

    def describe(self) -> str:
        """The declaration in words, as the schema shows it."""
        who = _KIND_NAMES[self.kind]
        if self.scoped:
            return f"Requires: {who}, any role (below {self.role.value}: only the caller's own)."
        role = "any role" if self.role is VIEWER else f"{self.role.value} or higher"
        return f"Requires: {who}, {role}."


class Declared(PermissionExtension):
    """The field extension that carries a field's ``Requires``: checked before the resolver,
    shown in the field's description, and on a mutation a refusal is its payload's
    ``userErrors`` (as the domain's refusals are, ``resolvers.mutations.run_command``)."""

    def __init__(self, requires: Requires) -> None:
        super().__init__(permissions=[requires], use_directives=False)
        self.requires = requires
        self.payload: type | None = None

    def apply(self, field: StrawberryField) -> None:
        super().apply(field)
        suffix = self.requires.describe()
        description = field.description or ""
        if not description.endswith(suffix):
            field.description = f"{description} {suffix}".strip()
        definition = get_object_definition(field.type)
        if definition is not None and any(
            f.python_name == "user_errors" for f in definition.fields
        ):
            self.payload = definition.origin

    def _refused(self, source: Any, info: Info, kwargs: dict[str, Any]) -> Any:
        """None when the caller may go on; else the payload that refuses them (a mutation's).
        Raises the error that refuses them anywhere else."""
        try:
            if not self.requires.has_permission(source, info, **kwargs):
                self.requires.on_unauthorized()
        except DomainError as error:
            if self.payload is None:
                raise
            return self.payload(user_errors=UserError.from_domain(error))
        return None

    def resolve(self, next_: SyncExtensionResolver, source: Any, info: Info, **kwargs: Any) -> Any:
        refused = self._refused(source, info, kwargs)
        return refused if refused is not None else next_(source, info, **kwargs)

    async def resolve_async(
        self, next_: AsyncExtensionResolver, source: Any, info: Info, **kwargs: Any
    ) -> Any:
        refused = self._refused(source, info, kwargs)
        if refused is not None:
            return refused
        result = next_(source, info, **kwargs)
        return result if inspect.isasyncgen(result) else await result


def requires(
    kind: OrganisationKind | None = EITHER, role: Role = VIEWER, *, scoped: bool = False
) -> Declared:
    """The declaration of a root field: ``extensions=[requires(SUPPLIER, ADMIN)]``."""
    return Declared(Requires(kind, role, scoped=scoped))


def declared(field: StrawberryField) -> Requires | None:
    """The ``Requires`` declared on a field, if any."""
    for extension in field.extensions:
        if isinstance(extension, Declared):
            return extension.requires
    return None


def viewer_of(info: Info) -> Viewer:
    """The authenticated viewer; only called behind a ``Requires`` declaration."""
    viewer = info.context.viewer
    if viewer is None:  # pragma: no cover - guarded by the declaration
        raise PublicError("Authentication required.", code="UNAUTHENTICATED")
    return viewer
