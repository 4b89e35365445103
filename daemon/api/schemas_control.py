"""The control plane's API bodies: sign-in, users, the audit trail and its signatures,
the recipe lifecycle (as strict as ``daemon.api.schemas``, whose bases they use)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from daemon.api.schemas import (
    _PRINTABLE,
    NAME_MAX,
    RECIPE_TEXT_MAX,
    Password,
    Reason,
    Role,
    _In,
    _Out,
)

UserName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=NAME_MAX, pattern=_PRINTABLE),
    Field(description="A user name (as given at sign-in)"),
]
PrintedName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=_PRINTABLE),
    Field(description="The printed name shown in signatures"),
]
Roles = Annotated[list[Role], Field(min_length=1, max_length=4)]


# ----------------------------------------------------------------------------- sign-in
class LoginIn(_In):
    name: UserName
    password: Password


class UserOut(_Out):
    id: int
    name: str
    full_name: str
    roles: list[str]
    enabled: bool
    locked: bool
    failed: int = Field(description="Failed sign-ins in a row (5 lock the account)")
    created_at: str
    changed_at: str


class LoginOut(_Out):
    token: str = Field(description="Send as 'Authorization: Bearer TOKEN'; keep it secret")
    expires_at: str = Field(description="UTC, ISO 8601")
    user: UserOut


class WhoAmIOut(_Out):
    user: UserOut
    expires_at: str


class OwnPasswordIn(_In):
    old_password: Password
    password: Password
    reason: Reason


# ----------------------------------------------------------------------------- users
class UserIn(_In):
    name: UserName
    full_name: PrintedName
    roles: Roles
    password: Password
    reason: Reason


class ReasonIn(_In):
    reason: Reason


class PasswordIn(_In):
    password: Password
    reason: Reason


class RolesIn(_In):
    roles: Roles
    reason: Reason


# ----------------------------------------------------------------------------- recipes
class SubmitIn(_In):
    text: Annotated[str, StringConstraints(max_length=RECIPE_TEXT_MAX)] = Field(
        description="The recipe's YAML text; its hash is what is submitted"
    )
    filename: Annotated[
        str, StringConstraints(min_length=1, max_length=255, pattern=_PRINTABLE)
    ] = "<posted>"
    reason: Reason


class SignIn(_In):
    password: Password
    reason: Reason


class LifecycleOut(_Out):
    seq: int
    recipe_hash: str
    recipe_name: str
    recipe_version: str
    status: str
    user_name: str
    at: str
    reason: str


# ----------------------------------------------------------------------------- audit
class SignatureOut(_Out):
    meaning: str
    user_id: int
    user_name: str
    printed_name: str
    at: str
    sha256: str = Field(description="sha256 of the signed manifest (canonical JSON)")
    manifest: dict[str, Any] = Field(description="What was signed: meaning, object, content")
    valid: bool = Field(description="The signed record is unchanged (checked on this read)")
    problem: str = ""


class AuditRowOut(_Out):
    seq: int
    hash: str
    at: str
    actor: str
    actor_id: int | None
    role: str
    action: str
    object_type: str
    object_id: str
    field: str
    old: Any
    new: Any
    reason: str
    batch_id: str
    ref: dict[str, Any] | None
    signature: SignatureOut | None
