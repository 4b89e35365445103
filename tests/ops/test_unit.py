"""systemd/cellfab.service: systemd's own checker passes it, and it says what the
daemon relies on (notify, watchdog, restart, its user and state, the hardening)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.support import CELLFAB, HANG_GUARD

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "cellfab.service"
INSTALLED = "/opt/cellfab/.venv/bin/cellfab"


def settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value (a key may repeat in a unit file)."""
    out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out[section][key.strip()].append(value.strip())
    return out


def test_systemd_analyze_verify_passes_without_a_warning(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: the systemd package)")
    # verify also checks that ExecStart's program exists: point it at this checkout's
    # cellfab, installed as /opt/cellfab would be; every other line is the file's own
    cellfab = Path(CELLFAB)
    assert cellfab.exists(), f"no console script beside {sys.executable}"
    text = UNIT.read_text()
    assert text.count(INSTALLED) == 1
    unit = tmp_path / "cellfab.service"
    unit.write_text(text.replace(INSTALLED, str(cellfab)))
    proc = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=HANG_GUARD
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # unknown keys are only warnings


def test_the_unit_says_what_the_daemon_relies_on() -> None:
    service = settings(UNIT)["Service"]

    def one(key: str) -> str:
        [value] = service[key]
        return value

    assert one("Type") == "notify"  # READY=1 from daemon.ops.notify
    assert one("NotifyAccess") == "main"
    assert one("WatchdogSec") and one("Restart") == "on-failure"
    assert one("ExecStart") == f"{INSTALLED} run --site /etc/cellfab/site.yaml"
    assert (one("User"), one("Group")) == ("cellfab", "cellfab")
    assert one("StateDirectory") == "cellfab" and one("WorkingDirectory") == "/var/lib/cellfab"
    assert one("ConfigurationDirectory") == "cellfab"  # /etc/cellfab, read-only
    hardening = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }
    assert {key: one(key) for key in hardening} == hardening
    assert "PYTHONFAULTHANDLER=1" in one("Environment").split()  # stacks on a watchdog abort
    sysusers = (ROOT / "systemd" / "cellfab.sysusers").read_text()
    assert 'u cellfab - "cellfab daemon" /var/lib/cellfab' in sysusers
