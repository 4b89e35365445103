"""The `cellfab recipe` commands: validate, graph, show and schema.

This module owns the command-line face of the recipe language (``daemon.recipe``):

* ``validate FILE...``: compiler-style diagnostics on stderr, ``FILE: ok <hash>`` on
  stdout for each good file; exit 1 when any file has an error.
* ``graph FILE [--format mermaid|dot]``: the state machine as a Mermaid flowchart or a
  Graphviz digraph on stdout.
* ``show FILE``: header, parameters, steps and hash as aligned text tables.
* ``schema``: the JSON Schema of a recipe file (what ``recipes/schema.json`` holds).

``daemon.cli`` calls ``register(subparsers)``; every subcommand sets ``func`` to a
function of the parsed arguments that returns the exit status.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

import structlog

from daemon.diagnostics import format_all, validate_files
from daemon.recipe import Recipe, RecipeError, load_recipe
from daemon.recipe.render import show_text, to_dot, to_mermaid
from daemon.recipe.schema import schema_text

EXIT_OK = 0
EXIT_INVALID = 1

log = structlog.get_logger("cellfab.recipe")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `recipe` and its subcommands to the `cellfab` parser."""
    recipe = subparsers.add_parser(
        "recipe", help="validate, show and graph recipes", description=__doc__.split("\n\n")[0]
    )
    sub = recipe.add_subparsers(dest="recipe_command", required=True, metavar="SUBCOMMAND")

    validate = sub.add_parser("validate", help="check recipe files, report every problem")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(func=cmd_validate)

    graph = sub.add_parser("graph", help="print the state machine as Mermaid or Graphviz DOT")
    graph.add_argument("file", metavar="FILE")
    graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    graph.set_defaults(func=cmd_graph)

    show = sub.add_parser("show", help="print parameters, steps and hash as tables")
    show.add_argument("file", metavar="FILE")
    show.set_defaults(func=cmd_show)

    schema = sub.add_parser("schema", help="print the JSON Schema of a recipe file")
    schema.set_defaults(func=cmd_schema)


# --------------------------------------------------------------------------- commands
def cmd_validate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return validate_files(args.files, load_recipe, _summary, RecipeError, out)


def _summary(recipe: Recipe) -> str:
    log.debug("recipe_valid", recipe=recipe.name, sha256=recipe.hash)
    return f"{recipe.name} {recipe.version} sha256:{recipe.hash}"


def _load_or_report(path: str) -> Recipe | None:
    try:
        return load_recipe(path)
    except RecipeError as exc:
        print(format_all(exc.diagnostics), file=sys.stderr)
        return None


def cmd_graph(args: argparse.Namespace) -> int:
    recipe = _load_or_report(args.file)
    if recipe is None:
        return EXIT_INVALID
    text = to_dot(recipe) if args.format == "dot" else to_mermaid(recipe)
    sys.stdout.write(text)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    recipe = _load_or_report(args.file)
    if recipe is None:
        return EXIT_INVALID
    sys.stdout.write(show_text(recipe))
    return EXIT_OK


def cmd_schema(_args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return EXIT_OK
