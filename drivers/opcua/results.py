"""GetResult answers of the OPC UA shuttle driver, checked against the ICD.

Owns turning the two output arguments of ``GetResult`` (Status, Outputs) into a
``TaskResult``, or an ``InvalidAnswer`` when the instrument answered outside the ICD:

* Status is one of ``icd.ResultStatus`` (an unknown word is garbage, never guessed);
* Outputs is strict JSON (no NaN or Infinity, at most ``OUTPUTS_MAX`` characters, not
  nested deeper than the decoder allows) holding an object;
* ``{}`` unless the program ended Complete or Stopped (ICD "Results");
* Complete or Stopped: every key is an output of the ICD table with a value of its kind
  (``icd.check_output``: finite numbers, ids matching the id rules); when the caller
  names the program, the keys are that program's, all of them once Complete.

Nothing that fails a check is passed on: the daemon records outputs as batch data.
"""

from __future__ import annotations

import json
from typing import Any, Final

from drivers import icd
from drivers.base import InvalidAnswer, OutputValue, TaskResult

OUTPUTS_MAX: Final = 65_536  # characters of an Outputs string the driver decodes
_WITH_OUTPUTS: Final = frozenset({icd.ResultStatus.COMPLETE, icd.ResultStatus.STOPPED})


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_result(
    instrument: str, operation: str, task_id: str, outs: list[Any], program: str | None
) -> TaskResult:
    """The ``TaskResult`` of GetResult's output arguments; ``InvalidAnswer`` if garbage."""

    def garbage(detail: str) -> InvalidAnswer:
        return InvalidAnswer(instrument, operation, detail)

    if len(outs) != 2:
        raise garbage(f"GetResult answered {len(outs)} values, not 2")
    raw_status, raw_outputs = outs
    try:
        status = icd.ResultStatus(raw_status)
    except ValueError:
        raise garbage(f"unknown result Status {str(raw_status)[:40]!r}") from None
    if raw_outputs is None:
        raw_outputs = ""
    if not isinstance(raw_outputs, str):
        raise garbage(f"Outputs is a {type(raw_outputs).__name__}, not a String")
    if len(raw_outputs) > OUTPUTS_MAX:
        raise garbage(f"Outputs is longer than {OUTPUTS_MAX} characters")
    try:
        outputs = json.loads(raw_outputs or "{}", parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise garbage(f"Outputs is not strict JSON: {str(exc)[:80]}") from None
    if not isinstance(outputs, dict):
        raise garbage("Outputs is not a JSON object")
    if status not in _WITH_OUTPUTS:
        if outputs:
            raise garbage(f"a {status} program has outputs (the ICD says {{}})")
        return TaskResult(task_id, status, {}, program)
    spec = icd.PROGRAMS.get(program) if program is not None else None
    if spec is not None:
        errors = spec.check_outputs(outputs, complete=status is icd.ResultStatus.COMPLETE)
    else:
        errors = [why for k, v in outputs.items() if (why := icd.check_output(k, v)) is not None]
    if errors:
        raise garbage("; ".join(errors[:5]))
    typed: dict[str, OutputValue] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in outputs.items()
    }
    return TaskResult(task_id, status, typed, program)
