"""The `cellfab site` commands: validate, show and schema.

This module owns the command-line face of the site (``daemon.config``):

* ``validate FILE...``: compiler-style diagnostics on stderr; for each good file one
  line on stdout (``FILE: ok site cell-a: 2 shuttles, 1 analyzer, ...``); exit 1 when
  any file has an error.
* ``show [FILE]``: the resolved site as YAML (paths absolute, defaults written out),
  the embedded default site when no file is given; loading the output gives the same
  site.
* ``schema``: the JSON Schema of a site file.

``daemon.cli`` calls ``register(subparsers)``; every subcommand sets ``func`` to a
function of the parsed arguments that returns the exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

import yaml

from daemon.config.addresses import UnixSocket
from daemon.config.defaults import DEFAULT_SITE, default_site
from daemon.config.load import SiteError, load_site
from daemon.config.model import Site, json_schema
from daemon.diagnostics import format_all, validate_files

EXIT_OK = 0
EXIT_INVALID = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `site` and its subcommands to the `cellfab` parser."""
    site = subparsers.add_parser(
        "site",
        help="validate and show sites (instruments, journal, API)",
        description=__doc__.split("\n\n")[0],
    )
    sub = site.add_subparsers(dest="site_command", required=True, metavar="SUBCOMMAND")

    validate = sub.add_parser("validate", help="check site files, report every problem")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(func=cmd_validate)

    show = sub.add_parser("show", help="print the resolved site (the default site if no FILE)")
    show.add_argument("file", nargs="?", metavar="FILE")
    show.set_defaults(func=cmd_show)

    schema = sub.add_parser("schema", help="print the JSON Schema of a site file")
    schema.set_defaults(func=cmd_schema)


def cmd_validate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return validate_files(args.files, load_site, summary, SiteError, out)


def cmd_show(args: argparse.Namespace) -> int:
    try:
        site = load_site(args.file) if args.file else default_site()
    except SiteError as exc:
        print(format_all(exc.diagnostics), file=sys.stderr)
        return EXIT_INVALID
    source = args.file or f"the embedded default site ({DEFAULT_SITE})"
    sys.stdout.write(f"# site {site.site}, resolved from {source}\n" + show_text(site))
    return EXIT_OK


def cmd_schema(_args: argparse.Namespace) -> int:
    sys.stdout.write(json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n")
    return EXIT_OK


def show_text(site: Site) -> str:
    """The site as YAML: every default written out, empty values left out."""
    data = site.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def summary(site: Site) -> str:
    """One line: name, instrument counts, where the API listens, the clock."""
    counts = ", ".join(
        _count(n, word)
        for n, word in (
            (len(site.shuttles), "shuttle"),
            (len(site.analyzers), "analyzer"),
            (len(site.balances), "balance"),
        )
    )
    api = site.api.endpoint
    tls = "" if isinstance(api, UnixSocket) or site.api.tls is None else " (TLS)"
    scale = site.clock.time_scale
    clock = "real time" if scale == 1.0 else f"time scale {scale:g}"
    clock += " (simulation)" if site.clock.simulation else ""
    return f"site {site.site}: {counts}; api {api}{tls}; {clock}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
