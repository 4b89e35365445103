"""The API's routes, one module per resource; ``Api`` gives a route its daemon."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from daemon.supervisor import Daemon


def daemon_of(request: Request) -> Daemon:
    return request.app.state.daemon  # type: ignore[no-any-return]


Api = Annotated[Daemon, Depends(daemon_of)]
