"""The recipe lifecycle: a recipe's status is a record the daemon holds, by hash.

This module owns the statuses (decision 0084) and the rules between them::

    draft --submit--> submitted --approve (QA, e-signed, not the submitter)--> approved
                          \\--retire (QA, e-signed)--> retired <--retire-- approved

``draft`` is every hash without a row: what a file's ``approval:`` says does not count
(a file that says ``approved`` without a record is a draft). Each change is an
append-only ``recipe_lifecycle`` row (hash, name, version, status, who, when, why, and
at submission the canonical recipe text) with its audit row in one transaction; the
check of the current status runs in the journal's writer thread, atomic with the row.
Approval and retirement are signed (meanings approved, retired): the signature binds
the lifecycle row (``daemon.audit.signatures``). A retired hash is final.

``RecipeLifecycle.status(hash)`` answers from memory (loaded at start, updated after
each commit): the engine's start check and the library's listing ask it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog

from daemon.audit.chain import utc_now
from daemon.audit.entries import Act, Entry
from daemon.audit.errors import RequestRefused
from daemon.audit.signatures import SignatureDraft, register_deriver
from daemon.audit.trail import AuditTrail
from daemon.journal import files
from daemon.recipe import Recipe, dump_recipe

__all__ = ["STATUSES", "LifecycleRow", "RecipeLifecycle"]

log = structlog.get_logger("cellfab.recipes")

STATUSES: Final = ("draft", "submitted", "approved", "retired")
# status -> (the statuses it may come from, the signature meaning it needs or "")
RULES: Final[dict[str, tuple[frozenset[str], str]]] = {
    "submitted": (frozenset({"draft"}), ""),
    "approved": (frozenset({"submitted"}), "approved"),
    "retired": (frozenset({"submitted", "approved"}), "retired"),
}
VERBS: Final = {"submitted": "submit", "approved": "approve", "retired": "retire"}
COLUMNS: Final = (
    "seq, recipe_hash, recipe_name, recipe_version, status, user_id, user_name, at, reason"
)


@dataclass(frozen=True, slots=True)
class LifecycleRow:
    seq: int
    recipe_hash: str
    recipe_name: str
    recipe_version: str
    status: str
    user_id: int
    user_name: str
    at: str
    reason: str


class RecipeLifecycle:
    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail
        self._latest: dict[str, LifecycleRow] = {}
        self._history: dict[str, list[LifecycleRow]] = {}

    def load(self) -> None:
        """Read every lifecycle row (at start-up, after the journal is open)."""
        with contextlib.closing(files.connect_ro(self.trail.path)) as conn:
            rows = [
                LifecycleRow(*row)
                for row in conn.execute(f"SELECT {COLUMNS} FROM recipe_lifecycle ORDER BY seq")
            ]
        self._latest.clear()
        self._history.clear()
        for row in rows:
            self._remember(row)

    def _remember(self, row: LifecycleRow) -> None:
        self._latest[row.recipe_hash] = row
        self._history.setdefault(row.recipe_hash, []).append(row)

    def status(self, recipe_hash: str) -> str:
        row = self._latest.get(recipe_hash)
        return "draft" if row is None else row.status

    def history(self, recipe_hash: str) -> list[LifecycleRow]:
        return list(self._history.get(recipe_hash, ()))

    def by_status(self) -> Mapping[str, LifecycleRow]:
        return dict(self._latest)

    # ------------------------------------------------------------------ changes
    async def submit(self, recipe: Recipe, act: Act) -> LifecycleRow:
        return await self._change(recipe.hash, "submitted", act, recipe)

    async def approve(self, recipe_hash: str, act: Act) -> LifecycleRow:
        return await self._change(recipe_hash, "approved", act)

    async def retire(self, recipe_hash: str, act: Act) -> LifecycleRow:
        return await self._change(recipe_hash, "retired", act)

    async def _change(
        self, recipe_hash: str, status: str, act: Act, recipe: Recipe | None = None
    ) -> LifecycleRow:
        sources, meaning = RULES[status]
        if not act.reason.strip():
            raise RequestRefused(
                "a reason is required for every change a person makes", "reason", 422
            )
        if meaning and (act.signing is None or act.signing.meaning != meaning):
            raise RequestRefused(
                f"to {VERBS[status]} a recipe needs an electronic signature", "password", 422
            )
        user_id = act.actor.user_id
        if user_id is None:
            raise RequestRefused("a recipe's status is changed by a signed-in user", "", 401)
        at = utc_now()

        def work(conn: sqlite3.Connection) -> tuple[LifecycleRow, list[Entry]]:
            rows = conn.execute(
                f"SELECT {COLUMNS}, recipe_text FROM recipe_lifecycle WHERE recipe_hash = ? "
                "ORDER BY seq",
                (recipe_hash,),
            ).fetchall()
            current = rows[-1][4] if rows else "draft"
            if recipe is None and not rows:
                raise RequestRefused(
                    f"no recipe with hash {recipe_hash} was submitted", "sha256", 404
                )
            if current not in sources:
                raise RequestRefused(
                    f"recipe {recipe_hash[:12]} is {current}; only a recipe that is "
                    f"{' or '.join(sorted(sources))} can be {status}",
                    "sha256",
                    409,
                )
            if status == "approved":
                submitters = {row[6] for row in rows if row[4] == "submitted"}
                if act.actor.name in submitters:
                    raise RequestRefused(
                        f"two-person rule: {act.actor.name} submitted this recipe; "
                        "its approval needs someone else",
                        "user",
                        403,
                    )
            name = recipe.name if recipe else rows[-1][2]
            version = recipe.version if recipe else rows[-1][3]
            text = dump_recipe(recipe) if recipe else rows[0][9]
            cur = conn.execute(
                "INSERT INTO recipe_lifecycle (recipe_hash, recipe_name, recipe_version, "
                "status, user_id, user_name, at, reason, recipe_text) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (recipe_hash, name, version, status, user_id, act.actor.name, at, act.reason, text),
            )
            seq = int(cur.lastrowid or 0)
            row = LifecycleRow(
                seq, recipe_hash, name, version, status, user_id, act.actor.name, at, act.reason
            )
            signature = None
            if meaning and act.signing is not None:
                signature = SignatureDraft(act.signing, "recipe", recipe_hash, _content(row))
            entry = Entry(
                act.actor,
                f"recipe.{VERBS[status]}",
                "recipe",
                recipe_hash,
                field="status",
                old=current,
                new=status,
                reason=act.reason,
                ref={"table": "recipe_lifecycle", "seq": seq},
                signature=signature,
                at=at,
            )
            return row, [entry]

        row: LifecycleRow = await self.trail.record(work=work)
        self._remember(row)
        log.info(
            "recipe_status",
            recipe=row.recipe_name,
            version=row.recipe_version,
            sha256=recipe_hash,
            status=status,
            by=act.actor.name,
        )
        return row


def _content(row: LifecycleRow) -> dict[str, Any]:
    return {
        "recipe_hash": row.recipe_hash,
        "recipe_name": row.recipe_name,
        "recipe_version": row.recipe_version,
        "status": row.status,
    }


def _derive_recipe(conn: sqlite3.Connection, body: Mapping[str, Any]) -> dict[str, Any] | str:
    ref = body.get("ref") or {}
    if ref.get("table") != "recipe_lifecycle":
        return "it refers to no lifecycle row"
    found = conn.execute(
        f"SELECT {COLUMNS} FROM recipe_lifecycle WHERE seq = ?", (ref.get("seq"),)
    ).fetchone()
    if found is None:
        return f"its lifecycle row {ref.get('seq')} is missing"
    return _content(LifecycleRow(*found))


register_deriver("recipe", _derive_recipe)
