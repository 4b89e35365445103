"""What every step executor shares: its context, its answer, and guard evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from daemon.batch.executor import StepFault
from daemon.batch.machine import Batch
from daemon.recipe import GuardError, Recipe

if TYPE_CHECKING:
    from daemon.batch.engine import Engine


@dataclass(frozen=True, slots=True)
class Next:
    """Where the batch goes after a step; ``step`` is "" when the procedure ended."""

    step: str
    outcome: str = "ok"  # ok | fault | completed | failed
    detail: str = ""


@dataclass(frozen=True, slots=True)
class StepCtx:
    engine: Engine
    batch_id: str
    recipe: Recipe
    step: str

    @property
    def batch(self) -> Batch:
        return self.engine.batch(self.batch_id)

    @property
    def spec(self) -> Any:
        return self.recipe.steps[self.step]

    def deadline(self, started_pt: float) -> float | None:
        """Process time at which the step's ``timeout`` runs out (None: no timeout, or
        the timeout already ran out in this visit and an operator chose to go on)."""
        timeout = getattr(self.spec, "timeout", None)
        if timeout is None or self.timed_out():
            return None
        from daemon.recipe import duration_seconds

        return started_pt + duration_seconds(timeout)

    def timed_out(self) -> bool:
        b = self.batch
        return any(
            d.kind == "timeout" and d.step == self.step and d.pt >= b.step_started_pt
            for d in b.deviations
        )

    def env(self) -> dict[str, Any]:
        b = self.batch
        return {
            **b.params,
            **b.variables,
            "visits": dict(b.visits),
            "elapsed_h": (self.engine.clock.now() - b.run_started_pt) / 3600.0,
        }

    def choose(self, step: str | None = None) -> Next:
        """The first branch of ``step``'s next/decide whose guard holds."""
        step = step or self.step
        env = self.env()
        for guard, target in self.recipe.branches(step):
            try:
                if guard is None or guard.evaluate(env):
                    return Next(target)
            except GuardError as exc:
                raise StepFault("guard", f"guard of step {step}: {exc}") from exc
        raise StepFault("guard", f"no branch of step {step} applies")
