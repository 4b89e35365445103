"""The API's routes, one module per resource; ``Api`` gives a route its daemon, and
``signing_of`` the signature a body's re-entered password makes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from daemon.audit.errors import RequestRefused
from daemon.audit.signatures import Signing
from daemon.auth.directory import Session
from daemon.supervisor import Daemon


def daemon_of(request: Request) -> Daemon:
    return request.app.state.daemon  # type: ignore[no-any-return]


Api = Annotated[Daemon, Depends(daemon_of)]


async def signing_of(api: Daemon, who: Session, password: str | None, meaning: str) -> Signing:
    """``who``'s signature with ``meaning`` once ``password`` matches (422 without one,
    403 for a wrong one, which counts as a failed sign-in)."""
    if not password:
        raise RequestRefused(
            f"this change is signed ({meaning}): re-enter your password", "password", 422
        )
    return await api.directory.signer(who, password, meaning)
