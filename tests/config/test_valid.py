"""Valid sites: what a loaded site holds (resolved paths, canonical endpoints, defaults)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import load_site, load_site_text
from daemon.config.addresses import HostPort, UnixSocket
from daemon.config.model import Rtu, Site
from tests.config.conftest import BASE, Check


def test_the_base_site_loads_with_paths_resolved_against_its_folder(site_dir: Path) -> None:
    site = load_site(site_dir / "site.yaml")
    assert site.site == "cell-a"
    assert site.journal == site_dir / "state/journal.sqlite"
    assert site.recipes == [site_dir / "recipes"]
    sec = site.shuttles[0].security
    assert (sec.certificate, sec.private_key) == (
        site_dir / "pki/client.pem",
        site_dir / "pki/client.key",
    )
    assert (sec.server_certificate, sec.trust) == (
        site_dir / "pki/shuttle1.der",
        site_dir / "pki/trusted",
    )
    assert site.shuttles[0].out_of_service == ["INC07"]
    assert site.shuttles[1].security.allow_none is True
    assert site.analyzers[0].endpoint == HostPort("10.0.0.12", 5020)
    assert site.analyzers[1].endpoint == Rtu(device="/dev/ttyUSB0")
    assert site.balances[0].device == "/dev/ttyUSB1"


def test_relative_paths_follow_the_site_file_not_the_working_folder(
    site_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(site_dir.parent)
    site = load_site(Path(site_dir.name) / "site.yaml")
    assert site.journal == site_dir / "state/journal.sqlite"
    assert site.journal.is_absolute()


def test_defaults_of_a_minimal_site(check: Check) -> None:
    site = check.site(
        "site: lab\njournal: j.sqlite\n"
        "shuttles: [{name: s, url: opc.tcp://twin/shuttle, security: {allow_none: true}}]\n"
    )
    assert site.clock.time_scale == 1.0 and site.clock.simulation is False
    assert site.api.bind == "127.0.0.1:8470" and site.api.tls is None
    assert site.policy.allow_unapproved_recipes is False
    assert site.recipes == [] and site.analyzers == [] and site.balances == []
    assert site.shuttles[0].url == "opc.tcp://twin:4840/shuttle"  # the ICD's port written out


def test_rtu_line_defaults_are_the_icd_ones(check: Check) -> None:
    site = check.site(BASE.replace(", baudrate: 19200, bytesize: 8, parity: N, stopbits: 1", ""))
    assert site.analyzers[1].rtu == Rtu(
        device="/dev/ttyUSB0", baudrate=19200, bytesize=8, parity="N", stopbits=1
    )
    assert site.analyzers[1].device_id == 1


def test_tcp_port_defaults_to_5020(check: Check) -> None:
    site = check.site(BASE.replace("tcp: 10.0.0.12:5020", "tcp: cellq-1.plant.example"))
    assert site.analyzers[0].tcp == "cellq-1.plant.example:5020"


@pytest.mark.parametrize(
    ("bind", "endpoint"),
    [
        ("127.0.0.1:8470", HostPort("127.0.0.1", 8470)),
        ("127.0.0.5:9000", HostPort("127.0.0.5", 9000)),
        ("localhost:8470", HostPort("localhost", 8470)),
        ("'[::1]:8470'", HostPort("::1", 8470)),
        ("127.0.0.1:0", HostPort("127.0.0.1", 0)),
        ("127.0.0.1", HostPort("127.0.0.1", 8470)),
    ],
)
def test_loopback_binds_need_no_tls(check: Check, bind: str, endpoint: HostPort) -> None:
    site = check.site(BASE.replace("bind: 127.0.0.1:8470", f"bind: {bind}"))
    assert site.api.endpoint == endpoint
    assert endpoint.is_loopback


def test_a_unix_socket_is_relative_to_the_site_file(check: Check) -> None:
    site = check.site(BASE.replace("bind: 127.0.0.1:8470", "bind: unix:run/api.sock"))
    assert site.api.endpoint == UnixSocket(check.folder / "run/api.sock")
    site = check.site(BASE.replace("bind: 127.0.0.1:8470", "bind: unix:/run/cellfab/api.sock"))
    assert site.api.bind == "unix:/run/cellfab/api.sock"


def test_beyond_loopback_with_tls(check: Check) -> None:
    text = BASE.replace(
        "  bind: 127.0.0.1:8470",
        "  bind: 0.0.0.0:8470\n  tls: {certificate: pki/api.pem, private_key: pki/api.key}",
    )
    site = check.site(text)
    assert site.api.tls is not None
    assert site.api.tls.certificate == check.folder / "pki/api.pem"
    assert not site.api.endpoint.is_loopback  # type: ignore[union-attr]


def test_simulated_time(check: Check) -> None:
    site = check.site(BASE.replace("{time_scale: 1}", "{time_scale: 3600, simulation: true}"))
    assert site.clock.time_scale == 3600.0


def test_home_is_expanded(check: Check, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    site = check.site(BASE.replace("journal: state/", "journal: ~/state/"))
    assert site.journal == tmp_path / "home/state/journal.sqlite"


def test_a_secure_shuttle_may_name_a_revocation_folder(check: Check) -> None:
    site = check.site(
        BASE.replace("      trust: pki/trusted", "      trust: pki/trusted\n      revocation: pki")
    )
    assert site.shuttles[0].security.revocation == check.folder / "pki"


def test_the_model_is_frozen(check: Check) -> None:
    site = check.site()
    with pytest.raises(ValueError):
        site.site = "other"  # type: ignore[misc]
    assert isinstance(site, Site)


def test_the_readmes_example_is_a_valid_site(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Sites\n", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    site, diagnostics = load_site_text(example, "README.md", base=tmp_path, files=False)
    assert diagnostics == [], [d.format() for d in diagnostics]
    assert site is not None and [s.name for s in site.shuttles] == ["shuttle1", "devshuttle"]
