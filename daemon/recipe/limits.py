"""The limits of the recipe loader: how much work a recipe text may ask for.

This module owns every bound the loader enforces, so that any input (a file, an API
body, a hostile one) is answered with a diagnostic in bounded time and memory. Each
limit is refused with a diagnostic that names it. The README lists them for authors;
the library recipes use a small fraction of each (about 4 KiB, 15 steps).

Sizes (``Limits``; a caller may pass other values, e.g. a benchmark of large recipes):

* ``MAX_FILE_BYTES``: the recipe text, in UTF-8 bytes; only regular files are read,
  and never more than this plus one byte;
* ``MAX_ALIASES``: YAML aliases (``*name``) in one text;
* ``MAX_NODES``: YAML nodes after expanding aliases (an alias counts its whole tree
  each time it is used), so nested aliases cannot multiply the work;
* ``MAX_DEPTH``: nesting of YAML lists and mappings;
* ``MAX_STEPS``, ``MAX_PARAMETERS``: entries of ``steps`` and ``parameters``.

Guards (fixed: they bound the evaluator's stack, see ``daemon.recipe.guards``):

* ``MAX_GUARD_CHARS``: characters of one guard;
* ``MAX_GUARD_NODES``: nodes of its parse tree;
* ``MAX_GUARD_DEPTH``: depth of its parse tree (a parenthesis or a call costs about
  ten levels, an operator one or two).

Numbers (every number finite and in range):

* durations (``wait``, ``timeout``, ``hold_max``): longer than 0, at most
  ``MAX_DURATION_S`` (366 days);
* ``max_visits``: 1 to ``MAX_VISITS``;
* parameters' ``min``, ``max`` and ``default``: finite, magnitude at most
  ``MAX_ABS_NUMBER`` (1e15; integers up to it are exact in a double and in CEL's int64);
* guard literals: ints within int64, uints within uint64, doubles finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MAX_FILE_BYTES: Final = 256 * 1024
MAX_ALIASES: Final = 100
MAX_NODES: Final = 100_000
MAX_DEPTH: Final = 64
MAX_STEPS: Final = 2_000
MAX_PARAMETERS: Final = 200

MAX_GUARD_CHARS: Final = 1_000
MAX_GUARD_NODES: Final = 1_000
MAX_GUARD_DEPTH: Final = 200

MAX_DURATION_S: Final = 366 * 86_400.0
MAX_VISITS: Final = 1_000
MAX_ABS_NUMBER: Final = 1e15
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
UINT64_MAX: Final = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Limits:
    """The size limits of one load (defaults: the module constants)."""

    file_bytes: int = MAX_FILE_BYTES
    aliases: int = MAX_ALIASES
    nodes: int = MAX_NODES
    depth: int = MAX_DEPTH
    steps: int = MAX_STEPS
    parameters: int = MAX_PARAMETERS


LIMITS: Final = Limits()


def kib(n: int) -> str:
    """``262144`` -> ``256 KiB`` (limits are stated as the README states them)."""
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} bytes"
