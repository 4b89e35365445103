"""The users and sign-in tokens of one journal: ``Directory`` (decisions 0080, 0081).

This module owns users (names, printed names, roles, password hashes, enabled, failed
sign-ins, locked), sign-in (``login``: a random token, stored only as its sha256,
expiring after the site's ``auth.token_hours``, revoked by ``logout``), the check of a
request's token (``authenticate``, from memory), and the password re-entered for an
electronic signature (``signer``). Every change is written through the journal's
writer thread with its audit row in one transaction (``AuditTrail.record``); the check
that guards a change (a name taken, the last admin) runs there too, atomic with it.
Memory mirrors the tables: loaded at start, updated after each commit (this process is
the journal's only writer: its lock).

Rules: user ids are never reused (AUTOINCREMENT) and users are never deleted (disabled);
``MAX_FAILED`` failed sign-ins or signature passwords in a row lock the account (a
``SecurityEvent`` on the bus and ``auth.locked`` in the trail) until an admin unlocks it;
a wrong password never says whether the name exists (and costs the same time); a
disabled or locked user's tokens stop working at once; the last enabled admin cannot be
disabled or lose the role.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

import anyio
import structlog

from daemon.audit.chain import utc_now
from daemon.audit.entries import Act, Actor, Entry
from daemon.audit.errors import RequestRefused
from daemon.audit.signatures import Signer, Signing
from daemon.audit.trail import AuditTrail
from daemon.auth.passwords import Hasher, policy_problem
from daemon.auth.roles import ROLES
from daemon.auth.security import BUS_KIND, SecurityEvent
from daemon.journal import files

__all__ = ["MAX_FAILED", "NAME_PATTERN", "Directory", "Session", "User"]

log = structlog.get_logger("cellfab.auth")

MAX_FAILED: Final = 5
NAME_PATTERN: Final = r"^[a-z][a-z0-9._-]{1,31}$"
TOKEN_PREFIX: Final = "cf1_"
WRONG: Final = "the user name or the password is wrong"
USER_COLUMNS: Final = (
    "id, name, full_name, roles, enabled, failed, locked, created_at, changed_at, password"
)


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    full_name: str
    roles: frozenset[str]
    enabled: bool
    failed: int
    locked: bool
    created_at: str
    changed_at: str

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "full_name": self.full_name,
            "roles": sorted(self.roles),
            "enabled": self.enabled,
            "locked": self.locked,
            "failed": self.failed,
            "created_at": self.created_at,
            "changed_at": self.changed_at,
        }


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in user as a request carries it."""

    user: User
    digest: str  # sha256 of the token
    expires_at: float

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def roles(self) -> frozenset[str]:
        return self.user.roles

    def actor(self, role: str = "") -> Actor:
        return Actor(self.user.name, self.user.id, role)


@dataclass(slots=True)
class _Token:
    user_id: int
    expires_at: float
    revoked: bool = False


@dataclass(slots=True)
class _State:
    users: dict[int, User] = field(default_factory=dict)
    passwords: dict[int, str] = field(default_factory=dict)
    tokens: dict[str, _Token] = field(default_factory=dict)


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_name(name: str) -> None:
    if not re.fullmatch(NAME_PATTERN, name):
        raise RequestRefused(
            f"user name {name!r}: 2-32 characters, a lowercase letter first, then lowercase "
            "letters, digits, '.', '_' or '-'",
            "name",
            422,
        )


def check_roles(roles: Iterable[str]) -> frozenset[str]:
    wanted = frozenset(roles)
    unknown = sorted(wanted - set(ROLES))
    if unknown or not wanted:
        raise RequestRefused(
            f"roles must be one or more of {', '.join(ROLES)}"
            + (f" (not {', '.join(unknown)})" if unknown else ""),
            "roles",
            422,
        )
    return wanted


def check_password(name: str, password: str, field_name: str = "password") -> None:
    problem = policy_problem(name, password)
    if problem is not None:
        raise RequestRefused(problem, field_name, 422)


