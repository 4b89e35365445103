"""``RequestRefused``: a person's request refused by the control plane, with the HTTP
status and the request field the API answers with (``daemon.api.errors``).

It is a ``TransactionRefused``, so a check made in the journal's writer thread (atomic
with the change it guards: a user name taken, a recipe already approved, a batch
already released) refuses its own append only and reaches the caller unchanged.
"""

from __future__ import annotations

from daemon.journal.errors import TransactionRefused

__all__ = ["RequestRefused"]


class RequestRefused(TransactionRefused):
    """``str(exc)`` says what and why; ``field`` names the part of the request at fault;
    ``status``: 401 not signed in, 403 not allowed (role, two-person rule, password),
    404 no such object, 409 not in this state, 422 invalid."""

    def __init__(self, message: str, field: str = "", status: int = 409) -> None:
        super().__init__(message)
        self.field = field
        self.status = status
