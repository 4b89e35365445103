"""The embedded default site and sim_site: they validate, describe `cellfab sim`'s twins,
and the daemon's clock stays in step with the twins'."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from daemon.cli import build_parser
from daemon.config import default_site, load_site_text, sim_site
from daemon.config.addresses import HostPort
from daemon.config.defaults import default_site_text

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default journal lives under ~: give the test a home of its own."""
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_the_default_site_validates_and_describes_the_sim_twins(home: Path) -> None:
    site = default_site()
    assert site.site == "sim"
    (shuttle,) = site.shuttles
    assert (shuttle.name, shuttle.url) == ("shuttle1", "opc.tcp://127.0.0.1:4840/shuttle")
    assert shuttle.security.allow_none
    (analyzer,) = site.analyzers
    assert (analyzer.name, analyzer.endpoint) == ("cellq1", HostPort("127.0.0.1", 5020))
    assert site.balances == []  # the balance twin's pty changes every run
    assert site.api.bind == "127.0.0.1:8470"
    assert site.journal == home / ".local/state/cellfab/journal.sqlite"
    assert site.recipes == [ROOT / "recipes"]  # the repository's library, in a checkout
    assert site.clock.simulation


def test_the_default_sites_ports_are_cellfab_sims_defaults() -> None:
    args = build_parser("sim").parse_args(["sim"])
    site = default_site()
    assert site.shuttles[0].url == f"opc.tcp://{args.host}:{args.shuttle_port}/shuttle"
    assert site.analyzers[0].tcp == f"{args.host}:{args.cellq_port}"
    assert args.security in ("none", "both")  # the None endpoint the site uses is offered


def test_the_daemon_and_cellfab_sim_share_one_time_scale() -> None:
    """Two numbers that must agree: the default site's clock and `cellfab sim`'s default."""
    assert default_site().clock.time_scale == build_parser("sim").parse_args(["sim"]).time_scale


def test_the_default_site_text_says_why_there_is_no_balance() -> None:
    text = default_site_text()
    assert "pseudo-terminal" in text and "changes on every" in text


def test_sim_site_from_a_sim_cells_endpoints(tmp_path: Path) -> None:
    endpoints = {
        "shuttle": "opc.tcp://127.0.0.1:40123/shuttle",
        "cellq": "127.0.0.1:40124",
        "balance": "/dev/pts/9",
    }
    site = sim_site(endpoints, 20000, tmp_path / "j.sqlite", recipes=[ROOT / "recipes"])
    assert [s.name for s in site.shuttles] == ["shuttle1"]
    assert site.shuttles[0].url == endpoints["shuttle"]
    assert site.shuttles[0].security.allow_none
    assert site.analyzers[0].endpoint == HostPort("127.0.0.1", 40124)
    assert site.balances[0].device == "/dev/pts/9"
    assert (site.clock.time_scale, site.clock.simulation) == (20000.0, True)
    assert site.journal == tmp_path / "j.sqlite"
    assert site.api.bind == "127.0.0.1:0"


def test_sim_site_obeys_the_site_rules(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="without TLS"):
        sim_site({"shuttle": "opc.tcp://127.0.0.1:1/s"}, 1, tmp_path / "j", api_bind="0.0.0.0:1")
    with pytest.raises(ValueError, match="shuttle required"):
        sim_site({"cellq": "127.0.0.1:5020"}, 1, tmp_path / "j")
    with pytest.raises(ValueError, match="sim endpoints are"):
        sim_site({"shuttle": "opc.tcp://h:1/s", "robot": "x"}, 1, tmp_path / "j")


def test_sim_site_round_trips_through_yaml(tmp_path: Path) -> None:
    site = sim_site({"shuttle": "opc.tcp://127.0.0.1:4840/shuttle"}, 3600, tmp_path / "j")
    text = yaml.safe_dump(site.model_dump(mode="json", exclude_none=True))
    again, diagnostics = load_site_text(text, str(tmp_path / "site.yaml"))
    assert diagnostics == []
    assert again == site
