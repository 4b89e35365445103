"""Fixtures of the site tests: a folder holding every file a valid site names, and the
site text that names them (BASE, line numbers fixed: rules are tested by replacing one
line and asserting the exact diagnostic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import load_site_text
from daemon.config.model import Site

BASE = """\
site: cell-a
clock: {time_scale: 1}
journal: state/journal.sqlite
api:
  bind: 127.0.0.1:8470
policy: {allow_unapproved_recipes: false}
recipes: [recipes/]
shuttles:
  - name: shuttle1
    url: opc.tcp://10.0.0.5:4840/shuttle
    security:
      policy: Basic256Sha256
      certificate: pki/client.pem
      private_key: pki/client.key
      server_certificate: pki/shuttle1.der
      trust: pki/trusted
    out_of_service: [INC07]
  - name: shuttle2
    url: opc.tcp://10.0.0.6:4840/shuttle
    security: {allow_none: true}
analyzers:
  - name: cellq1
    tcp: 10.0.0.12:5020
  - name: cellq2
    rtu: {device: /dev/ttyUSB0, baudrate: 19200, bytesize: 8, parity: N, stopbits: 1}
balances:
  - name: balance1
    device: /dev/ttyUSB1
"""

FILES = ("pki/client.pem", "pki/client.key", "pki/shuttle1.der", "pki/api.pem", "pki/api.key")
FOLDERS = ("pki/trusted", "recipes", "state")


def line_of(text: str, fragment: str) -> int:
    """1-based number of the one line holding ``fragment``."""
    (n,) = [i for i, line in enumerate(text.splitlines(), 1) if fragment in line]
    return n


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    """A folder with the files and folders BASE names, and BASE as site.yaml."""
    for name in FOLDERS:
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
    for name in FILES:
        (tmp_path / name).write_text("x\n")
    (tmp_path / "site.yaml").write_text(BASE)
    return tmp_path


class Check:
    """Load site text as ``site.yaml`` of ``folder``: the site or the diagnostics."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def site(self, text: str = BASE) -> Site:
        site, diagnostics = load_site_text(text, "site.yaml", base=self.folder)
        assert diagnostics == [], [d.format() for d in diagnostics]
        assert site is not None
        return site

    def errors(self, text: str) -> list[str]:
        """The diagnostics' first lines (``file:line:col: error: message [path p]``)."""
        site, diagnostics = load_site_text(text, "site.yaml", base=self.folder)
        assert site is None and diagnostics
        return [d.format().splitlines()[0] for d in diagnostics]

    def hints(self, text: str) -> list[str]:
        _site, diagnostics = load_site_text(text, "site.yaml", base=self.folder)
        return [d.hint for d in diagnostics]


@pytest.fixture
def check(site_dir: Path) -> Check:
    return Check(site_dir)
