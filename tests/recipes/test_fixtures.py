"""Invalid recipes give exactly the diagnostics written beside them (fixtures/*.expected)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.diagnostics import format_all
from daemon.recipe import RecipeError, load_recipe, load_recipe_text
from tests.recipes.conftest import FIXTURES, INVALID


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_gives_exactly_the_expected_diagnostics(path: Path) -> None:
    recipe, diagnostics = load_recipe_text(path.read_text(), path.name)
    expected = path.with_suffix(".expected").read_text()
    assert recipe is None
    assert format_all(diagnostics) + "\n" == expected


def test_every_fixture_has_an_expected_file() -> None:
    assert INVALID, "no fixtures found"
    for path in INVALID:
        assert path.with_suffix(".expected").is_file(), path


def test_every_diagnostic_of_the_fixtures_has_a_position_path_and_no_internal_error() -> None:
    for path in INVALID:
        _recipe, diagnostics = load_recipe_text(path.read_text(), path.name)
        for d in diagnostics:
            assert d.line >= 1 and d.column >= 1
            assert "internal error" not in d.message
            assert d.file == path.name


def test_load_recipe_raises_recipe_error_with_all_diagnostics() -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(FIXTURES / "many_errors.yaml")
    assert len(info.value.diagnostics) == 19
    assert "many_errors.yaml:17:5: error: unknown key 'timout'" in str(info.value)


def test_missing_file_is_a_recipe_error(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "nope.yaml")
    assert "cannot read the file" in info.value.diagnostics[0].message
