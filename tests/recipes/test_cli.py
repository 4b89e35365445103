"""`cellfab recipe ...`: exit codes and output, through daemon.cli.main and the console script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from daemon.cli import main
from tests.recipes.conftest import FIXTURES, LIBRARY, RECIPES, ROOT
from tests.support import CELLFAB

LENTI = str(RECIPES / "car_t_lentiviral.yaml")


def test_validate_library_exits_0_and_prints_hashes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "validate", *map(str, LIBRARY)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(LIBRARY)
    assert all(": ok " in line and "sha256:" in line for line in out)


def test_validate_reports_every_error_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    bad = str(FIXTURES / "many_errors.yaml")
    assert main(["recipe", "validate", LENTI, bad]) == 1
    captured = capsys.readouterr()
    assert "car_t_lentiviral.yaml: ok" in captured.out
    expected = (FIXTURES / "many_errors.expected").read_text().replace("many_errors.yaml", bad)
    assert captured.err.startswith(expected)
    assert captured.err.rstrip().endswith("19 errors in 1 of 2 files")


def test_graph_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "graph", LENTI]) == 0
    out = capsys.readouterr().out
    assert "flowchart TD" in out
    assert "  __start__ --> receive" in out
    assert '  count -->|"cells #gt;= target_dose * 1.2"| harvest' in out
    assert '  count -->|"else"| dose_not_reached' in out


def test_graph_dot(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "graph", "--format", "dot", LENTI]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1] == 'digraph "car_t_lentiviral" {'
    assert '  "count" -> "harvest" [label="cells >= target_dose * 1.2"];' in out
    assert '"release_decision" [label=' in out and "shape=diamond" in out
    assert out.rstrip().endswith("}")


def test_graph_marks_fault_edges(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(RECIPES / "car_t_electroporation.yaml")
    assert main(["recipe", "graph", path]) == 0
    assert '  electroporate -.->|"on fault"| ep_failed' in capsys.readouterr().out
    assert main(["recipe", "graph", "--format", "dot", path]) == 0
    assert '"electroporate" -> "ep_failed" [label="on fault", style=dashed];' in (
        capsys.readouterr().out
    )


def test_graph_of_an_invalid_recipe_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "graph", str(FIXTURES / "graph_errors.yaml")]) == 1
    assert "never reached" in capsys.readouterr().err


def test_show_prints_aligned_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "show", LENTI]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("hash") and "sha256:" in line for line in lines)
    header = next(i for i, line in enumerate(lines) if line.startswith("parameter "))
    rows = lines[header : header + 3]
    type_col = rows[0].index("type")
    assert rows[1][type_col] == "-"  # the rule lines up under the header
    assert rows[2][type_col:].startswith("number")
    assert any(line.startswith("expand ") and "max_visits 5" in line for line in lines)


def test_show_of_an_invalid_recipe_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "show", str(FIXTURES / "empty.yaml")]) == 1
    assert "the file is empty" in capsys.readouterr().err


def test_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "cellfab recipe"
    assert (RECIPES / "schema.json").read_text() == json.dumps(schema, indent=2) + "\n"


def test_console_script_exit_status(tmp_path: Path) -> None:
    exe = Path(CELLFAB)
    if not exe.exists():
        pytest.skip("console script not installed")
    ok = subprocess.run([exe, "recipe", "validate", LENTI], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [exe, "recipe", "validate", str(FIXTURES / "syntax_error.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 1
    assert "syntax_error.yaml:6:4: error: YAML syntax error" in bad.stderr
