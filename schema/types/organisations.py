"""Organisations, users and API tokens."""

from __future__ import annotations

from datetime import datetime

import strawberry

from domain.organisations.models import ApiToken as ApiTokenModel
from domain.organisations.models import Organisation as OrganisationModel
from domain.organisations.models import User as UserModel
from schema.global_ids import gid
from schema.types.enums import OrganisationKind, Role
from schema.types.errors import UserError
from schema.types.node import Node


@strawberry.type
class Organisation(Node):
    name: str
    kind: OrganisationKind
    created_at: datetime

    @classmethod
    def from_model(cls, m: OrganisationModel) -> Organisation:
        return cls(id=gid("Organisation", m.id), name=m.name, kind=m.kind, created_at=m.created_at)


@strawberry.type
class User(Node):
    email: str
    name: str
    role: Role
    is_active: bool
    created_at: datetime

    @classmethod
    def from_model(cls, m: UserModel) -> User:
        return cls(
            id=gid("User", m.id),
            email=m.email,
            name=m.name,
            role=m.role,
            is_active=m.is_active,
            created_at=m.created_at,
        )


@strawberry.type(description="An API token. Its secret is only ever shown when it is created.")
class ApiToken(Node):
    name: str
    prefix: str = strawberry.field(description="The secret's first characters, to recognise it.")
    user_id: strawberry.ID
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_model(cls, m: ApiTokenModel) -> ApiToken:
        return cls(
            id=gid("ApiToken", m.id),
            name=m.name,
            prefix=m.prefix,
            user_id=gid("User", m.user_id),
            created_at=m.created_at,
            expires_at=m.expires_at,
            last_used_at=m.last_used_at,
            revoked_at=m.revoked_at,
        )


@strawberry.type(description="The caller: its user, organisation and the token in use.")
class Me:
    user: User
    organisation: Organisation
    token_id: strawberry.ID


@strawberry.input
class RenameOrganisationInput:
    name: str


@strawberry.type
class RenameOrganisationPayload:
    organisation: Organisation | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class AddUserInput:
    email: str
    name: str
    role: Role


@strawberry.type
class AddUserPayload:
    user: User | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class CreateApiTokenInput:
    name: str
    expires_at: datetime | None = None


@strawberry.type
class CreateApiTokenPayload:
    token: ApiToken | None = None
    secret: str | None = strawberry.field(
        default=None, description="The bearer secret. Shown only here; store it now."
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RevokeApiTokenInput:
    id: strawberry.ID = strawberry.field(description="The token's global id.")


@strawberry.type
class RevokeApiTokenPayload:
    token: ApiToken | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
