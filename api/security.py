"""Access tokens (JWT, HS256), opaque refresh tokens, password hashing and checks."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from infrastructure.settings import AuthSettings

Role = Literal["admin", "dispatcher", "driver"]
ROLES: tuple[Role, ...] = ("admin", "dispatcher", "driver")
_hasher = PasswordHasher()
# Verified when the user is unknown too, so timing does not reveal which emails exist.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: taken from a verified token, never from the request body."""

    user_id: str
    tenant_id: str
    role: Role
    email: str
    driver_id: str | None = None


def issue_access_token(principal: Principal, settings: AuthSettings) -> str:
    now = int(time.time())
    claims = {
        "sub": principal.user_id,
        "tenant": principal.tenant_id,
        "role": principal.role,
        "email": principal.email,
        "driver": principal.driver_id,
        "typ": "access",
        "iat": now,
        "exp": now + settings.access_ttl_s,
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


class InvalidToken(ValueError):
    pass


def token_times(token: str) -> tuple[float, float]:
    """Return an already verified token's (issued at, expires at), epoch seconds."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return float(claims["iat"]), float(claims["exp"])


def verify_access_token(token: str, settings: AuthSettings) -> Principal:
    """Return the token's principal; raise InvalidToken if forged, expired or malformed."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=["HS256"],
            options={"require": ["exp", "iat", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    role = claims.get("role")
    if claims.get("typ") != "access" or role not in ROLES or not claims.get("tenant"):
        raise InvalidToken("not an access token")
    return Principal(
        user_id=str(claims["sub"]),
        tenant_id=str(claims["tenant"]),
        role=role,
        email=str(claims.get("email", "")),
        driver_id=claims.get("driver"),
    )


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password against an argon2 hash in constant-ish time."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def hash_password(password: str) -> str:
    """Return the argon2id hash stored for a password (slow on purpose)."""
    return _hasher.hash(password)


def new_refresh_token() -> str:
    """Return a fresh opaque refresh token (256 random bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def refresh_token_digest(token: str) -> str:
    """Return the sha256 hex digest under which a refresh token is stored (never the token)."""
    return hashlib.sha256(token.encode()).hexdigest()
