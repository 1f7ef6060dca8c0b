"""Reads of organisations, their users and API tokens: the viewer's organisation, one user,
pages of users and tokens."""

from __future__ import annotations

from domain import visibility
from domain.access import Viewer
from domain.errors import not_found
from domain.organisations.models import ApiToken, Organisation, User
from domain.pages import keyset_page


async def get_organisation(*, viewer: Viewer) -> Organisation:
    organisation = await Organisation.get_or_none(id=viewer.organisation_id)
    if organisation is None:
        raise not_found("Organisation")
    return organisation


async def list_users(
    *, viewer: Viewer, first: int, after: int | None = None
) -> tuple[list[User], bool]:
    """A page of the organisation's people, in id order."""
    return await keyset_page(visibility.users(viewer), first=first, after=after)


async def get_user(*, user_id: int) -> User | None:
    return await User.get_or_none(id=user_id)


async def list_tokens(
    *, viewer: Viewer, first: int, after: int | None = None
) -> tuple[list[ApiToken], bool]:
    """A page of tokens in id order: admins see every token of their organisation; others see
    their own."""
    return await keyset_page(visibility.api_tokens(viewer), first=first, after=after)
