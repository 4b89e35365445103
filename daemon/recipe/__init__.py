"""Recipes: the YAML state machines batches execute, loaded, validated, hashed.

This package is the recipe language; this module is its public face, and everything
the daemon may use is exported here (``from daemon.recipe import ...``): the loader
(``load_recipe``, ``load_recipe_text``, ``read_recipe_file``, ``RecipeError``, and
``Limits``/``LIMITS``, the bounds of a load), the ``Recipe`` value and its
parameter resolution (``ParameterError``), the step models, the canonical hash
(``HASH_DOMAIN``, ``canonical_hash``, ``pinned_hashes``, ``dump_recipe``), guards (``Guard``,
``GuardError``, ``compile_guard``) and diagnostics (``Diagnostic``).

The modules, one owner each:

* ``limits``: every bound of a load (sizes, guard size and depth, number ranges);
* ``models``: the file's shape (pydantic; source of ``recipes/schema.json``);
* ``yaml``: YAML with positions, duplicate keys, no tags or merge keys;
* ``names``: ``${name}`` references, reserved names, sample results, ``Variable``;
* ``check/``: every rule, one module per rule family;
* ``guards``: CEL guards, type-checked at load, evaluated by the batch;
* ``hash``: the canonical content and its sha256; ``schema``: the JSON Schema;
* ``value``: ``Recipe``; ``load``: the entry points; ``render``: text, Mermaid, DOT.

Facts of the wire come only from ``drivers.icd``: program names, their parameters,
types and ranges (``ProgramSpec.check_params``, ``ParamSpec.check``), their outputs,
and assay names (``ASSAY_NAMES``).

Language decisions (the README documents them for authors):

* A program parameter is a literal or ``"${name}"``, the whole value naming a recipe
  parameter; the parameter's type must fit the ICD kind and its min/max (or choices)
  must lie inside the ICD range, so every value a batch may choose is valid on the wire.
* A sample step runs the ICD ``sample`` program (``volume_ml`` in its range, the batch
  picks the SampleId) and submits the panel to an analyzer. Results it can bind, by
  name: see ``SAMPLE_RESULTS``.
* An op step may bind program outputs (ICD table): numbers are doubles, ids strings,
  ``bag_ids`` a list of strings.
* Guards see parameters (number -> double, int -> int, string, bool), bound variables,
  ``visits.<step>`` (int: how many times the step has started) and ``elapsed_h``.
* ``max_visits``: a step may start at most that many times; starting it once more is a
  fault of the step (its ``on_fault`` applies, ``hold`` by default).
"""

from __future__ import annotations

from daemon.diagnostics import Diagnostic
from daemon.recipe.guards import Guard, GuardError, compile_guard
from daemon.recipe.hash import (
    HASH_DOMAIN,
    canonical_content,
    canonical_hash,
    dump_recipe,
    pinned_hashes,
)
from daemon.recipe.limits import LIMITS, Limits
from daemon.recipe.load import RecipeError, load_recipe, load_recipe_text, read_recipe_file
from daemon.recipe.models import (
    AwaitStep,
    CompleteStep,
    ConfirmStep,
    DecideStep,
    FailStep,
    OpStep,
    Parameter,
    RecipeDoc,
    SampleStep,
    WaitStep,
    duration_seconds,
)
from daemon.recipe.names import SAMPLE_RESULTS, Variable
from daemon.recipe.value import ParameterError, Recipe

__all__ = [
    "HASH_DOMAIN",
    "LIMITS",
    "SAMPLE_RESULTS",
    "AwaitStep",
    "CompleteStep",
    "ConfirmStep",
    "DecideStep",
    "Diagnostic",
    "FailStep",
    "Guard",
    "GuardError",
    "Limits",
    "OpStep",
    "Parameter",
    "ParameterError",
    "Recipe",
    "RecipeDoc",
    "RecipeError",
    "SampleStep",
    "Variable",
    "WaitStep",
    "canonical_content",
    "canonical_hash",
    "compile_guard",
    "dump_recipe",
    "duration_seconds",
    "load_recipe",
    "load_recipe_text",
    "pinned_hashes",
    "read_recipe_file",
]
