"""Hostile recipe inputs get a diagnostic naming the limit, in bounded time and memory.

Each load runs in a fresh interpreter with a capped address space and a hang guard
(``bounded.load_bounded``). The small reproductions are kept in ``hostile/``; the big
ones are generated here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.recipe import limits
from tests.recipes.bounded import load_bounded

HOSTILE = Path(__file__).resolve().parent / "hostile"
HEADER = 'recipe: gen\nversion: "1"\nstart: s0\nsteps:\n'


def chain(n: int, header: str = HEADER) -> str:
    steps = "".join(f"  s{i}: {{wait: 1s, next: s{i + 1}}}\n" for i in range(n))
    return header + steps + f"  s{n}: {{complete: ok}}\n"


# --------------------------------------------------------------------------- files
def test_nested_aliases_billion_laughs_stop_at_the_node_limit() -> None:
    answer = load_bounded(HOSTILE / "billion_laughs.yaml")
    assert not answer.ok
    assert f"more than {limits.MAX_NODES} nodes" in answer.text
    assert "billion_laughs.yaml:" in answer.text


def test_too_many_aliases_are_refused_while_composing(tmp_path: Path) -> None:
    n = limits.MAX_ALIASES + 1
    text = "x: &x 1\nitems: [" + ", ".join(["*x"] * n) + "]\n"
    (tmp_path / "aliases.yaml").write_text(text)
    answer = load_bounded(tmp_path / "aliases.yaml")
    assert f"more than {limits.MAX_ALIASES} aliases" in answer.text


def test_a_fifo_is_refused_without_reading_it(tmp_path: Path) -> None:
    fifo = tmp_path / "recipe.yaml"
    os.mkfifo(fifo)  # nobody writes: a reader would wait for ever
    answer = load_bounded(fifo)
    assert "is not a regular file" in answer.text


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_that_never_ends_is_refused_without_reading_it(device: str) -> None:
    if not os.path.exists(device):
        pytest.skip(f"{device} missing")
    answer = load_bounded(device)
    assert "is not a regular file" in answer.text


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert "is not a regular file" in load_bounded(tmp_path).text


def test_an_8_mb_file_is_refused_by_its_size_before_it_is_parsed(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(chain(10) + "# padding\n" * (8 * 1024 * 1024 // 10))
    answer = load_bounded(big)
    assert f"larger than the limit of {limits.kib(limits.MAX_FILE_BYTES)}" in answer.text


def test_a_regular_file_that_says_it_is_empty_is_read_only_to_the_limit() -> None:
    # /proc files are regular files whose stat size is 0 whatever they hold: the size
    # check cannot see them coming, the read of limit + 1 bytes stops them
    path = Path("/proc/kallsyms")
    try:
        with path.open("rb") as f:
            if len(f.read(limits.MAX_FILE_BYTES + 1)) <= limits.MAX_FILE_BYTES:
                pytest.skip("/proc/kallsyms is not larger than the limit here")
    except OSError:
        pytest.skip("no readable /proc/kallsyms")
    assert path.stat().st_size == 0
    answer = load_bounded(path)
    assert f"the file is larger than the limit of {limits.kib(limits.MAX_FILE_BYTES)}" in (
        answer.text
    )


def test_text_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "body.txt"
    path.write_text(chain(2) + "#" * limits.MAX_FILE_BYTES)
    answer = load_bounded(path, as_text=True)
    assert f"larger than the limit of {limits.kib(limits.MAX_FILE_BYTES)}" in answer.text


def test_more_steps_than_the_limit_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "steps.yaml"
    path.write_text(chain(limits.MAX_STEPS))  # MAX_STEPS + 1 steps
    answer = load_bounded(path)
    assert f"more than {limits.MAX_STEPS} steps" in answer.text


def test_more_parameters_than_the_limit_are_refused(tmp_path: Path) -> None:
    params = "".join(f"  p{i}: {{type: bool}}\n" for i in range(limits.MAX_PARAMETERS + 1))
    path = tmp_path / "params.yaml"
    path.write_text(
        chain(1, 'recipe: gen\nversion: "1"\nparameters:\n' + params + "start: s0\nsteps:\n")
    )
    answer = load_bounded(path)
    assert f"more than {limits.MAX_PARAMETERS} parameters" in answer.text


def test_nesting_deeper_than_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    answer = load_bounded(path)
    assert f"nested deeper than {limits.MAX_DEPTH} levels" in answer.text


def test_a_chain_at_the_step_limit_validates(tmp_path: Path) -> None:
    path = tmp_path / "chain.yaml"
    path.write_text(chain(limits.MAX_STEPS - 1))
    answer = load_bounded(path)
    assert answer.ok, answer.text


# --------------------------------------------------------------------------- numbers
def test_nan_and_infinity_in_parameters_are_diagnostics_not_a_traceback() -> None:
    answer = load_bounded(HOSTILE / "nonfinite_parameters.yaml")
    assert not answer.ok
    assert "internal error" not in answer.text
    text = answer.text
    assert "min of parameter 'target' must be a finite number, got nan" in text
    assert "max of parameter 'ceiling' must be a finite number, got inf" in text
    assert "min of parameter 'floor' must be a finite number, got -inf" in text
    assert "default of parameter 'dose' is 1e+300, beyond the limit of 1e+15" in text


def test_a_timeout_of_10_to_400_days_and_max_visits_of_10_to_29_are_refused() -> None:
    answer = load_bounded(HOSTILE / "huge_numbers.yaml")
    text = answer.text
    assert not answer.ok
    assert "timeout must be at most 366d" in text
    assert "a wait must be at most 366d" in text
    assert "hold_max must be at most 366d" in text
    assert f"max_visits must be at most {limits.MAX_VISITS}" in text
