"""A journal with a real audit trail: users (one signed in), a recipe submitted and
approved (signed), a batch created, started and stopped (signed), made through the
same code the daemon uses (Directory, RecipeLifecycle, BatchAuditor)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from daemon.audit.batches import BatchAuditor
from daemon.audit.entries import Act, Actor
from daemon.audit.trail import AuditTrail
from daemon.auth.directory import Directory
from daemon.auth.passwords import Hasher
from daemon.batch.machine import apply, created
from daemon.journal import records as r
from daemon.journal.store import Journal
from daemon.lifecycle import RecipeLifecycle
from daemon.recipe import dump_recipe, load_recipe
from tests.support.daemon import LIBRARY, PASSWORD

CHEAP = Hasher(1, 1024, 1)
BATCH = "B0001-TST"


@dataclass
class Made:
    path: Path
    recipe_hash: str
    stop_seq: int  # the journal seq of the signed Stop


async def make(path: Path) -> Made:
    recipe = load_recipe(LIBRARY / "qc_only.yaml")
    async with Journal.open(path) as journal:
        trail = AuditTrail(journal)
        users = Directory(trail, hasher=CHEAP)
        setup = Act(Actor("local:test"), "set up")
        await users.add(setup, "admin1", "Ada Min", ["admin"], PASSWORD, first=True)
        admin = Act(Actor("admin1", 1, "admin"), "staff")
        await users.add(admin, "sup1", "Sam Upton", ["supervisor"], PASSWORD)
        await users.add(admin, "qa1", "Quinn Adams", ["qa"], PASSWORD)
        _t, sup = await users.login("sup1", PASSWORD)
        _t, qa = await users.login("qa1", PASSWORD)
        lifecycle = RecipeLifecycle(trail)
        await lifecycle.submit(recipe, Act(sup.actor("supervisor"), "new process"))
        signing = await users.signer(qa, PASSWORD, "approved")
        await lifecycle.approve(recipe.hash, Act(qa.actor("qa"), "reviewed", signing))

        auditor = BatchAuditor(trail)
        born = r.BatchCreated(
            batch_id=BATCH,
            recipe_name=recipe.name,
            recipe_version=recipe.version,
            recipe_hash=recipe.hash,
            recipe_text=dump_recipe(recipe),
            cartridge_id="C-1",
            by="sup1",
            at=1.0,
        )
        b = created(born)
        act = Act(sup.actor("supervisor"), "a patient")
        await journal.append(born, then=auditor.then_for(None, b, [born], act))
        for command, reason, meaning in (("Start", "created", None), ("Stop", "end", "stopped")):
            rec = r.CommandIssued(
                batch_id=BATCH, command=command, accepted=True, by="sup1", reason=reason, at=2.0
            )
            after = apply(b, rec)
            signing = await users.signer(sup, PASSWORD, meaning) if meaning else None
            act = Act(sup.actor("supervisor"), reason, signing)
            [seq] = await journal.append(rec, then=auditor.then_for(b, after, [rec], act))
            b = after
    return Made(path, recipe.hash, seq)
