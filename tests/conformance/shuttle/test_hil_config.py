"""The HIL conformance run says what to set instead of stopping on a KeyError."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.shuttle_target import HIL_SECURITY_VARS, HilConfigError, hil_security

ROOT = Path(__file__).resolve().parents[3]
URL = "opc.tcp://127.0.0.1:1/shuttle"
SUITE = Path(__file__).with_name("test_shuttle_conformance.py")


def test_missing_security_names_every_variable_and_the_way_out() -> None:
    with pytest.raises(HilConfigError) as err:
        hil_security({"CELLFAB_SHUTTLE_URL": URL})
    text = str(err.value)
    for name, _what in HIL_SECURITY_VARS:
        assert name in text
    assert "CELLFAB_SHUTTLE_ALLOW_NONE=1" in text


def test_only_the_missing_variables_are_named(tmp_path: Path) -> None:
    env = {"CELLFAB_SHUTTLE_URL": URL, "CELLFAB_SHUTTLE_CERT": str(tmp_path / "c.der")}
    with pytest.raises(HilConfigError) as err:
        hil_security(env)
    assert "CELLFAB_SHUTTLE_KEY" in str(err.value)
    assert "CELLFAB_SHUTTLE_CERT:" not in str(err.value)


def test_files_that_do_not_exist_are_named(tmp_path: Path) -> None:
    env = {name: str(tmp_path / name.lower()) for name, _w in HIL_SECURITY_VARS}
    with pytest.raises(HilConfigError, match="is not a file"):
        hil_security(env)


def test_allow_none_is_the_development_way_out() -> None:
    assert hil_security({"CELLFAB_SHUTTLE_ALLOW_NONE": "1"}).is_none


def test_a_hil_run_without_security_is_a_usage_error_not_a_traceback() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CELLFAB_SHUTTLE_") and not k.startswith("PYTEST_")
    }
    env["CELLFAB_SHUTTLE_URL"] = URL
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--co", str(SUITE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, out
    assert "CELLFAB_SHUTTLE_CERT" in out and "CELLFAB_SHUTTLE_ALLOW_NONE=1" in out
    assert "KeyError" not in out and "Traceback" not in out
