"""The `cellfab recipe` commands: validate, graph, show, schema (being written)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `recipe` and its subcommands to the `cellfab` parser."""
    recipe = subparsers.add_parser("recipe", help="validate, show and graph recipes")
    recipe.set_defaults(func=lambda _args: 2)
