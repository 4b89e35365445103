"""What the daemon holds, as the API's response models (``daemon.api.schemas``).

This module owns the conversions: a ``Batch`` (and its pinned recipe) to a summary or
a detail, the prompt a batch waits at, a journal record, a library entry, a recipe, a
diagnostic, the cell view's snapshot. It reads; it never changes anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from daemon.api import schemas as s
from daemon.batch.machine import Batch
from daemon.diagnostics import Diagnostic
from daemon.journal import records as r
from daemon.library import Entry
from daemon.recipe import Recipe
from daemon.recipe.models import step_kind


def _plain(value: Any) -> Any:
    """Mapping proxies and tuples as JSON-ready dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _fields(obj: Any) -> dict[str, Any]:
    """A dataclass's fields, JSON-ready (``dataclasses.asdict`` would deep-copy, and a
    mapping proxy cannot be copied)."""
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def prompt_of(batch: Batch, recipe: Recipe | None) -> s.PromptOut | None:
    """The confirm prompt ``batch`` waits at (None when it waits at none)."""
    if recipe is None or not batch.step or batch.confirmation is not None:
        return None
    if batch.step not in recipe.steps or recipe.kind(batch.step) != "confirm":
        return None
    step = recipe.steps[batch.step]
    return s.PromptOut(step=batch.step, visit=batch.step_visit, prompt=step.confirm, role=step.role)


def _summary_fields(batch: Batch, recipe: Recipe | None) -> dict[str, Any]:
    return {
        "batch_id": batch.batch_id,
        "recipe_name": batch.recipe_name,
        "recipe_version": batch.recipe_version,
        "recipe_hash": batch.recipe_hash,
        "cartridge_id": batch.cartridge_id,
        "priority": batch.priority,
        "state": batch.state,
        "step": batch.step,
        "step_visit": batch.step_visit,
        "shuttle": batch.shuttle,
        "location": batch.location,
        "outcome": batch.outcome,
        "outcome_reason": batch.outcome_reason,
        "held_by": batch.held_by,
        "hold_reason": batch.hold_reason,
        "unapproved": batch.unapproved,
        "created_at": batch.created_at,
        "created_by": batch.created_by,
        "updated_at": batch.updated_at,
        "deviation_count": len(batch.deviations),
        "waiting": prompt_of(batch, recipe),
    }


def batch_summary(batch: Batch, recipe: Recipe | None) -> s.BatchSummary:
    return s.BatchSummary(**_summary_fields(batch, recipe))


def batch_detail(batch: Batch, recipe: Recipe | None) -> s.BatchDetail:
    task = None if batch.task is None else s.TaskOut(**_fields(batch.task))
    return s.BatchDetail(
        **_summary_fields(batch, recipe),
        recipe_file=batch.recipe_file,
        params=_plain(batch.params),
        variables=_plain(batch.variables),
        visits=_plain(batch.visits),
        next_step=batch.next_step,
        last_step=batch.last_step,
        run=batch.run,
        task=task,
        jobs=[s.JobOut(**_fields(j)) for j in batch.jobs.values()],
        deviations=[s.DeviationOut(**_fields(d)) for d in batch.deviations],
        confirmation=None if batch.confirmation is None else _plain(batch.confirmation),
    )


def record(seq: int, rec: r.Record) -> s.RecordOut:
    data = {
        f.name: _plain(getattr(rec, f.name))
        for f in dataclasses.fields(rec)
        if f.name not in ("at", "pt")
    }
    return s.RecordOut(seq=seq, type=type(rec).__name__, at=rec.at, pt=rec.pt, data=data)


def diagnostic(d: Diagnostic) -> s.DiagnosticOut:
    return s.DiagnosticOut(
        file=d.file,
        line=d.line,
        column=d.column,
        message=d.message,
        path=d.path_text,
        hint=d.hint,
        severity=d.severity,
    )


def library_entry(entry: Entry) -> s.RecipeEntry:
    recipe = entry.recipe
    return s.RecipeEntry(
        file=entry.path,
        valid=recipe is not None,
        name=recipe.name if recipe else None,
        version=recipe.version if recipe else None,
        approval=recipe.doc.approval if recipe else None,
        sha256=recipe.hash if recipe else None,
        description=recipe.doc.description if recipe else "",
        diagnostics=[diagnostic(d) for d in entry.diagnostics],
    )


def recipe_detail(recipe: Recipe) -> s.RecipeDetail:
    doc = recipe.doc
    return s.RecipeDetail(
        name=recipe.name,
        version=recipe.version,
        description=doc.description,
        author=doc.author,
        approval=doc.approval,
        sha256=recipe.hash,
        file=recipe.filename,
        start=recipe.start,
        parameters=[
            s.ParameterOut(name=name, **p.model_dump(mode="json"))
            for name, p in recipe.parameters.items()
        ],
        steps=[
            s.StepOut(
                name=name,
                kind=step_kind(step) or "",
                definition=step.model_dump(mode="json", by_alias=True, exclude_defaults=True),
            )
            for name, step in recipe.steps.items()
        ],
    )


def instruments(snapshot: Mapping[str, Any]) -> s.InstrumentsOut:
    links = {
        name: s.LinkOut(up=view["up"], reason=view["reason"])
        for group in ("shuttles", "analyzers")
        for name, view in snapshot[group].items()
    }
    return s.InstrumentsOut(links=links, **snapshot)
