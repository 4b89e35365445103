"""Rule family "graph": the state machine as a whole, in time linear in its size.

This module owns the rules that need every step at once (they run only when every
step is well-formed):

* every step is reached from ``start`` (one search);
* from every reached step a ``complete`` or ``fail`` step can be reached (one search
  backwards from all of them at once);
* every loop has ``max_visits`` on one of its steps (strongly connected components of
  the steps without it, Tarjan's algorithm, iterative);
* every variable a guard reads is bound on every path to it (a must-analysis over a
  worklist, variable sets as bit masks): a step's results exist after it ends
  normally; those of a ``wait: false`` sample only after its ``await``; a fault edge
  carries only what was bound before the step.

Each is O(steps + edges) (the last one times the variables guards read, in machine
words), so a recipe of thousands of steps checks in well under a second.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from daemon.recipe.check.context import Context
from daemon.recipe.models import (
    AwaitStep,
    CompleteStep,
    DecideStep,
    FailStep,
    OpStep,
    SampleStep,
    branches_of,
    edges_of,
)

LOOP_SHOWN = 12  # steps a loop diagnostic names before "..."


def check_graph(ctx: Context, start: str) -> None:
    steps = ctx.steps
    order = {n: i for i, n in enumerate(steps)}
    edges = {n: [t for t in edges_of(s) if t in steps] for n, s in steps.items()}
    reached = reach([start], edges)
    for n in steps:
        if n not in reached:
            ctx.error(
                ("steps", n),
                f"step '{n}' is never reached from the start step '{start}'",
                "no step goes to it: remove it, or add a next/goto to it",
                key=True,
            )
    reverse: dict[str, list[str]] = {n: [] for n in steps}
    for n, ts in edges.items():
        for t in ts:
            reverse[t].append(n)
    ends = [n for n, s in steps.items() if isinstance(s, CompleteStep | FailStep)]
    finishing = reach(ends, reverse)
    for n in steps:
        if n in reached and n not in finishing:
            ctx.error(
                ("steps", n),
                f"from step '{n}' the batch can never complete or fail",
                "give it a path to a 'complete' or 'fail' step",
                key=True,
            )
    check_bound_before_use(ctx, start, reached)
    unbounded = {
        n: [t for t in ts if not _bounded(steps[t])]
        for n, ts in edges.items()
        if not _bounded(steps[n])
    }
    for component in cycles(unbounded):
        ranked = sorted(component, key=order.__getitem__)
        first = ranked[0]
        shown = ranked if len(ranked) <= LOOP_SHOWN else [*ranked[: LOOP_SHOWN - 1], "..."]
        ctx.error(
            ("steps", first),
            f"steps {' -> '.join(shown)} -> {first} form a loop without max_visits"
            + (f" ({len(ranked)} steps)" if len(ranked) > LOOP_SHOWN else "")
            if len(ranked) > 1
            else f"step '{first}' goes to itself without max_visits",
            f"set max_visits on one step of the loop (for example '{first}') "
            "so a batch cannot cycle forever",
            key=True,
        )


def check_bound_before_use(ctx: Context, start: str, reached: set[str]) -> None:
    """Every variable a guard reads has a value on every path to it."""
    steps = ctx.steps
    read = sorted({v for g in ctx.guards.values() for v in g.names if v in ctx.variables})
    if not read:
        return
    bit = {v: 1 << i for i, v in enumerate(read)}
    everything = (1 << len(read)) - 1

    def mask(names: Any) -> int:
        out = 0
        for v in names:
            out |= bit.get(v, 0)
        return out

    gives: dict[str, int] = {}  # what a step adds when it ends normally
    for n in reached:
        step = steps[n]
        if isinstance(step, OpStep) or (isinstance(step, SampleStep) and step.wait):
            gives[n] = mask(step.bind)
        elif isinstance(step, AwaitStep) and isinstance(steps.get(step.await_), SampleStep):
            gives[n] = mask(steps[step.await_].bind)
        else:
            gives[n] = 0

    entry = dict.fromkeys(reached, everything)
    entry[start] = 0
    todo, queued = deque([start]), {start}
    while todo:
        n = todo.popleft()
        queued.discard(n)
        out = entry[n] | gives[n]
        flows = [(t, out) for _w, t in branches_of(steps[n])]
        on_fault = getattr(steps[n], "on_fault", "hold")
        if on_fault != "hold":
            flows.append((on_fault, entry[n]))
        for target, bound in flows:
            if target in entry and (new := entry[target] & bound) != entry[target]:
                entry[target] = new
                if target not in queued:
                    queued.add(target)
                    todo.append(target)

    for (name, i), guard in ctx.guards.items():
        if name not in entry:
            continue
        available = entry[name] | gives[name]
        for var in sorted(v for v in guard.names if v in bit and not available & bit[v]):
            _unbound(ctx, name, i, guard.text, var)


def _unbound(ctx: Context, name: str, i: int, text: str, var: str) -> None:
    steps = ctx.steps
    v = ctx.variables[var]
    key = "decide" if isinstance(steps[name], DecideStep) else "next"
    late = [s for s in v.steps if isinstance(steps.get(s), SampleStep) and not steps[s].wait]
    hint = f"'{var}' is bound by step {', '.join(v.steps)}; run one on every path here"
    if late:
        hint += f" (results of '{late[0]}' arrive at its await step)"
    ctx.error(
        ("steps", name, key, i, "when"),
        f"in guard '{text}': '{var}' may have no value yet after step '{name}'",
        hint,
    )


def _bounded(step: Any) -> bool:
    return getattr(step, "max_visits", None) is not None


def reach(starts: Sequence[str], edges: Mapping[str, list[str]]) -> set[str]:
    """Every node reachable from ``starts`` (themselves included)."""
    seen = set(starts)
    todo = list(starts)
    while todo:
        for t in edges.get(todo.pop(), ()):
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return seen


def cycles(edges: Mapping[str, list[str]]) -> list[list[str]]:
    """Strongly connected components that hold a cycle (more than one node, or a node
    with an edge to itself): Tarjan's algorithm with an explicit stack."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges.get(node, ()):
                    out.append(component)
    return out
