"""`cellfab site validate|show|schema`: exit codes and output, through daemon.cli.main
and once through the console script."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from daemon.cli import main
from daemon.config import load_site
from daemon.config.defaults import default_site_text
from tests.config.conftest import BASE
from tests.support import CELLFAB


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_validate_good_files_exit_0_with_a_summary_each(
    site_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(site_dir / "site.yaml")
    assert main(["site", "validate", path]) == 0
    out = capsys.readouterr()
    assert out.out == (
        f"{path}: ok site cell-a: 2 shuttles, 2 analyzers, 1 balance; "
        "api 127.0.0.1:8470; real time\n"
    )
    assert out.err == ""


def test_validate_reports_every_error_and_exits_1(
    site_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = str(site_dir / "site.yaml")
    bad = site_dir / "bad.yaml"
    bad.write_text(BASE.replace("shuttles:", "shuttels:").replace("parity: N", "parity: X"))
    assert main(["site", "validate", good, str(bad)]) == 1
    out = capsys.readouterr()
    assert out.out.startswith(f"{good}: ok site cell-a")
    assert out.err == (
        f"{bad}:1:1: error: the file is missing the key 'shuttles'\n"
        "  hint: The Cell Shuttles (at least one)\n"
        f"{bad}:8:1: error: unknown key 'shuttels' [path shuttels]\n"
        "  hint: did you mean 'shuttles'? keys allowed here: site, clock, journal, api, policy, "
        "auth, recipes, shuttles, analyzers, balances\n"
        f"{bad}:25:71: error: parity text ('X') is not one of N, E, O "
        "[path analyzers[1].rtu.parity]\n"
        "  hint: N (none), E (even) or O (odd)\n"
        "3 errors in 1 of 2 files\n"
    )


def test_validate_a_fifo_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    assert main(["site", "validate", str(fifo)]) == 1
    assert f"{fifo}:1:1: error: not a regular file (a FIFO)" in capsys.readouterr().err


def test_show_prints_the_resolved_site_that_loads_to_the_same_site(
    site_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = site_dir / "site.yaml"
    assert main(["site", "show", str(path)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"# site cell-a, resolved from {path}\n")
    data = yaml.safe_load(text)
    assert data["journal"] == str(site_dir / "state/journal.sqlite")  # absolute
    assert data["clock"] == {"time_scale": 1.0, "simulation": False}  # defaults written out
    assert data["shuttles"][1]["security"] == {"allow_none": True}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "site.yaml").write_text(text)
    assert load_site(elsewhere / "site.yaml") == load_site(path)


def test_show_without_a_file_is_the_default_site(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["site", "show"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# site sim, resolved from the embedded default site")
    data = yaml.safe_load(text)
    assert data["shuttles"][0]["url"] == "opc.tcp://127.0.0.1:4840/shuttle"
    assert data["clock"]["time_scale"] == 3600.0


def test_show_a_bad_file_exits_1(site_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = site_dir / "bad.yaml"
    bad.write_text(BASE.replace("bind: 127.0.0.1:8470", "bind: 0.0.0.0:8470"))
    assert main(["site", "show", str(bad)]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert f"{bad}:5:9: error: the API would listen on 0.0.0.0:8470 without TLS" in out.err


def schema_of(capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["site", "schema"]) == 0
    return json.loads(capsys.readouterr().out)


def test_schema_accepts_the_sites_and_refuses_a_typo(capsys: pytest.CaptureFixture[str]) -> None:
    schema = schema_of(capsys)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(yaml.safe_load(BASE))
    validator.validate(yaml.safe_load(default_site_text()))
    with pytest.raises(jsonschema.ValidationError, match="shuttels"):
        validator.validate({**yaml.safe_load(BASE), "shuttels": []})


def test_every_field_of_the_schema_is_described(capsys: pytest.CaptureFixture[str]) -> None:
    schema = schema_of(capsys)
    models = {"Site": schema, **schema["$defs"]}
    undocumented = [
        f"{model}.{name}"
        for model, body in models.items()
        for name, prop in body.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert undocumented == []
    assert (
        "DEVELOPMENT ONLY"
        in models["Policy"]["properties"]["allow_unapproved_recipes"]["description"]
    )


def test_the_console_script(site_dir: Path) -> None:
    bad = site_dir / "bad.yaml"
    bad.write_text("site: [\n")
    proc = subprocess.run(
        [CELLFAB, "site", "validate", str(site_dir / "site.yaml"), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"{site_dir / 'site.yaml'}: ok site cell-a")
    assert proc.stderr.endswith("1 error in 1 of 2 files\n")
