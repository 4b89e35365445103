"""Recipe loader benchmark: validating long chains, against parsing them with PyYAML.

    .venv/bin/python -m bench.recipes [N ...]     # default 1000 5000 10000 steps

For each size it builds three recipes of N steps: a chain written first to last, the
same chain written last to first with a guard at the end that reads a result bound at
the start (the worst order for the bound-before-use analysis), and a chain whose every
``next`` is misspelled (N unknown targets, the did-you-mean path). It prints the time
of ``load_recipe_text`` beside ``yaml.safe_load`` of the same text (the raw library the
loader wraps), their ratio and the time per step. Linear checks keep the ratio flat as
N grows; a quadratic one makes it grow with N. The size limits are raised for the
run (``Limits``): the default loader refuses more than 2,000 steps. Nothing is
asserted; the numbers are for reading.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable

import yaml

from daemon.recipe import load_recipe_text
from daemon.recipe.limits import Limits

SIZES = (1000, 5000, 10000)


def forward(n: int) -> str:
    steps = "".join(f"  s{i}: {{wait: 1s, next: s{i + 1}}}\n" for i in range(n - 1))
    return f'recipe: fwd\nversion: "1"\nstart: s0\nsteps:\n{steps}  s{n - 1}: {{complete: ok}}\n'


def backward(n: int) -> str:
    lines = ['recipe: back\nversion: "1"\nstart: s0\nsteps:', "  done: {complete: ok}"]
    lines.append(f"  s{n - 1}: {{decide: [{{when: 'via > 1.0', goto: done}}, {{goto: done}}]}}")
    lines += [f"  s{i}: {{wait: 1s, next: s{i + 1}}}" for i in range(n - 2, 0, -1)]
    lines.append(
        "  s0: {sample: {volume_ml: 0.5, panel: [viability]}, bind: {via: viability_pct}, next: s1}"
    )
    return "\n".join(lines) + "\n"


def typos(n: int) -> str:
    steps = "".join(f"  s{i}: {{wait: 1s, next: s{i + 1}x}}\n" for i in range(n - 1))
    return f'recipe: typos\nversion: "1"\nstart: s0\nsteps:\n{steps}  s{n - 1}: {{complete: ok}}\n'


def best_of(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str]) -> int:
    sizes = tuple(int(a) for a in argv) or SIZES
    limits = Limits(file_bytes=64 << 20, nodes=50 * max(sizes), steps=max(sizes) + 10)
    print(f"recipe loader, Python {platform.python_version()} on {platform.machine()}")
    head = ("steps", "KiB", "yaml s", "load s", "ratio", "us/step")
    print(f"{'shape':9} " + " ".join(f"{h:>8}" for h in head))
    for n in sizes:
        for shape, make in (("forward", forward), ("backward", backward), ("typos", typos)):
            text = make(n)
            runs = 3 if n <= 5000 else 1
            raw = best_of(lambda text=text: yaml.safe_load(text), runs)
            answer: list[object] = []

            def load(text: str = text, name: str = f"{shape}.yaml", answer=answer) -> None:
                answer[:] = [load_recipe_text(text, name, limits)]

            full = best_of(load, runs)
            recipe, diags = answer[0]  # type: ignore[misc]
            valid = recipe is not None or shape == "typos"
            note = "" if valid else f"  unexpected: {diags[0].format()}"
            print(
                f"{shape:9} {n:8d} {len(text) / 1024:8.0f} {raw:8.3f} {full:8.3f} "
                f"{full / raw:8.2f} {full / n * 1e6:8.1f}{note}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
