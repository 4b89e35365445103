"""Sign-in through the API: ``/auth/login`` (public), ``logout``, ``me``, ``password``.

A sign-in answers a bearer token (shown once; the daemon keeps only its sha256) that
expires after the site's ``auth.token_hours``; ``logout`` revokes the token the request
carries. A wrong name and a wrong password get the same 401; the fifth failure in a
row locks the account (``daemon.auth.directory``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response

from daemon.api import views
from daemon.api.access import SignedIn
from daemon.api.routes import Api
from daemon.api.schemas import ErrorOut
from daemon.api.schemas_control import LoginIn, LoginOut, OwnPasswordIn, UserOut, WhoAmIOut
from daemon.audit.entries import Act

router = APIRouter(prefix="/auth", tags=["auth"])


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@router.post(
    "/login",
    name="login",
    responses={401: {"model": ErrorOut, "description": "Wrong name or password, or locked"}},
)
async def login(body: LoginIn, api: Api) -> LoginOut:
    """Sign in: a bearer token for the other routes."""
    token, session = await api.directory.login(body.name, body.password)
    return LoginOut(token=token, expires_at=_iso(session.expires_at), user=views.user(session.user))


@router.post("/logout", name="logout", status_code=204)
async def logout(api: Api, who: SignedIn) -> Response:
    """Revoke the token this request carries."""
    await api.directory.logout(who)
    return Response(status_code=204)


@router.get("/me", name="whoami")
async def whoami(who: SignedIn) -> WhoAmIOut:
    """Who the token is, with which roles, until when."""
    return WhoAmIOut(user=views.user(who.user), expires_at=_iso(who.expires_at))


@router.post("/password", name="change_password")
async def change_password(body: OwnPasswordIn, api: Api, who: SignedIn) -> UserOut:
    """Change one's own password (the old one re-entered); other sign-ins end."""
    user = await api.directory.passwd(
        Act(who.actor(), body.reason),
        who.name,
        body.password,
        old=body.old_password,
        keep=who.digest,
    )
    return views.user(user)
