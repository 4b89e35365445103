"""The graph checks do work linear in the recipe's size (counted, never timed).

Before, a chain of 4,000 steps took 7 s to validate and a chain with 2,000 misspelled
targets 18 s: loops were found with one reachability search per step, bound-before-use
swept every step until nothing changed (once per step on a chain written backwards),
and each unknown target searched every step name for a did-you-mean. Here the same
shapes are checked with the work counted: calls to ``branches_of``/``edges_of`` and
lookups in the edge map, against a constant times the number of steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from daemon.recipe import load_recipe_text
from daemon.recipe.check import graph
from daemon.recipe.check.context import SUGGESTIONS

N = 1500


class Counting(Mapping[str, list[str]]):
    """An edge map that counts how often it is read."""

    def __init__(self, edges: dict[str, list[str]]) -> None:
        self.edges, self.reads = edges, 0

    def __getitem__(self, key: str) -> list[str]:
        self.reads += 1
        return self.edges[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.edges)

    def __len__(self) -> int:
        return len(self.edges)


def backwards_chain(n: int, *, guard: bool = True, loop: bool = False) -> str:
    """Steps written last to first; s0 binds a result that the last step's guard reads."""
    lines = ['recipe: chain\nversion: "1"\nstart: s0\nsteps:']
    lines.append("  done: {complete: ok}")
    last = f"s{n - 1}"
    if guard:
        lines.append(f"  {last}: {{decide: [{{when: 'via > 1.0', goto: done}}, {{goto: done}}]}}")
    else:
        lines.append(f"  {last}: {{wait: 1s, next: {'s0' if loop else 'done'}}}")
    for i in range(n - 2, 0, -1):
        lines.append(f"  s{i}: {{wait: 1s, next: s{i + 1}}}")
    lines.append(
        "  s0: {sample: {volume_ml: 0.5, panel: [viability]}, bind: {via: viability_pct}, next: s1}"
    )
    return "\n".join(lines) + "\n"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"branches_of": 0, "edges_of": 0}
    for name in counts:
        real = getattr(graph, name)

        def counted(step, real=real, name=name):
            counts[name] += 1
            return real(step)

        monkeypatch.setattr(graph, name, counted)
    return counts


def test_bound_before_use_visits_each_step_a_bounded_number_of_times(calls) -> None:
    recipe, diags = load_recipe_text(backwards_chain(N), "chain.yaml")
    assert recipe is not None, diags[:3]
    assert "via" in recipe.guards[(f"s{N - 1}", 0)].names
    assert calls["edges_of"] <= N + 1
    assert calls["branches_of"] <= 2 * (N + 1)  # was one sweep per step: N * N


def test_a_loop_of_every_step_is_found_by_one_search(calls) -> None:
    _recipe, diags = load_recipe_text(backwards_chain(N, guard=False, loop=True), "loop.yaml")
    (loop,) = [d for d in diags if "form a loop without max_visits" in d.message]
    assert f"({N} steps)" in loop.message
    assert calls["edges_of"] <= N + 1


def test_reach_and_cycles_read_each_node_once() -> None:
    edges = {f"n{i}": [f"n{i + 1}"] for i in range(N)} | {f"n{N}": ["n0"]}
    counted = Counting(edges)
    (component,) = graph.cycles(counted)
    assert len(component) == N + 1
    assert counted.reads <= 2 * (N + 1)  # was a reachability search per node: N * N
    counted.reads = 0
    assert len(graph.reach(["n0"], counted)) == N + 1
    assert counted.reads <= N + 1


def test_thousands_of_unknown_targets_search_for_a_suggestion_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from daemon.recipe.check import context

    searches = 0
    real = context.did_you_mean

    def counted(*args, **kwargs):
        nonlocal searches
        searches += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(context, "did_you_mean", counted)
    steps = "".join(f"  s{i}: {{wait: 1s, next: s{i + 1}x}}\n" for i in range(N))
    text = f'recipe: typos\nversion: "1"\nstart: s0\nsteps:\n{steps}  s{N}: {{complete: ok}}\n'
    _recipe, diags = load_recipe_text(text, "typos.yaml")
    unknown = [d for d in diags if d.message.startswith("there is no step")]
    assert len(unknown) == N
    assert searches == SUGGESTIONS
    assert "did you mean 's1'?" in unknown[0].hint
    assert all("... and" in d.hint for d in unknown)  # the list of steps is cut short
