"""Users, sign-in, lockout, tokens and signature passwords, on a real journal (no
daemon): ``Directory`` as the API uses it, with a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from daemon.audit.entries import Act, Actor
from daemon.audit.errors import RequestRefused
from daemon.audit.signatures import SignatureDraft, Signer, Signing, seal, verify_signature
from daemon.audit.trail import AuditTrail
from daemon.auth.directory import MAX_FAILED, Directory
from daemon.auth.passwords import policy_problem
from daemon.journal.store import Journal
from tests.audit.trailsample import CHEAP
from tests.support.daemon import PASSWORD

ADMIN = Act(Actor("admin1", 1, "admin"), "staff change")


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    directory: Directory
    trail: AuditTrail
    clock: Clock
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def actions(self) -> list[str]:
        return [row.action for row in self.trail.rows()]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with Journal.open(tmp_path / "journal.sqlite") as journal:
        trail = AuditTrail(journal)
        clock = Clock()
        events: list[tuple[str, dict[str, Any]]] = []
        directory = Directory(
            trail,
            hasher=CHEAP,
            token_hours=12,
            clock=clock,
            publish=lambda kind, data: events.append((kind, data)),
        )
        await directory.add(
            Act(Actor("local:root"), "install"),
            "admin1",
            "Ada Min",
            ["admin"],
            PASSWORD,
            first=True,
        )
        await directory.add(ADMIN, "op1", "Olga Perez", ["operator"], PASSWORD)
        yield World(directory, trail, clock, events)


async def test_five_failed_sign_ins_lock_the_account_raise_a_security_event_and_an_admin_unlocks(
    world: World,
) -> None:
    d = world.directory
    _token, _session = await d.login("op1", PASSWORD)
    for attempt in range(1, MAX_FAILED + 1):
        with pytest.raises(RequestRefused) as refused:
            await d.login("op1", "not the password")
        assert refused.value.status == 401 and "wrong" in str(refused.value)
        assert d.user("op1").failed == attempt
    assert d.user("op1").locked
    locked = [e for k, e in world.events if k == "security" and e["kind"] == "account_locked"]
    assert locked == [
        {
            "kind": "account_locked",
            "user": "op1",
            "user_id": 2,
            "failed": MAX_FAILED,
            "detail": f"{MAX_FAILED} failed sign-ins in a row",
            "at": locked[0]["at"],
        }
    ]
    assert world.actions().count("auth.signin_failed") == MAX_FAILED
    assert "auth.locked" in world.actions()
    with pytest.raises(RequestRefused, match="locked"):  # the right password: told why
        await d.login("op1", PASSWORD)
    with pytest.raises(RequestRefused, match="locked"):  # its sessions ended
        d.authenticate(_token)
    with pytest.raises(RequestRefused, match="reason"):
        await d.unlock(Act(ADMIN.actor, ""), "op1")
    await d.unlock(ADMIN, "op1")
    assert not d.user("op1").locked and d.user("op1").failed == 0
    assert world.actions()[-1] == "user.unlock"
    assert world.events[-1][1]["kind"] == "account_unlocked"
    token, _ = await d.login("op1", PASSWORD)
    assert d.authenticate(token).name == "op1"


async def test_a_wrong_user_name_reads_like_a_wrong_password_and_is_audited(world: World) -> None:
    with pytest.raises(RequestRefused) as refused:
        await world.directory.login("nobody", PASSWORD)
    assert str(refused.value) == "the user name or the password is wrong"
    last = world.trail.rows()[-1]
    assert (last.action, last.object_id) == ("auth.signin_failed", "nobody")


async def test_tokens_expire_are_revoked_and_are_kept_only_as_a_hash(
    world: World, tmp_path: Path
) -> None:
    d = world.directory
    token, session = await d.login("op1", PASSWORD)
    other, _ = await d.login("op1", PASSWORD)
    assert d.authenticate(token).user.id == session.user.id
    stored = _bytes_of(tmp_path)
    assert token.encode() not in stored and session.digest.encode() in stored
    await d.logout(session)
    with pytest.raises(RequestRefused, match="revoked"):
        d.authenticate(token)
    assert d.authenticate(other).name == "op1"  # another sign-in goes on
    world.clock.now += 12 * 3600 + 1
    with pytest.raises(RequestRefused, match="expired") as expired:
        d.authenticate(other)
    assert expired.value.status == 401
    d.load()  # from the database, as after a restart: neither comes back
    for t in (token, other):
        with pytest.raises(RequestRefused):
            d.authenticate(t)


def _bytes_of(folder: Path) -> bytes:
    """The journal and its -wal, as a reader of the disk sees them."""
    return b"".join(p.read_bytes() for p in folder.glob("journal.sqlite*") if p.suffix != ".lock")


async def test_disabled_users_cannot_sign_in_and_their_tokens_end(world: World) -> None:
    d = world.directory
    token, _ = await d.login("op1", PASSWORD)
    await d.set_enabled(ADMIN, "op1", False)
    with pytest.raises(RequestRefused, match="disabled"):
        d.authenticate(token)
    with pytest.raises(RequestRefused, match="disabled"):
        await d.login("op1", PASSWORD)
    row = world.trail.rows(action_prefix="user.disable")[-1]
    assert (row.field, row.old, row.new, row.reason) == ("enabled", True, False, "staff change")


async def test_user_ids_and_names_are_never_reused_and_users_never_deleted(world: World) -> None:
    d = world.directory
    await d.set_enabled(ADMIN, "op1", False)
    with pytest.raises(RequestRefused, match="taken") as taken:
        await d.add(ADMIN, "op1", "Someone Else", ["operator"], PASSWORD)
    assert taken.value.status == 409
    fresh = await d.add(ADMIN, "op2", "Otto Second", ["operator"], PASSWORD)
    assert fresh.id == 3 and [u.id for u in d.users()] == [1, 2, 3]
    with pytest.raises(RequestRefused, match="first admin"):
        await d.add(ADMIN, "admin2", "Al", ["admin"], PASSWORD, first=True)


async def test_the_last_admin_cannot_be_disabled_or_lose_the_role(world: World) -> None:
    d = world.directory
    with pytest.raises(RequestRefused, match="last enabled admin"):
        await d.set_enabled(ADMIN, "admin1", False)
    with pytest.raises(RequestRefused, match="cannot change their own roles"):
        await d.set_roles(ADMIN, "admin1", ["qa"])  # the only admin: nobody else may
    second = await d.add(ADMIN, "admin2", "Al Second", ["admin"], PASSWORD)
    with pytest.raises(RequestRefused, match="cannot change their own roles") as own:
        await d.set_roles(ADMIN, "admin1", ["admin", "qa"])  # an admin making itself QA
    assert own.value.status == 403 and d.user("admin1").roles == {"admin"}
    other = Act(Actor("admin2", second.id, "admin"), "staff change")
    assert (await d.set_roles(other, "admin1", ["qa"])).roles == {"qa"}


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", "at least 12"),
        ("op1op1op1op1op1", "user name"),
        ("xxOP1xxxxxxxxx", "user name"),
        ("aaaaaaaaaaaaaa", "one character"),
        ("x" * 300, "at most 256"),
        ("correct horse battery", None),
    ],
)
def test_the_password_policy(password: str, problem: str | None) -> None:
    found = policy_problem("op1", password)
    assert (found is None) if problem is None else (problem in (found or "")), found


async def test_a_signature_needs_the_password_and_a_wrong_one_counts(world: World) -> None:
    d = world.directory
    _token, session = await d.login("op1", PASSWORD)
    signing = await d.signer(session, PASSWORD, "stopped")
    assert signing.signer == Signer(2, "op1", "Olga Perez") and signing.meaning == "stopped"
    with pytest.raises(RequestRefused) as wrong:
        await d.signer(session, "nope nope nope", "stopped")
    assert (wrong.value.status, wrong.value.field) == (403, "password")
    assert d.user("op1").failed == 1


def test_a_signature_holds_for_its_record_and_not_for_an_altered_one() -> None:
    signing = Signing(Signer(7, "qa1", "Quinn Adams"), "approved", at="2026-01-01T00:00:00Z")
    content = {"recipe_hash": "ab" * 32, "recipe_name": "qc_only", "recipe_version": "1.0"}
    stored = seal(
        {
            "meaning": signing.meaning,
            "object_type": "recipe",
            "object_id": "ab" * 32,
            "signer": {"user_id": 7, "user_name": "qa1", "printed_name": "Quinn Adams"},
            "at": signing.at,
            "content": content,
        }
    )
    assert verify_signature(stored) and verify_signature(stored, content)
    assert not verify_signature(stored, {**content, "recipe_version": "1.1"})
    forged = {**stored, "manifest": {**stored["manifest"], "meaning": "retired"}}
    assert not verify_signature(forged)
    assert not verify_signature({"sha256": "x"})
    with pytest.raises(ValueError, match="meaning"):
        Signing(signing.signer, "liked")
    assert SignatureDraft(signing, "recipe", "x", content).bind_batch == ""
