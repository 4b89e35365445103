"""Sites the project ships or makes: the embedded default site and a site for a SimCell.

This module owns:

* ``default_site()``: ``default_site.yaml`` beside this module (read with
  ``importlib.resources``), the twins of ``cellfab sim`` with its default options:
  the shuttle's None endpoint on 127.0.0.1:4840, Cell Q on 127.0.0.1:5020, no balance
  (its pseudo-terminal changes every run), time scale 3600 (``cellfab sim``'s default;
  ``tests/config`` keeps the two equal), the journal in the per-user state folder, the
  API on 127.0.0.1:8470 and the repository's ``recipes/`` library (present in a
  checkout, where ``make`` installs cellfab in editable mode; outside one, the
  diagnostic names the missing folder: write your own site).
* ``sim_site(endpoints, ...)``: a site for a running SimCell from the endpoints it
  reports (``SimCell.endpoints()``: ``shuttle``, ``cellq``, ``balance``), for tests and
  the demo. Pure data: it imports nothing from ``simulators``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any, Final

from daemon.config.load import load_site
from daemon.config.model import Site

DEFAULT_SITE: Final = "default_site.yaml"
SIM_NAMES: Final = {"shuttle": "shuttle1", "cellq": "cellq1", "balance": "balance1"}


def default_site_text() -> str:
    """The embedded default site as written (comments included)."""
    return files(__package__).joinpath(DEFAULT_SITE).read_text(encoding="utf-8")


def default_site() -> Site:
    """The embedded default site, loaded and checked like any site file."""
    with as_file(files(__package__).joinpath(DEFAULT_SITE)) as path:
        return load_site(path)


def sim_site(
    endpoints: Mapping[str, str],
    time_scale: float,
    journal_path: str | Path,
    *,
    recipes: Iterable[str | Path] = (),
    api_bind: str = "127.0.0.1:0",
    name: str = "sim",
    shuttle_security: Mapping[str, Any] | None = None,
) -> Site:
    """A site for the twins at ``endpoints`` (``shuttle`` URL, ``cellq`` host:port,
    optional ``balance`` device), named as in the default site (shuttle1, cellq1,
    balance1). The shuttle uses its None endpoint unless ``shuttle_security`` gives the
    keys of a site's ``security``. Relative paths are taken from the current folder;
    nothing is checked on disk. Raises ``pydantic.ValidationError`` for bad values."""
    unknown = set(endpoints) - set(SIM_NAMES)
    if unknown or "shuttle" not in endpoints:
        raise ValueError(
            f"sim endpoints are {', '.join(SIM_NAMES)} (shuttle required); got {sorted(endpoints)}"
        )
    data: dict[str, Any] = {
        "site": name,
        "clock": {"time_scale": float(time_scale), "simulation": True},
        "journal": str(journal_path),
        "api": {"bind": api_bind},
        "recipes": [str(r) for r in recipes],
        "shuttles": [
            {
                "name": SIM_NAMES["shuttle"],
                "url": endpoints["shuttle"],
                "security": dict(shuttle_security or {"allow_none": True}),
            }
        ],
    }
    if "cellq" in endpoints:
        data["analyzers"] = [{"name": SIM_NAMES["cellq"], "tcp": endpoints["cellq"]}]
    if "balance" in endpoints:
        data["balances"] = [{"name": SIM_NAMES["balance"], "device": endpoints["balance"]}]
    return Site.model_validate(data, context={"base": Path.cwd()})
