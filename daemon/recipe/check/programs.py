"""Rule family "ICD programs": what op and sample steps ask of the instruments.

This module owns the rules that come from the ICD program table and the Cell Q panel
(``drivers.icd`` only): an op step names a program of the table (not ``sample``),
gives each of its parameters exactly once (values checked by ``params``), and binds
only outputs the program has; a sample step's volume fits the ``sample`` program, its
panel names known assays once each, ``culture_ml`` is a positive volume, and it binds
only results of assays in its panel. Bindings go to the variable table
(``bindings.bind``).
"""

from __future__ import annotations

from typing import Final

from daemon.recipe.check.bindings import bind
from daemon.recipe.check.context import Context, did_you_mean
from daemon.recipe.check.params import check_icd_value, param_ref
from daemon.recipe.models import OpStep, SampleStep
from daemon.recipe.names import SAMPLE_RESULTS, output_type
from drivers.icd import ASSAY_NAMES, PROGRAMS, Assay, ParamKind, ParamSpec

# The culture a sample comes from: not an ICD parameter, a volume for viable_cells_total.
CULTURE_ML: Final = ParamSpec("culture_ml", ParamKind.NUMBER, 0.001, 100000.0, unit="mL")


def check_op(ctx: Context, name: str, step: OpStep) -> None:
    path = ("steps", name)
    program = PROGRAMS.get(step.op)
    if step.op == "sample":
        ctx.error(
            (*path, "op"),
            "the sample program is run by a sample step",
            "write 'sample: {volume_ml: ..., panel: [...]}' instead of 'op: sample'",
        )
        return
    if program is None:
        offered = [p for p in PROGRAMS if p != "sample"]
        ctx.error(
            (*path, "op"),
            f"unknown program '{step.op}'",
            did_you_mean(step.op, PROGRAMS) + f"programs: {', '.join(offered)}",
        )
        return
    written = "params" in ctx.raw_step(name)
    for spec in program.params:
        if spec.name not in step.params:
            ctx.error(
                (*path, "params") if written else path,
                f"{step.op} needs the parameter {spec.name} ({spec.describe()})",
                f"{step.op} takes: {', '.join(program.param_names)}",
                key=not written,
            )
    for key, value in step.params.items():
        spec = program.param(key)
        if spec is None:
            ctx.error(
                (*path, "params", key),
                f"{step.op} has no parameter '{key}'",
                did_you_mean(key, program.param_names)
                + f"{step.op} takes: {', '.join(program.param_names)}",
                key=True,
            )
            continue
        check_icd_value(ctx, (*path, "params", key), spec, value)
    for var, output in step.bind.items():
        if output not in program.outputs:
            ctx.error(
                (*path, "bind", var),
                f"{step.op} has no output '{output}'",
                f"{step.op} outputs: {', '.join(program.outputs)}",
            )
            continue
        bind(ctx, var, output_type(output), "", name, output, (*path, "bind", var), "output")


def check_sample(ctx: Context, name: str, step: SampleStep) -> None:
    path = ("steps", name, "sample")
    volume = PROGRAMS["sample"].param("volume_ml")
    assert volume is not None
    check_icd_value(ctx, (*path, "volume_ml"), volume, step.sample.volume_ml)
    assays = _panel(ctx, name, step)
    culture = step.sample.culture_ml
    if culture is not None:
        ref, ok = param_ref(ctx, (*path, "culture_ml"), culture)
        if ok and ref is None and (why := CULTURE_ML.check(culture)) is not None:
            ctx.error((*path, "culture_ml"), why, "the culture volume in mL, above 0")
        elif ok and ref is not None and ctx.params[ref].type != "number":
            ctx.error((*path, "culture_ml"), f"parameter '{ref}' must be a number")
    for var, result in step.bind.items():
        bpath = ("steps", name, "bind", var)
        info = SAMPLE_RESULTS.get(result)
        if info is None:
            ctx.error(
                bpath,
                f"'{result}' is not an assay result",
                did_you_mean(result, SAMPLE_RESULTS) + f"results: {', '.join(SAMPLE_RESULTS)}",
            )
            continue
        assay, type_, unit, _meaning = info
        if assay not in assays and all(a in ASSAY_NAMES for a in step.sample.panel):
            assay_name = str(assay.name).lower()
            ctx.error(
                bpath,
                f"'{result}' comes from the {assay_name} assay, which is not in the panel",
                f"add {assay_name} to the panel",
            )
        if result == "viable_cells_total" and culture is None:
            ctx.error(
                bpath,
                "viable_cells_total needs the culture volume",
                "add 'culture_ml: <mL>' to the sample (cells per mL x culture_ml)",
            )
        bind(ctx, var, type_, unit, name, result, bpath, "assay")


def _panel(ctx: Context, name: str, step: SampleStep) -> set[Assay]:
    """The assays of a sample step's panel; unknown and repeated ones reported."""
    path = ("steps", name, "sample", "panel")
    assays: set[Assay] = set()
    for i, assay in enumerate(step.sample.panel):
        if assay not in ASSAY_NAMES:
            ctx.error(
                (*path, i),
                f"unknown assay '{assay}'",
                did_you_mean(assay, ASSAY_NAMES) + f"assays: {', '.join(ASSAY_NAMES)}",
            )
        elif ASSAY_NAMES[assay] in assays:
            ctx.error((*path, i), f"assay '{assay}' is twice in the panel")
        else:
            assays.add(ASSAY_NAMES[assay])
    return assays
