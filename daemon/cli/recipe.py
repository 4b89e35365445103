"""The `cellfab recipe` commands: validate, graph, show and schema.

This module owns the command-line face of the recipe language (``daemon.recipe``):

* ``validate FILE...``: compiler-style diagnostics on stderr, ``FILE: ok <hash>`` on
  stdout for each good file; exit 1 when any file has an error.
* ``graph FILE [--format mermaid|dot]``: the state machine as a Mermaid flowchart or a
  Graphviz digraph on stdout.
* ``show FILE``: header, parameters, steps and hash as aligned text tables.
* ``schema``: the JSON Schema of a recipe file (what ``recipes/schema.json`` holds).
* ``submit|approve|retire FILE --reason TEXT``: the recipe lifecycle at the daemon
  (``daemon.lifecycle``), signed in (``cellfab login``): submit sends the file's text
  (its hash is what is submitted); approve and retire (QA) name the file's hash and are
  electronic signatures (the password is asked again). Whoever submitted a hash cannot
  approve it. These talk to the API (``--api``/``--site``), exit status as ``cellfab
  batch``.

``daemon.cli`` calls ``register(subparsers)``; every subcommand sets ``func`` to a
function of the parsed arguments that returns the exit status.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import structlog

from daemon.diagnostics import format_all, validate_files
from daemon.recipe import Recipe, RecipeError, load_recipe, read_recipe_file
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

    from daemon.cli.api_cli import common, reason_argument, run

    for name, what in (
        ("submit", "submit FILE for approval (signed in)"),
        ("approve", "QA: approve FILE's hash (e-signed; not the submitter)"),
        ("retire", "QA: retire FILE's hash (e-signed)"),
    ):
        change = sub.add_parser(name, parents=[common()], help=what)
        change.add_argument("file", metavar="FILE")
        reason_argument(change)
        change.set_defaults(func=run(cmd_lifecycle, f"cellfab recipe {name}"), change=name)


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


def cmd_lifecycle(args: argparse.Namespace, api: Any) -> int:
    from daemon.api.client import ClientError
    from daemon.cli.api_cli import ask_password

    recipe = _load_or_report(args.file)
    if recipe is None:
        raise ClientError(f"{args.file} does not load (see above); nothing was sent")
    if args.change == "submit":
        text = read_recipe_file(args.file)
        body = {"text": text, "filename": str(args.file), "reason": args.reason}
        answer = api.post("/recipes/submit", body)
    else:
        password = ask_password(
            f"{args.change.title()} {recipe.name} {recipe.version}: password to sign: "
        )
        body = {"password": password, "reason": args.reason}
        answer = api.post(f"/recipes/{recipe.hash}/{args.change}", body)
    if args.json:
        print(answer.text)
    else:
        row = answer.data
        print(
            f"{row['recipe_name']} {row['recipe_version']} sha256:{row['recipe_hash']}: "
            f"{row['status']} by {row['user_name']} at {row['at']}"
        )
    return EXIT_OK
