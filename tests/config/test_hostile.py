"""Hostile input: whatever the file holds, the loader answers with a site or with
diagnostics, never a traceback; a huge file, a FIFO or a device is refused without
being read; a few hundred bytes of nested aliases are refused, not expanded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.config import SiteError, load_site, load_site_text
from daemon.config.load import MAX_NODES, MAX_SITE_BYTES, read_bounded
from tests.config.conftest import BASE
from tests.support.mutations import assert_answered, mutated

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BASE_DATA = yaml.safe_load(BASE)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "127.0.0.1:8470",
            "0.0.0.0:1",
            "unix:",
            "unix:/x",
            "opc.tcp://h:0/x",
            "opc.tcp://[::1]/",
            "[::1]:",
            "~",
            "..",
            "/dev/null",
            "\x00",
            "cellq1",
            "shuttle1",
            "N",
        ]
    ),
)
keys = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        ["site", "journal", "api", "bind", "tls", "shuttles", "security", "allow_none", "tcp"]
    ),
)
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=3)
    ),
    max_leaves=12,
)


def answer(text: str, folder: Path) -> None:
    site, diagnostics = load_site_text(text, "gen.yaml", base=folder)
    assert_answered(site, diagnostics)
    assert all(d.file == "gen.yaml" for d in diagnostics)


@SETTINGS
@given(mutated(st.just(BASE_DATA), trees, keys))
def test_mutated_sites_give_a_site_or_diagnostics(tmp_path_factory, data: Any) -> None:
    answer(yaml.safe_dump(data, sort_keys=False), tmp_path_factory.getbasetemp())


@SETTINGS
@given(st.text(max_size=300))
def test_any_text_gives_a_site_or_diagnostics(tmp_path_factory, text: str) -> None:
    answer(text, tmp_path_factory.getbasetemp())


@SETTINGS
@given(st.integers(0, len(BASE) - 1), st.text(max_size=6))
def test_a_mangled_byte_anywhere(tmp_path_factory, at: int, junk: str) -> None:
    answer(BASE[:at] + junk + BASE[at + 1 :], tmp_path_factory.getbasetemp())


# --------------------------------------------------------------------------- bounded input
def refusal(path: Path) -> str:
    with pytest.raises(SiteError) as exc:
        load_site(path)
    (d,) = exc.value.diagnostics
    assert (d.file, d.line, d.column) == (str(path), 1, 1)
    return d.message


def test_a_huge_file_is_refused_from_its_size(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as f:
        f.truncate(64 * 1024 * 1024 * 1024)  # sparse: reading it would take minutes
    assert refusal(huge) == (
        f"the file is {64 * 1024**3} bytes; a site file may have at most {MAX_SITE_BYTES}"
    )


def test_a_file_just_over_the_limit_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("#" * MAX_SITE_BYTES + "\n")
    assert "may have at most" in refusal(big)
    assert read_bounded(big, MAX_SITE_BYTES + 1).startswith("#")


def test_a_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "site.yaml"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    assert refusal(fifo) == "not a regular file (a FIFO)"


def test_a_device_and_a_folder_are_refused(tmp_path: Path) -> None:
    assert refusal(Path("/dev/zero")) == "not a regular file (a character device)"
    assert refusal(tmp_path) == "not a regular file (a folder)"


def test_a_missing_file(tmp_path: Path) -> None:
    assert refusal(tmp_path / "nope.yaml") == "cannot read the file: No such file or directory"


def test_a_link_to_a_regular_file_is_read(site_dir: Path) -> None:
    link = site_dir / "link.yaml"
    link.symlink_to(site_dir / "site.yaml")
    assert load_site(link).site == "cell-a"


def test_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"site: caf\xe9\n")
    assert refusal(bad) == "the file is not UTF-8 text (byte 9)"


def test_nested_aliases_are_refused_not_expanded(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    text = "\n".join(lines) + "\n"
    assert len(text) < 600  # would expand to 10^10 nodes
    site, (d,) = load_site_text(text, "bomb.yaml", base=tmp_path)
    assert site is None
    assert d.message.startswith(f"the YAML expands to more than {MAX_NODES} nodes")


def test_an_alias_is_fine_where_it_is_small(site_dir: Path) -> None:
    text = BASE.replace("security: {allow_none: true}", "security: &dev {allow_none: true}")
    text += "  - name: balance2\n    device: /dev/ttyUSB2\n"
    site, diagnostics = load_site_text(text, "site.yaml", base=site_dir)
    assert diagnostics == [] and site is not None


@pytest.mark.parametrize("opener", ["[", "{", "- ", "{a: "])
def test_deep_nesting_is_refused_before_it_is_composed(tmp_path: Path, opener: str) -> None:
    text = opener * (MAX_SITE_BYTES // len(opener))
    site, (d,) = load_site_text(text, "deep.yaml", base=tmp_path)
    assert site is None
    assert (d.line, d.column, d.message) == (1, 1, "the YAML is nested deeper than 64 levels")


def test_nesting_within_the_limit_is_read(tmp_path: Path) -> None:
    site, (d,) = load_site_text("[" * 60 + "]" * 60, "flat.yaml", base=tmp_path)
    assert site is None and d.message.startswith("a site is a mapping of keys")
