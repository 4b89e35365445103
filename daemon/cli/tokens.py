"""The sign-in token on the user's side: ``$XDG_CONFIG_HOME/cellfab/token`` (else
``~/.config/cellfab/token``), one JSON object of API URL -> {token, user, expires_at}.

Written with mode 0600 in a folder made 0700, through a temporary file renamed into
place; read only when it is the user's own and nobody else may read it (a token file
readable by others is refused, and the message says how to fix it), and only for the
API URL it was issued by, so a token is never sent to another daemon.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

__all__ = ["TokenFileError", "forget", "load", "path", "save"]


class TokenFileError(Exception):
    """The token file exists but must not be used (permissions, owner, content)."""


def path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cellfab" / "token"


def _read(p: Path) -> dict[str, Any]:
    try:
        st = p.stat()
    except FileNotFoundError:
        return {}
    if st.st_uid != os.getuid():
        raise TokenFileError(f"{p} belongs to another user (uid {st.st_uid}): remove it")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise TokenFileError(
            f"{p} may be read by others (mode {stat.S_IMODE(st.st_mode):04o}): remove it and "
            "sign in again (cellfab login writes it with mode 0600)"
        )
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokenFileError(f"{p} is not a cellfab token file ({exc}): remove it") from None
    if not isinstance(data, dict):
        raise TokenFileError(f"{p} is not a cellfab token file: remove it")
    return data


def load(url: str) -> dict[str, Any] | None:
    """The sign-in kept for the API at ``url`` (``{"token", "user", "expires_at"}``)."""
    entry = _read(path()).get(url)
    return entry if isinstance(entry, dict) and isinstance(entry.get("token"), str) else None


def _write(data: dict[str, Any]) -> Path:
    p = path()
    p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = p.with_name(f".token-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, json.dumps(data, indent=2, sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, p)
    return p


def save(url: str, token: str, user: str, expires_at: str) -> Path:
    data = _read(path())
    data[url] = {"token": token, "user": user, "expires_at": expires_at}
    return _write(data)


def forget(url: str) -> None:
    data = _read(path())
    if data.pop(url, None) is not None:
        _write(data)
