"""The caller, their organisation, its users and API tokens."""

from __future__ import annotations

import strawberry
from strawberry import Info

from domain.organisations import commands as organisations
from domain.organisations import queries as organisation_queries
from domain.organisations import tokens
from domain.pages import MAX_PAGE
from resolvers.ids import page_arguments, parse_id
from resolvers.mutations import run_command
from resolvers.permissions import ADMIN, EITHER, requires, viewer_of
from schema.global_ids import gid
from schema.types.organisations import (
    AddUserInput,
    AddUserPayload,
    ApiToken,
    CreateApiTokenInput,
    CreateApiTokenPayload,
    Me,
    Organisation,
    RenameOrganisationInput,
    RenameOrganisationPayload,
    RevokeApiTokenInput,
    RevokeApiTokenPayload,
    User,
)
from schema.types.pagination import Connection


@strawberry.type
class OrganisationQueries:
    @strawberry.field(extensions=[requires(EITHER)], description="The caller.")
    async def me(self, info: Info) -> Me:
        viewer = viewer_of(info)
        organisation = await organisation_queries.get_organisation(viewer=viewer)
        user = await organisation_queries.get_user(user_id=viewer.user_id)
        assert user is not None
        return Me(
            user=User.from_model(user),
            organisation=Organisation.from_model(organisation),
            token_id=gid("ApiToken", viewer.token_id),
        )

    @strawberry.field(
        extensions=[requires(EITHER)],
        description=f"People of the caller's organisation, at most {MAX_PAGE} per page.",
    )
    async def users(
        self, info: Info, first: int = 50, after: str | None = None
    ) -> Connection[User]:
        rows, more = await organisation_queries.list_users(
            viewer=viewer_of(info), **page_arguments(first, after)
        )
        return Connection.of(rows, User.from_model, has_next_page=more, after=after)

    @strawberry.field(
        extensions=[requires(EITHER, ADMIN, scoped=True)],
        description="API tokens: all of the organisation's for admins, else the caller's own; "
        f"at most {MAX_PAGE} per page.",
    )
    async def api_tokens(
        self, info: Info, first: int = 50, after: str | None = None
    ) -> Connection[ApiToken]:
        rows, more = await organisation_queries.list_tokens(
            viewer=viewer_of(info), **page_arguments(first, after)
        )
        return Connection.of(rows, ApiToken.from_model, has_next_page=more, after=after)


@strawberry.type
class OrganisationMutations:
    @strawberry.mutation(
        extensions=[requires(EITHER, ADMIN)], description="Rename the caller's organisation."
    )
    async def rename_organisation(
        self, info: Info, input: RenameOrganisationInput
    ) -> RenameOrganisationPayload:
        async def command() -> dict:
            org = await organisations.rename_organisation(viewer=viewer_of(info), name=input.name)
            return {"organisation": Organisation.from_model(org)}

        return await run_command(RenameOrganisationPayload, command, in_input=True)

    @strawberry.mutation(
        extensions=[requires(EITHER, ADMIN)],
        description=(
            "Add a person to the caller's organisation (only an OWNER adds an OWNER). An e-mail"
            " is unique within an organisation: ALREADY_EXISTS speaks of the caller's own."
        ),
    )
    async def add_user(self, info: Info, input: AddUserInput) -> AddUserPayload:
        async def command() -> dict:
            user = await organisations.add_user(
                viewer=viewer_of(info), email=input.email, name=input.name, role=input.role
            )
            return {"user": User.from_model(user)}

        return await run_command(AddUserPayload, command, in_input=True)

    @strawberry.mutation(
        extensions=[requires(EITHER)],
        description="Create a token for the caller. The secret is in this payload only.",
    )
    async def create_api_token(
        self, info: Info, input: CreateApiTokenInput
    ) -> CreateApiTokenPayload:
        async def command() -> dict:
            token, secret = await tokens.create_token(
                viewer=viewer_of(info), name=input.name, expires_at=input.expires_at
            )
            return {"token": ApiToken.from_model(token), "secret": secret}

        return await run_command(CreateApiTokenPayload, command, in_input=True)

    @strawberry.mutation(
        extensions=[requires(EITHER, ADMIN, scoped=True)],
        description="Revoke one of the caller's tokens (admins: any of the organisation's).",
    )
    async def revoke_api_token(
        self, info: Info, input: RevokeApiTokenInput
    ) -> RevokeApiTokenPayload:
        async def command() -> dict:
            token = await tokens.revoke_token(
                viewer=viewer_of(info), token_id=parse_id(input.id, "ApiToken", field="id")
            )
            return {"token": ApiToken.from_model(token)}

        return await run_command(RevokeApiTokenPayload, command, in_input=True)
