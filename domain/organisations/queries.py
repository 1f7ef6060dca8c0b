"""Reads of organisations, their users and API tokens: the viewer's organisation, one user,
pages of users and tokens; the operator's look-ups of users by e-mail."""

from __future__ import annotations

from domain import visibility
from domain.access import Viewer
from domain.errors import not_found
from domain.organisations.models import ApiToken, Organisation, OrganisationKind, User
from domain.pages import keyset_page
from domain.validation import is_key


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


async def users_with_email(email: str, *, organisation_id: int | None = None) -> list[User]:
    """The operator's look-up (``create-token``): the users with this e-mail, in one
    organisation or in all of them, by organisation. An e-mail is unique within an
    organisation only, so without ``organisation_id`` there may be several."""
    found = User.filter(email=email.strip().lower())
    if organisation_id is not None:
        if not is_key(organisation_id):
            return []
        found = found.filter(organisation_id=organisation_id)
    return await found.order_by("organisation_id", "id")


async def founder(email: str, kind: OrganisationKind) -> User | None:
    """The user with this e-mail who founded an organisation of ``kind`` (its first user, the
    OWNER ``create_organisation`` made with it), the oldest if several did. A user added later
    to any organisation (``addUser`` takes any address not yet used in its own) never counts,
    so a tenant cannot pass for an organisation the operator knows by its founder's e-mail."""
    candidates = User.filter(email=email.strip().lower(), organisation__kind=kind)
    for user in await candidates.order_by("id"):
        first = await User.filter(organisation_id=user.organisation_id).order_by("id").first()
        if first is not None and first.id == user.id:
            return user
    return None


async def list_tokens(
    *, viewer: Viewer, first: int, after: int | None = None
) -> tuple[list[ApiToken], bool]:
    """A page of tokens in id order: admins see every token of their organisation; others see
    their own."""
    return await keyset_page(visibility.api_tokens(viewer), first=first, after=after)