def _need_reason(reason: str) -> None:
    if not reason.strip():
        raise RequestRefused("a reason is required for every change a person makes", "reason", 422)


class Directory:
    def __init__(
        self,
        trail: AuditTrail,
        *,
        hasher: Hasher | None = None,
        token_hours: float = 12.0,
        publish: Callable[[str, dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.trail = trail
        self.hasher = hasher or Hasher()
        self.token_seconds = token_hours * 3600.0
        self.publish = publish or (lambda _kind, _data: None)
        self.clock = clock
        self._s = _State()

    # ------------------------------------------------------------------ memory
    def load(self) -> None:
        """Read users and live tokens (at start-up, after the journal is open)."""
        s = _State()
        now = self.clock()
        with contextlib.closing(_reader(self.trail)) as conn:
            for row in conn.execute(f"SELECT {USER_COLUMNS} FROM users"):
                user = _user(row)
                s.users[user.id] = user
                s.passwords[user.id] = str(row[9])
            for digest, user_id, expires in conn.execute(
                "SELECT digest, user_id, expires_at FROM tokens "
                "WHERE revoked_at IS NULL AND expires_at > ?",
                (now,),
            ):
                s.tokens[str(digest)] = _Token(int(user_id), float(expires))
        self._s = s

    def users(self) -> list[User]:
        return sorted(self._s.users.values(), key=lambda u: u.id)

    def user(self, name: str) -> User:
        for user in self._s.users.values():
            if user.name == name:
                return user
        raise RequestRefused(f"no user {name!r}", "name", 404)

    def _find(self, name: str) -> User | None:
        return next((u for u in self._s.users.values() if u.name == name), None)

    def _apply(self, user: User, password: str | None = None) -> None:
        self._s.users[user.id] = user
        if password is not None:
            self._s.passwords[user.id] = password
        if not user.enabled or user.locked:
            self._revoke_all(user.id)

    def _revoke_all(self, user_id: int, keep: str = "") -> None:
        for digest, token in self._s.tokens.items():
            if token.user_id == user_id and digest != keep:
                token.revoked = True

    # ------------------------------------------------------------------ requests
    def authenticate(self, token: str) -> Session:
        """The session of a bearer token; RequestRefused 401 saying why not."""
        entry = self._s.tokens.get(digest_of(token))
        if entry is None:
            raise RequestRefused(
                "not signed in (the token is unknown): cellfab login", "authorization", 401
            )
        user = self._s.users[entry.user_id]
        if not user.enabled or user.locked:
            raise RequestRefused(
                f"user {user.name} is {'disabled' if not user.enabled else 'locked'}",
                "authorization",
                401,
            )
        if entry.revoked:
            raise RequestRefused(
                "not signed in (the token was revoked): cellfab login", "authorization", 401
            )
        if entry.expires_at <= self.clock():
            raise RequestRefused("the sign-in expired: cellfab login again", "authorization", 401)
        return Session(user, digest_of(token), entry.expires_at)

    async def login(self, name: str, password: str) -> tuple[str, Session]:
        """A new token for ``name``; RequestRefused 401 (the same words for a wrong name
        and a wrong password), and the failure counted and audited."""
        user = self._find(name)
        if user is None:
            await anyio.to_thread.run_sync(self.hasher.dummy, password)
            await self._failed(name, None, "sign-in")
            raise RequestRefused(WRONG, "password", 401)
        stored = self._s.passwords[user.id]
        ok = await anyio.to_thread.run_sync(self.hasher.verify, stored, password)
        if not ok:
            await self._failed(name, user, "sign-in")
            raise RequestRefused(WRONG, "password", 401)
        if not user.enabled or user.locked:
            why = "disabled" if not user.enabled else "locked after failed sign-ins"
            await self.trail.record(
                Entry(user_actor(user), "auth.signin_refused", "user", name, reason=why)
            )
            raise RequestRefused(
                f"user {name} is {why}: an admin must "
                f"{'enable' if not user.enabled else 'unlock'} it",
                "name",
                401,
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = digest_of(token)
        now = self.clock()
        expires = now + self.token_seconds
        rehash = self.hasher.needs_rehash(stored)
        new_hash = await anyio.to_thread.run_sync(self.hasher.hash, password) if rehash else None

        def work(conn: sqlite3.Connection) -> tuple[None, list[Entry]]:
            conn.execute(
                "INSERT INTO tokens (digest, user_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
                (digest, user.id, now, expires),
            )
            conn.execute("UPDATE users SET failed = 0 WHERE id = ?", (user.id,))
            if new_hash is not None:
                conn.execute("UPDATE users SET password = ? WHERE id = ?", (new_hash, user.id))
            return None, [
                Entry(
                    user_actor(user),
                    "auth.signin",
                    "user",
                    user.name,
                    field="session",
                    new={"expires_at": _iso(expires), "token": digest[:12]},
                    reason="sign-in",
                )
            ]

        await self.trail.record(work=work)
        self._s.tokens[digest] = _Token(user.id, expires)
        self._apply(replace(user, failed=0), new_hash)
        log.info("signed_in", user=user.name, expires=_iso(expires))
        return token, Session(self._s.users[user.id], digest, expires)

    async def logout(self, session: Session) -> None:
        now = self.clock()

        def work(conn: sqlite3.Connection) -> tuple[None, list[Entry]]:
            conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE digest = ? AND revoked_at IS NULL",
                (now, session.digest),
            )
            return None, [
                Entry(
                    session.actor(),
                    "auth.signout",
                    "user",
                    session.name,
                    field="session",
                    old={"token": session.digest[:12]},
                    reason="sign-out",
                )
            ]

        await self.trail.record(work=work)
        if (t := self._s.tokens.get(session.digest)) is not None:
            t.revoked = True

    async def signer(self, session: Session, password: str, meaning: str) -> Signing:
        """The signing of ``session``'s user once the re-entered password matches;
        RequestRefused 403 (field ``password``) otherwise, counted like a failed sign-in."""
        user = self._s.users[session.user.id]
        stored = self._s.passwords[user.id]
        if not await anyio.to_thread.run_sync(self.hasher.verify, stored, password):
            await self._failed(user.name, user, "signature")
            raise RequestRefused(
                "the password does not match: not signed (it counts as a failed sign-in)",
                "password",
                403,
            )
        return Signing(Signer(user.id, user.name, user.full_name), meaning)

    async def _failed(self, name: str, user: User | None, what: str) -> None:
        at = utc_now()

        def work(conn: sqlite3.Connection) -> tuple[tuple[int, bool], list[Entry]]:
            actor = Actor(name, user.id if user else None)
            if user is None:
                return (0, False), [
                    Entry(
                        actor,
                        "auth.signin_failed",
                        "user",
                        name,
                        reason=f"{what}: no such user",
                        at=at,
                    )
                ]
            row = conn.execute(
                "SELECT failed, locked FROM users WHERE id = ?", (user.id,)
            ).fetchone()
            failed, was_locked = int(row[0]), bool(row[1])
            if was_locked:
                return (failed, True), [
                    Entry(
                        actor, "auth.signin_failed", "user", name, reason=f"{what}: locked", at=at
                    )
                ]
            locks = failed + 1 >= MAX_FAILED
            conn.execute(
                "UPDATE users SET failed = ?, locked = ?, changed_at = ? WHERE id = ?",
                (failed + 1, int(locks), at, user.id),
            )
            if locks:
                conn.execute(
                    "UPDATE tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                    (self.clock(), user.id),
                )
            entries = [
                Entry(
                    actor,
                    "auth.signin_failed",
                    "user",
                    name,
                    field="failed",
                    old=failed,
                    new=failed + 1,
                    reason=f"{what}: wrong password",
                    at=at,
                )
            ]
            if locks:
                entries.append(
                    Entry(
                        Actor("system"),
                        "auth.locked",
                        "user",
                        name,
                        field="locked",
                        old=False,
                        new=True,
                        reason=f"{MAX_FAILED} failed sign-ins in a row",
                        at=at,
                    )
                )
            return (failed + 1, locks), entries

        failed, locked = await self.trail.record(work=work)
        if user is not None:
            self._apply(
                replace(self._s.users[user.id], failed=failed, locked=locked, changed_at=at)
            )
        detail = f"{what}: wrong password for {name!r}" + (
            " (no such user)" if user is None else ""
        )
        self._security("signin_failed", name, user, failed, detail, at)
        if locked and user is not None and not user.locked:
            log.warning("account_locked", user=name, failed=failed)
            self._security(
                "account_locked", name, user, failed, f"{MAX_FAILED} failed sign-ins in a row", at
            )

    def _security(
        self, kind: Any, name: str, user: User | None, failed: int, detail: str, at: str
    ) -> None:
        event = SecurityEvent(kind, name, user.id if user else None, failed, detail, at)
        self.publish(BUS_KIND, event.as_bus())

    # ------------------------------------------------------------------ admin
    async def add(
        self,
        act: Act,
        name: str,
        full_name: str,
        roles: Iterable[str],
        password: str,
        *,
        first: bool = False,
    ) -> User:
        """A new user; ``first``: only when there is no user at all (the first admin)."""
        check_name(name)
        wanted = check_roles(roles)
        check_password(name, password)
        _need_reason(act.reason)
        if not full_name.strip():
            raise RequestRefused("a user has a printed name (full name)", "full_name", 422)
        hashed = await anyio.to_thread.run_sync(self.hasher.hash, password)
        at = utc_now()

        def work(conn: sqlite3.Connection) -> tuple[User, list[Entry]]:
            if first and conn.execute("SELECT 1 FROM users LIMIT 1").fetchone():
                raise RequestRefused(
                    "there are users already: the first admin is made once, on an empty "
                    "journal; an admin adds users (cellfab user add, signed in)",
                    "",
                    409,
                )
            if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise RequestRefused(
                    f"user name {name!r} is taken (names are never reused)", "name", 409
                )
            cur = conn.execute(
                "INSERT INTO users (name, full_name, roles, password, enabled, created_at, "
                "changed_at) VALUES (?, ?, ?, ?, 1, ?, ?)",
                (name, full_name, json.dumps(sorted(wanted)), hashed, at, at),
            )
            user = User(int(cur.lastrowid or 0), name, full_name, wanted, True, 0, False, at, at)
            new = {k: v for k, v in user.public().items() if k not in ("failed", "changed_at")}
            return user, [
                Entry(act.actor, "user.add", "user", name, new=new, reason=act.reason, at=at)
            ]

        user: User = await self.trail.record(work=work)
        self._apply(user, hashed)
        log.info("user_added", user=name, roles=sorted(wanted), by=act.actor.name)
        return user

    async def set_enabled(self, act: Act, name: str, enabled: bool) -> User:
        return await self._update(
            act, name, "enabled", enabled, "user.enable" if enabled else "user.disable"
        )

    async def unlock(self, act: Act, name: str) -> User:
        return await self._update(act, name, "locked", False, "user.unlock")

    async def set_roles(self, act: Act, name: str, roles: Iterable[str]) -> User:
        wanted = check_roles(roles)
        if act.actor.user_id is not None and act.actor.user_id == self.user(name).id:
            # an admin is not implicitly QA (issue #11): nor may one make oneself QA, or
            # anything else; the change is another admin's to make, and audited as theirs
            raise RequestRefused(
                f"{name} cannot change their own roles; another admin must", "name", 403
            )
        return await self._update(act, name, "roles", wanted, "user.roles")

    async def passwd(
        self, act: Act, name: str, password: str, *, old: str | None = None, keep: str = ""
    ) -> User:
        """A new password; ``old`` (one's own) must match; the user's other tokens are
        revoked (``keep``: the digest of the session that asked)."""
        user = self.user(name)
        check_password(name, password)
        if old is not None and not await anyio.to_thread.run_sync(
            self.hasher.verify, self._s.passwords[user.id], old
        ):
            await self._failed(name, user, "password change")
            raise RequestRefused("the old password does not match", "old_password", 403)
        hashed = await anyio.to_thread.run_sync(self.hasher.hash, password)
        updated = await self._update(act, name, "password", hashed, "user.passwd", keep=keep)
        self._s.passwords[user.id] = hashed
        return updated

    async def _update(
        self, act: Act, name: str, what: str, value: Any, action: str, keep: str = ""
    ) -> User:
        _need_reason(act.reason)
        user = self.user(name)
        at = utc_now()
        now = self.clock()

        def work(conn: sqlite3.Connection) -> tuple[User, list[Entry]]:
            row = conn.execute(
                f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user.id,)
            ).fetchone()
            current = _user(row)
            changes: dict[str, Any] = {"changed_at": at}
            old: Any
            new: Any
            if what == "password":
                changes["password"] = value
                old, new = None, "changed"
            elif what == "roles":
                changes["roles"] = json.dumps(sorted(value))
                old, new = sorted(current.roles), sorted(value)
            elif what == "locked":
                changes.update(locked=0, failed=0)
                old, new = current.locked, False
            else:
                changes["enabled"] = int(value)
                old, new = current.enabled, bool(value)
            _keep_an_admin(conn, current, what, value)
            sets = ", ".join(f"{k} = ?" for k in changes)
            conn.execute(f"UPDATE users SET {sets} WHERE id = ?", (*changes.values(), user.id))
            revoke = what == "password" or (what == "enabled" and not value)
            if revoke:
                conn.execute(
                    "UPDATE tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL "
                    "AND digest != ?",
                    (now, user.id, keep),
                )
            after = _user(
                conn.execute(
                    f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user.id,)
                ).fetchone()
            )
            return after, [
                Entry(
                    act.actor,
                    action,
                    "user",
                    name,
                    field=what,
                    old=old,
                    new=new,
                    reason=act.reason,
                    at=at,
                )
            ]

        updated: User = await self.trail.record(work=work)
        self._apply(updated)
        if what == "password":
            self._revoke_all(user.id, keep=keep)
        if what == "locked":
            self._security(
                "account_unlocked", name, updated, 0, f"unlocked by {act.actor.name}", at
            )
        log.info("user_changed", user=name, field=what, by=act.actor.name)
        return updated


def _keep_an_admin(conn: sqlite3.Connection, user: User, what: str, value: Any) -> None:
    loses = (what == "enabled" and not value) or (what == "roles" and "admin" not in value)
    if not loses or "admin" not in user.roles or not user.enabled:
        return
    admins = [
        u
        for u in (_user(row) for row in conn.execute(f"SELECT {USER_COLUMNS} FROM users"))
        if "admin" in u.roles and u.enabled and u.id != user.id
    ]
    if not admins:
        raise RequestRefused(
            f"{user.name} is the last enabled admin: add another admin first", "name", 409
        )


def user_actor(user: User) -> Actor:
    return Actor(user.name, user.id)


def _user(row: Sequence[Any]) -> User:
    return User(
        id=int(row[0]),
        name=str(row[1]),
        full_name=str(row[2]),
        roles=frozenset(json.loads(row[3])),
        enabled=bool(row[4]),
        failed=int(row[5]),
        locked=bool(row[6]),
        created_at=str(row[7]),
        changed_at=str(row[8]),
    )


def _reader(trail: AuditTrail) -> sqlite3.Connection:
    return files.connect_ro(trail.path)
