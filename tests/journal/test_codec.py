"""The record codec round-trips every record type with generated values, alone and
through the store (SQLite and back), and the strategies cover every field of every type
(a new field without a strategy fails here, not silently)."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.journal import records as r
from daemon.journal.store import Journal

FLOATS = st.floats(allow_nan=False, allow_infinity=False)
TEXT = st.text(max_size=12)
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | FLOATS | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
BY_TYPE: dict[object, st.SearchStrategy[Any]] = {
    str: TEXT,
    int: st.integers(),
    float: FLOATS,
    bool: st.booleans(),
    float | None: st.none() | FLOATS,
    dict[str, Any]: st.dictionaries(TEXT, JSON, max_size=4),
    dict[str, float]: st.dictionaries(TEXT, FLOATS, max_size=4),
}


def strategy(cls: type[r.Record]) -> st.SearchStrategy[r.Record]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: BY_TYPE[hints[f.name]] for f in dataclasses.fields(cls)}
    return st.builds(cls, **fields)


ANY_RECORD = st.one_of(*(strategy(cls) for cls in r.RECORD_TYPES.values()))


@pytest.mark.parametrize("cls", r.RECORD_TYPES.values(), ids=list(r.RECORD_TYPES))
def test_every_field_of_every_record_type_has_a_strategy(cls: type[r.Record]) -> None:
    hints = typing.get_type_hints(cls)
    missing = [f.name for f in dataclasses.fields(cls) if hints[f.name] not in BY_TYPE]
    assert not missing, f"{cls.__name__}: no strategy for {missing}"


@settings(max_examples=150, deadline=None)
@given(ANY_RECORD)
def test_codec_round_trips_every_record_type(record: r.Record) -> None:
    type_name, body = r.encode(record)
    assert type_name == type(record).__name__
    assert r.decode(type_name, body) == record
    assert r.encode(r.decode(type_name, body)) == (type_name, body)  # canonical


@settings(max_examples=25, deadline=None)
@given(st.lists(ANY_RECORD, min_size=1, max_size=8))
def test_records_come_back_from_the_store_as_they_went_in(records: list[r.Record]) -> None:
    async def round_trip(path: Path) -> list[r.Record]:
        async with Journal.open(path) as journal:
            await journal.append(*records)
        async with Journal.open(path) as journal:
            return [rec for _, rec in journal.read()]

    with tempfile.TemporaryDirectory() as folder:
        assert asyncio.run(round_trip(Path(folder) / "j.sqlite")) == records
