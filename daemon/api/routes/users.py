"""Users through the API (admin only): list, add, disable, enable, unlock, password,
roles. Every change carries a reason and is audited with its old and new value
(``daemon.auth.directory``); a user is never deleted and a name never reused."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from daemon.api import views
from daemon.api.access import SignedIn, acting_role
from daemon.api.routes import Api
from daemon.api.schemas import ErrorOut
from daemon.api.schemas_control import PasswordIn, ReasonIn, RolesIn, UserIn, UserOut
from daemon.audit.entries import Act
from daemon.auth.directory import Session

router = APIRouter(prefix="/users", tags=["users"])
Name = Annotated[str, Path(min_length=1, max_length=64, description="The user name")]
_E = {
    404: {"model": ErrorOut, "description": "No such user"},
    409: {"model": ErrorOut, "description": "Name taken, or the last admin"},
}


def _act(who: Session, action: str, reason: str) -> Act:
    return Act(who.actor(acting_role(who, action)), reason)


@router.get("", name="list_users")
async def list_users(api: Api) -> list[UserOut]:
    """Every user ever made (disabled ones too), by id."""
    return [views.user(u) for u in api.directory.users()]


@router.post("", name="add_user", status_code=201, responses=_E)
async def add_user(body: UserIn, api: Api, who: SignedIn) -> UserOut:
    """A new user with a password (the policy: 12 characters or more, not the name)."""
    user = await api.directory.add(
        _act(who, "user.add", body.reason), body.name, body.full_name, body.roles, body.password
    )
    return views.user(user)


@router.post("/{name}/disable", name="disable_user", responses=_E)
async def disable_user(name: Name, body: ReasonIn, api: Api, who: SignedIn) -> UserOut:
    """Disable a user: their sign-ins end and they cannot sign in (never deleted)."""
    return views.user(
        await api.directory.set_enabled(_act(who, "user.disable", body.reason), name, False)
    )


@router.post("/{name}/enable", name="enable_user", responses=_E)
async def enable_user(name: Name, body: ReasonIn, api: Api, who: SignedIn) -> UserOut:
    return views.user(
        await api.directory.set_enabled(_act(who, "user.enable", body.reason), name, True)
    )


@router.post("/{name}/unlock", name="unlock_user", responses=_E)
async def unlock_user(name: Name, body: ReasonIn, api: Api, who: SignedIn) -> UserOut:
    """Unlock a user locked after failed sign-ins (their count starts again)."""
    return views.user(await api.directory.unlock(_act(who, "user.unlock", body.reason), name))


@router.post("/{name}/password", name="reset_password", responses=_E)
async def reset_password(name: Name, body: PasswordIn, api: Api, who: SignedIn) -> UserOut:
    """Set a user's password (their sign-ins end)."""
    act = _act(who, "user.passwd", body.reason)
    return views.user(await api.directory.passwd(act, name, body.password))


@router.post("/{name}/roles", name="set_roles", responses=_E)
async def set_roles(name: Name, body: RolesIn, api: Api, who: SignedIn) -> UserOut:
    return views.user(
        await api.directory.set_roles(_act(who, "user.roles", body.reason), name, body.roles)
    )
