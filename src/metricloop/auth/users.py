"""The people of the console: users with a role and the metric domains they work in.

A password is only ever kept as an argon2 hash; it is never logged or echoed. Roles are the API's:
`viewer` reads, `operator` acts on incidents and gives feedback, `admin` edits definitions and users. A user sees
and acts only inside their domains (the `domain` of a metric; an incident or monitor is in its metric's domain);
an admin sees every domain. `scope` turns a list of domains into the set of metric names they cover.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from metricloop.auth.models import User
from metricloop.auth.service import ROLES
from metricloop.errors import MetricloopError, NotFound

MIN_PASSWORD = 8
MAX_PASSWORD = 1024
MAX_FAILED = 10  # wrong passwords in a row before the login is locked for LOCK_FOR
LOCK_FOR = timedelta(minutes=15)

_hasher = PasswordHasher()


class LoginError(MetricloopError):
    status_code = 401


class RateLimited(MetricloopError):
    status_code = 429


def _clean_name(name: str) -> str:
    name = unicodedata.normalize("NFC", (name or "").strip())
    if not name or len(name) > 200 or any(unicodedata.category(c).startswith("C") for c in name):
        raise MetricloopError("a user name is 1 to 200 printable characters (any language)", where="name")
    return name


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise MetricloopError(f"role must be one of {', '.join(ROLES)}, not '{role}'", where="role")
    return role


def _check_password(password: str) -> str:
    if not (MIN_PASSWORD <= len(password or "") <= MAX_PASSWORD):
        raise MetricloopError(f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters long", where="password")
    return password


def clean_domains(domains: list[str] | str | None) -> list[str]:
    if isinstance(domains, str):
        domains = domains.split(",")
    out: list[str] = []
    for d in domains or []:
        d = d.strip()
        if d and d not in out:
            out.append(d)
    return out


def get_user(db_session: Session, name: str) -> User:
    row = db_session.scalar(select(User).where(User.name == _clean_name(name)))
    if row is None:
        raise NotFound(f"no user named '{name}'", where="name")
    return row


def add_user(
    db_session: Session,
    *,
    name: str,
    password: str,
    role: str = "viewer",
    domains: list[str] | str | None = None,
    display_name: str = "",
    email: str = "",
) -> User:
    name = _clean_name(name)
    _check_role(role)
    _check_password(password)
    if db_session.scalar(select(User.id).where(User.name == name)) is not None:
        raise MetricloopError(f"a user named '{name}' already exists", where="name")
    row = User(
        name=name,
        display_name=(display_name or "").strip() or name,
        email=(email or "").strip(),
        password_hash=_hasher.hash(password),
        role=role,
        domains=clean_domains(domains),
        session_generation=0,
        failed_logins=0,
    )
    db_session.add(row)
    db_session.flush()
    return row


def list_users(db_session: Session) -> list[User]:
    return list(db_session.scalars(select(User).order_by(User.name)))


def set_role(db_session: Session, *, name: str, role: str, by: User | None = None) -> User:
    """Change a user's role. Done by a person (`by`), it needs an admin: nobody raises their own role."""
    if by is not None and by.role != "admin":
        from metricloop.auth.service import Forbidden

        raise Forbidden(f"user '{by.name}' has role {by.role}; changing roles needs admin")
    row = get_user(db_session, name)
    row.role = _check_role(role)
    return row


def set_domains(db_session: Session, *, name: str, domains: list[str] | str) -> User:
    row = get_user(db_session, name)
    row.domains = clean_domains(domains)
    return row


def reset_password(db_session: Session, *, name: str, password: str) -> User:
    """A new password; every session of the user ends and the login is unlocked."""
    row = get_user(db_session, name)
    row.password_hash = _hasher.hash(_check_password(password))
    row.session_generation += 1
    row.failed_logins = 0
    row.locked_until = None
    return row


def disable(db_session: Session, *, name: str) -> User:
    row = get_user(db_session, name)
    row.disabled_at = row.disabled_at or datetime.now(UTC)
    row.session_generation += 1
    return row


def _aware(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def check_login(db_session: Session, name: str, password: str, *, now: datetime | None = None) -> User:
    """The user whose name and password these are, else LoginError (401); RateLimited (429) after MAX_FAILED wrong
    passwords in a row, for LOCK_FOR. The same message for an unknown name and a wrong password."""
    now = now or datetime.now(UTC)
    wrong = LoginError("wrong user name or password")
    try:
        name = _clean_name(name)
    except MetricloopError:
        raise wrong from None
    row = db_session.scalar(select(User).where(User.name == name))
    if row is None:
        _hasher.hash(password or "x")  # as slow as a wrong password: the answer does not tell names apart
        raise wrong
    locked = _aware(row.locked_until)
    if locked is not None and locked > now:
        raise RateLimited(f"too many wrong passwords: try again after {locked:%H:%M} UTC", where="password")
    try:
        _hasher.verify(row.password_hash, password or "")
    except (VerificationError, InvalidHashError):
        row.failed_logins += 1
        if row.failed_logins >= MAX_FAILED:
            row.locked_until = now + LOCK_FOR
            row.failed_logins = 0
        db_session.commit()  # the count must stick although the caller's unit of work fails
        raise wrong from None
    if row.disabled_at is not None:
        raise LoginError("this user is disabled")
    row.failed_logins = 0
    row.locked_until = None
    if _hasher.check_needs_rehash(row.password_hash):
        row.password_hash = _hasher.hash(password)
    return row


def sees_all(role: str, domains: list[str] | None) -> bool:
    return role == "admin" or domains is None


def scope(catalog, domains: list[str] | None) -> set[str] | None:
    """The names of the metrics in `domains`, or None for every metric (an admin, or a token without a user)."""
    if domains is None:
        return None
    wanted = set(domains)
    return {name for name, m in catalog.metrics.items() if m.domain in wanted}
