"""API tokens: issued to a user, stored as a SHA-256 digest, shown once, revocable."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from tortoise.expressions import Q, Subquery

from domain import limits
from domain.access import Viewer
from domain.db import transaction
from domain.errors import DomainError, ErrorCode, not_found
from domain.events import record_event
from domain.events.catalogue import ApiTokenCreated, ApiTokenRevoked
from domain.organisations.models import ApiToken, Role, User
from domain.persistence.tokens import unrevoked_token
from domain.validation import clean_text, utc_datetime

TOKEN_PREFIX = "sg_"
_LAST_USED_RESOLUTION = timedelta(minutes=1)

DEFAULT_LIFETIME = timedelta(days=90)
"""A token created without ``expiresAt`` expires this long after its creation (a forgotten
token does not stay valid forever); ask for a later expiry explicitly."""

MAX_ACTIVE_TOKENS_PER_USER = limits.MAX_ACTIVE_TOKENS_PER_USER
"""Tokens one user may hold at once (neither revoked nor expired): a 21st is refused with
``TOO_MANY``; revoke one first. (Documented with the other maximums in ``domain.limits``.)"""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def issue_token(
    *, user: User, name: str, expires_at: datetime | None = None, actor_user_id: int | None = None
) -> tuple[ApiToken, str]:
    """Create a token for ``user``; returns the row and the secret (never stored, shown once)."""
    name = clean_text(name, field="name", max_length=100)
    now = datetime.now(UTC)
    if expires_at is not None:
        expires_at = utc_datetime(expires_at, field="expiresAt")
        if expires_at <= now:
            raise DomainError(
                ErrorCode.INVALID, "The expiry must be in the future.", field="expiresAt"
            )
    else:
        expires_at = now + DEFAULT_LIFETIME
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with transaction():
        # Written first, counted after: SQLite's transaction starts as a writer (a read first
        # could not become one while another process writes: "database is locked"), and on
        # PostgreSQL the user's row lock makes a concurrent issue wait for this one's commit.
        token = await ApiToken.create(
            user_id=user.id,
            organisation_id=user.organisation_id,
            name=name,
            prefix=secret[:10],
            secret_hash=_digest(secret),
            expires_at=expires_at,
        )
        await User.select_for_update().filter(id=user.id).first()
        active = await ApiToken.filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now),
            user_id=user.id,
            revoked_at__isnull=True,
        ).count()
        if active > MAX_ACTIVE_TOKENS_PER_USER:  # this one included; refused, nothing stays
            raise DomainError(
                ErrorCode.TOO_MANY,
                f"At most {MAX_ACTIVE_TOKENS_PER_USER} active tokens per user: revoke one first.",
                field="name",
            )
        await _drop_old_spent_tokens(user.id, now)
        await record_event(
            ApiTokenCreated.of(
                token, actor_user_id=actor_user_id if actor_user_id is not None else user.id
            )
        )
    return token, secret


async def _drop_old_spent_tokens(user_id: int, now: datetime) -> None:
    """Keep the user's latest ``limits.MAX_SPENT_TOKENS_KEPT_PER_USER`` revoked or expired
    tokens: creating and revoking tokens again and again does not grow ``apiTokens`` without
    bound. A spent token authenticates nothing, so dropping it changes no one's access (its
    events stay, and name its user)."""
    spent = ApiToken.filter(Q(revoked_at__isnull=False) | Q(expires_at__lte=now), user_id=user_id)
    kept = (
        spent.order_by("-id")
        .limit(limits.MAX_SPENT_TOKENS_KEPT_PER_USER)
        .values_list("id", flat=True)
    )
    await (
        ApiToken.filter(Q(revoked_at__isnull=False) | Q(expires_at__lte=now), user_id=user_id)
        .exclude(id__in=Subquery(kept))
        .delete()
    )


async def create_token(
    *, viewer: Viewer, name: str, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """The viewer creates a token for themself."""
    user = await User.get(id=viewer.user_id)
    return await issue_token(
        user=user, name=name, expires_at=expires_at, actor_user_id=viewer.user_id
    )


async def revoke_token(*, viewer: Viewer, token_id: int) -> ApiToken:
    """Revoke one of the viewer's own tokens, or (admins) any token of the organisation."""
    async with transaction():
        token = await ApiToken.get_or_none(id=token_id, organisation_id=viewer.organisation_id)
        if token is None or (token.user_id != viewer.user_id and not viewer.has_role(Role.ADMIN)):
            raise not_found("Token", field="id")
        if token.revoked_at is not None:
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION, "This token is already revoked.", field="id"
            )
        token.revoked_at = datetime.now(UTC)
        await token.save(update_fields=["revoked_at"])
        await record_event(ApiTokenRevoked.of(token, actor_user_id=viewer.user_id))
    return token


async def authenticate(*, secret: str) -> Viewer | None:
    """The viewer a bearer secret stands for, or None if it is unknown, revoked or expired."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    token = await unrevoked_token(_digest(secret))
    if token is None or not token.user_is_active:
        return None
    now = datetime.now(UTC)
    if token.expires_at is not None and token.expires_at <= now:
        return None
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        await ApiToken.filter(id=token.id).update(last_used_at=now)
    return Viewer(
        user_id=token.user_id,
        organisation_id=token.organisation_id,
        organisation_kind=token.organisation_kind,
        role=token.role,
        token_id=token.id,
    )


async def still_valid(*, token_id: int) -> bool:
    """Whether a token that authenticated earlier (a socket's) is still unrevoked, unexpired and
    its user active: checked again before a long-lived connection starts another operation."""
    token = (
        await ApiToken.filter(id=token_id, revoked_at__isnull=True).select_related("user").first()
    )
    if token is None or not token.user.is_active:
        return False
    return token.expires_at is None or token.expires_at > datetime.now(UTC)
