"""Electronic signatures (21 CFR Part 11, decision 0082): what is signed, and its check.

A signature is part of the audit row of the change it signs (``Entry.signature``), so
the hash chain covers it. It records the signer (user id, user name, printed name), the
UTC time, the meaning (``MEANINGS``) and a manifest: the canonical JSON of what was
signed (the object and its ``content``), and the manifest's sha256::

    {"manifest": {"meaning", "object_type", "object_id", "signer", "at", "content"},
     "sha256": sha256(canonical(manifest))}

Binding: ``content`` is rebuilt from the database by ``derive`` (per object type; the
alarms add theirs with ``register_deriver``), so a change of the signed record after
signing shows as an invalid signature (``verify_signature``):

* a batch (stopped, aborted, confirmed, released): the command's or confirmation's
  journal record (``ref``), and ``batch_seq`` and ``batch_digest``: the batch's last
  journal seq before the signature and a digest of all its records up to it, so an
  altered record of that batch's history invalidates every later signature of it;
* a recipe (approved, retired): its lifecycle row (hash, name, version, status).

The password check that makes a ``Signing`` is ``daemon.auth``'s; this module only
records and checks.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from daemon.audit.chain import canonical, utc_now

__all__ = [
    "MEANINGS",
    "SignatureDraft",
    "Signer",
    "Signing",
    "batch_binding",
    "derive",
    "register_deriver",
    "seal",
    "verify_signature",
]

MEANINGS: Final = ("approved", "retired", "released", "stopped", "aborted", "confirmed", "shelved")


@dataclass(frozen=True, slots=True)
class Signer:
    """A person whose password was just checked (``daemon.auth.Directory.signer``)."""

    user_id: int
    user_name: str
    printed_name: str


@dataclass(frozen=True, slots=True)
class Signing:
    """A signer and what their signature means; the object is added where it is signed."""

    signer: Signer
    meaning: str
    at: str = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if self.meaning not in MEANINGS:
            raise ValueError(f"signature meaning {self.meaning!r} is not one of {MEANINGS}")


@dataclass(frozen=True, slots=True)
class SignatureDraft:
    """A signing on an object: ``content`` is what is signed; ``bind_batch`` adds the
    batch's history up to the signature (``batch_binding``) in the writer thread."""

    signing: Signing
    object_type: str
    object_id: str
    content: Mapping[str, Any]
    bind_batch: str = ""

    def sealed(self, conn: sqlite3.Connection, upto: int) -> dict[str, Any]:
        """The signature as stored; ``upto``: the last journal seq before this append."""
        content = dict(self.content)
        if self.bind_batch:
            content.update(batch_binding(conn, self.bind_batch, upto))
        s = self.signing.signer
        manifest = {
            "meaning": self.signing.meaning,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "signer": {
                "user_id": s.user_id,
                "user_name": s.user_name,
                "printed_name": s.printed_name,
            },
            "at": self.signing.at,
            "content": content,
        }
        return seal(manifest)


def seal(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {"manifest": dict(manifest), "sha256": _sha(manifest)}


def _sha(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def verify_signature(stored: Mapping[str, Any], content: Mapping[str, Any] | None = None) -> bool:
    """Does the stored signature hold for ``content`` (the signed record as the database
    has it now; default: the content in the stored manifest)?"""
    try:
        manifest = dict(stored["manifest"])
        if content is not None:
            manifest["content"] = dict(content)
        return _sha(manifest) == stored["sha256"]
    except (KeyError, TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- binding
def batch_binding(conn: sqlite3.Connection, batch_id: str, upto: int) -> dict[str, Any]:
    """``batch_seq``: the batch's last journal seq at or before ``upto``;
    ``batch_digest``: a digest of every record of the batch up to it (seq, type, body)."""
    digest = hashlib.sha256(batch_id.encode())
    last = 0
    rows = conn.execute(
        "SELECT seq, type, body FROM records WHERE batch_id = ? AND seq <= ? ORDER BY seq",
        (batch_id, upto),
    )
    for seq, type_name, body in rows:
        digest.update(f"\n{seq}\n{type_name}\n{body}".encode())
        last = int(seq)
    return {"batch_seq": last, "batch_digest": digest.hexdigest()}


# --------------------------------------------------------------------------- derivers
# object_type -> (conn, the audit row's body) -> the signed content as the database
# has it now, or a text saying why it cannot be rebuilt
Deriver = Callable[[sqlite3.Connection, Mapping[str, Any]], "dict[str, Any] | str"]
_DERIVERS: dict[str, Deriver] = {}


def register_deriver(object_type: str, deriver: Deriver) -> None:
    """Teach ``derive`` how to rebuild the signed content of ``object_type`` objects."""
    _DERIVERS[object_type] = deriver


def derive(conn: sqlite3.Connection, body: Mapping[str, Any]) -> dict[str, Any] | str | None:
    """The signed content of the row's signature rebuilt from the database; a text
    when it cannot be; None when no deriver knows the object type (then only the
    manifest's own hash is checked)."""
    deriver = _DERIVERS.get(str(body.get("object_type", "")))
    return None if deriver is None else deriver(conn, body)
