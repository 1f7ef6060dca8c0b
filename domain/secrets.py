"""Credentials at rest: ``SealedTextField`` encrypts a column with the service's secrets key.

Store access tokens, webhook secrets and warehouse API keys are written as
``sealed:v1:<Fernet token>`` (AES-128-CBC + HMAC-SHA256, from ``cryptography``) and decrypted
when a row is read, so a copy of the database alone does not hand out anyone's credentials.
The key comes from ``SECRETS_KEY``; without it, from the key file ``SECRETS_KEY_FILE``, which is
created (mode 0600) on first start so that ``make run`` works with no settings. Keep that key file
with the database backups, not inside them.

One key per deployment: once the database holds sealed values, an instance whose key does not
open them, or that has none, refuses to start (``check_sealed``) rather than making a key of its
own and failing on every credential it reads.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from tortoise import Tortoise, fields

__all__ = [
    "SealedTextField",
    "SecretsKeyRefused",
    "SecretsNotConfigured",
    "configure",
    "derived_key",
    "generate_key",
    "load_or_create_key",
    "open_sealed",
    "seal",
]

PREFIX = "sealed:v1:"

_fernet: Fernet | None = None
_material: bytes | None = None


class SecretsNotConfigured(RuntimeError):
    """A sealed value was read or written before ``configure`` was called."""


class SecretsKeyRefused(RuntimeError):
    """The database holds sealed values this instance's key does not open, or it has no key."""


def generate_key() -> str:
    return Fernet.generate_key().decode()


def check_key(key: str) -> str:
    """``key`` if it is a valid key (32 url-safe base64 bytes), else ``ValueError``."""
    try:
        Fernet(key.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError("expected 32 url-safe base64-encoded bytes (see `generate_key`)") from exc
    return key


def load_or_create_key(path: Path) -> str:
    """The key stored at ``path``; a new one is written there (mode 0600) if it is missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_key() + "\n")
    return check_key(path.read_text().strip())


def configured() -> bool:
    return _fernet is not None


def configure(key: str) -> None:
    """Set the process-wide key (at start-up, before any sealed column is touched)."""
    global _fernet, _material
    _fernet = Fernet(check_key(key).encode())
    _material = base64.urlsafe_b64decode(key.encode())
    derived_key.cache_clear()


@functools.cache
def derived_key(purpose: str) -> bytes:
    """32 bytes for ``purpose`` (such as ``"event-ids"``), derived from the secrets key with
    HMAC-SHA256: one setting keys every secret the service keeps, and no two uses share a key."""
    if _material is None:
        raise SecretsNotConfigured("domain.secrets.configure(key) was not called")
    return hmac.new(_material, purpose.encode(), hashlib.sha256).digest()


def _cipher() -> Fernet:
    if _fernet is None:
        raise SecretsNotConfigured("domain.secrets.configure(key) was not called")
    return _fernet


def seal(plain: str) -> str:
    return PREFIX + _cipher().encrypt(plain.encode()).decode()


def open_sealed(stored: str) -> str:
    """The plain text of a sealed value; a value without the prefix is returned unchanged."""
    if not stored.startswith(PREFIX):
        return stored
    try:
        return _cipher().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise SecretsNotConfigured(
            "a sealed value does not open with this SECRETS_KEY (was the key changed?)"
        ) from exc


class SealedTextField(fields.TextField):
    """A text column stored sealed; the model attribute always holds the plain text."""

    def to_db_value(self, value: Any, instance: Any) -> Any:
        if value is None:
            return None
        return seal(open_sealed(str(value)))

    def to_python_value(self, value: Any) -> Any:
        if value is None:
            return None
        return open_sealed(str(value))


def _sealed_columns() -> list[tuple[Any, str]]:
    """(model, field name) of every sealed column of the initialised models."""
    return [
        (model, name)
        for app in Tortoise.apps.values()
        for model in app.values()
        for name, column in model._meta.fields_map.items()
        if isinstance(column, SealedTextField)
    ]


async def check_sealed(*, key_source: str, make_key: Any) -> None:
    """At start-up, the database open: with a key (``configured``), one sealed value of each
    sealed column must open with it; without one, no column may hold a value, and
    ``make_key()`` (the key file's creation) gives the key. ``SecretsKeyRefused`` otherwise,
    naming the column and where the key came from (``key_source``)."""
    for model, name in _sealed_columns():
        rows = model.filter(**{f"{name}__isnull": False})
        where = f"{model._meta.db_table}.{name}"
        if not configured():
            if await rows.exists():
                raise SecretsKeyRefused(
                    f"{where} holds credentials sealed with this deployment's key, and this "
                    f"instance has none ({key_source}): give it the same SECRETS_KEY (or key "
                    "file) as the instances that sealed them; making a new key would lose them."
                )
            continue
        try:
            for stored in await rows.limit(1).values_list(name, flat=True):
                open_sealed(str(stored))
        except SecretsNotConfigured as exc:
            raise SecretsKeyRefused(
                f"{where} holds credentials that do not open with this instance's key "
                f"({key_source}): every instance of a deployment needs the same SECRETS_KEY "
                "(or key file)."
            ) from exc
    if not configured():
        configure(make_key())
