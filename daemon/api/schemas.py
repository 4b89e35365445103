"""The HTTP API's bodies: every request and response as a pydantic model.

This module owns the shape of the API (and so of ``/openapi.json``): what a client may
send and what it gets back. Requests are strict (no coercion: a number is a JSON
number, text is a JSON string), refuse unknown fields, and bound every string and
collection, so a hostile body is a 422 naming the field before any engine code runs.
Responses describe what the daemon holds; ``daemon.api.views`` fills them.

The one error body (decision 0060) is ``ErrorOut``: ``{"error", "field", "detail",
"errors"}``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
)

from daemon.batch.states import BatchState
from daemon.recipe.limits import MAX_FILE_BYTES, MAX_PARAMETERS

# ----------------------------------------------------------------------------- bounds
NAME_MAX: Final = 64  # a person's name, a role, a step, a recipe or parameter name
TEXT_MAX: Final = 1_000  # a reason or a note
VALUE_MAX: Final = 1_000  # a string parameter value
# A posted recipe may be larger than the loader's limit, so that the loader (not the
# schema) says it is too large, with a diagnostic; the body limit bounds it anyway.
RECIPE_TEXT_MAX: Final = 2 * MAX_FILE_BYTES
RECIPE_BODY_MAX: Final = 4 * RECIPE_TEXT_MAX  # JSON escapes can make the text 4x longer
BODY_MAX: Final = 64 * 1024  # every other request body

_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"  # no control characters (they would forge log lines)
Who = Annotated[
    str,
    StringConstraints(min_length=1, max_length=NAME_MAX, pattern=_PRINTABLE),
    Field(description="Who asks (a person's name or user id); recorded in the journal"),
]
Text = Annotated[str, StringConstraints(max_length=TEXT_MAX, pattern=_PRINTABLE)]
Ident = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX)]
Role = Literal["operator", "supervisor", "qa", "admin"]
CartridgeId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,32}$"),
    Field(description="The cartridge's id (ICD identifier)"),
]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def _param_value(value: Any) -> bool | int | float | str:
    """One error for a value of the wrong kind (a union would report one per member)."""
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("a number must be finite")
        return value
    if isinstance(value, str):
        if len(value) > VALUE_MAX:
            raise ValueError(f"a text value has at most {VALUE_MAX} characters")
        return value
    raise ValueError("a parameter value is true/false, a number or text")


ParamValue = Annotated[
    Any,
    PlainValidator(_param_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "boolean"},
                {"type": "number"},
                {"type": "string", "maxLength": VALUE_MAX},
            ],
            "description": "A recipe parameter's value, of the parameter's type",
        }
    ),
]
CommandName = Literal["start", "stop", "hold", "restart", "abort", "reset", "pause", "resume"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- errors
class FieldErrorOut(_Out):
    field: str
    detail: str


class ErrorOut(_Out):
    """Every 4xx and 5xx answer. ``field`` names the part of the request at fault
    (``cartridge_id``, ``params.volume_ml``, ``batch_id``, ``command``, ...; "" when no
    one field is); ``errors`` lists every problem of an invalid body."""

    error: str = Field(description="not_found, invalid, refused, forbidden, too_large, ...")
    field: str
    detail: str
    errors: list[FieldErrorOut] = []


# ----------------------------------------------------------------------------- batches
class StartIn(_In):
    recipe: Ident = Field(description="The recipe's name in the site's library")
    version: Annotated[str, StringConstraints(max_length=NAME_MAX)] | None = None
    sha256: Sha256 | None = Field(None, description="Pin the exact recipe text by its hash")
    params: dict[Ident, ParamValue] = Field(default_factory=dict, max_length=MAX_PARAMETERS)
    cartridge_id: CartridgeId
    priority: int = Field(0, ge=-1000, le=1000)
    shuttle: Annotated[str, StringConstraints(max_length=NAME_MAX)] = Field(
        "", description="The shuttle the cartridge will arrive at ('' = any)"
    )
    by: Who


class CommandIn(_In):
    by: Who
    role: Role | None = None
    reason: Text = ""


class ConfirmIn(_In):
    step: Ident = Field(description="The confirm step being answered (as the prompt names it)")
    by: Who
    role: Role
    note: Text = ""


class TaskOut(_Out):
    task_id: str
    kind: str
    shuttle: str
    unit: str
    program: str
    step: str
    phase: str
    params: dict[str, Any]
    origin: str
    run_id: str
    status: str
    attempt: int
    started_pt: float
    outputs: dict[str, Any]


class JobOut(_Out):
    job_seq: int
    analyzer: str
    sample_id: str
    panel: int
    step: str
    culture_ml: float | None
    phase: str
    slot: int
    state: str
    fault: int
    results: dict[str, float]


class DeviationOut(_Out):
    kind: str
    message: str
    step: str
    unit: str
    task_id: str
    at: float
    pt: float


class PromptOut(_Out):
    """The confirm prompt a batch waits at, and the role that must answer it."""

    step: str
    visit: int
    prompt: str
    role: str


class BatchSummary(_Out):
    batch_id: str
    recipe_name: str
    recipe_version: str
    recipe_hash: str
    cartridge_id: str
    priority: int
    state: BatchState
    step: str
    step_visit: int
    shuttle: str
    location: str
    outcome: str
    outcome_reason: str
    held_by: str
    hold_reason: str
    unapproved: bool
    created_at: float
    created_by: str
    updated_at: float
    deviation_count: int
    waiting: PromptOut | None = Field(description="The confirm prompt it waits at, if any")


class BatchDetail(BatchSummary):
    recipe_file: str
    params: dict[str, Any]
    variables: dict[str, Any]
    visits: dict[str, int]
    next_step: str
    last_step: str
    run: int
    task: TaskOut | None
    jobs: list[JobOut]
    deviations: list[DeviationOut]
    confirmation: dict[str, Any] | None = Field(description="The answer to the current prompt")


class RecordOut(_Out):
    seq: int
    type: str
    at: float
    pt: float
    data: dict[str, Any]


# ----------------------------------------------------------------------------- recipes
class DiagnosticOut(_Out):
    file: str
    line: int
    column: int
    message: str
    path: str
    hint: str
    severity: str


class RecipeEntry(_Out):
    file: str
    valid: bool
    name: str | None
    version: str | None
    approval: str | None
    sha256: str | None
    description: str
    diagnostics: list[DiagnosticOut]


class ParameterOut(_Out):
    name: str
    type: str
    unit: str
    description: str
    default: float | int | str | bool | None
    min: float | None
    max: float | None
    choices: list[str] | None


class StepOut(_Out):
    name: str
    kind: str
    definition: dict[str, Any] = Field(description="The step as the recipe writes it")


class RecipeDetail(_Out):
    name: str
    version: str
    description: str
    author: str
    approval: str
    sha256: str
    file: str
    start: str
    parameters: list[ParameterOut]
    steps: list[StepOut]


class ValidateIn(_In):
    text: Annotated[str, StringConstraints(max_length=RECIPE_TEXT_MAX)] = Field(
        description="The recipe's YAML text (the loader's size limit applies)"
    )
    filename: Annotated[
        str, StringConstraints(min_length=1, max_length=255, pattern=_PRINTABLE)
    ] = "<posted>"


class ValidateOut(_Out):
    valid: bool
    name: str | None = None
    version: str | None = None
    sha256: str | None = None
    diagnostics: list[DiagnosticOut]


# ----------------------------------------------------------------------------- instruments
class UnitOut(_Out):
    unit: str
    capabilities: list[str]
    state: str
    task_id: str
    program: str
    cartridge_id: str
    progress: float
    remaining_seconds: float
    fault_code: int
    fault_text: str
    out_of_service: bool


class TransportOut(_Out):
    state: str
    task_id: str
    fault_code: int


class ShuttleOut(_Out):
    up: bool
    reason: str
    load_port: str
    output_port: list[str]
    transport: TransportOut
    units: dict[str, UnitOut]


class SlotJobOut(_Out):
    job_seq: int
    slot: int
    state: str
    progress_permille: int


class AnalyzerOut(_Out):
    up: bool
    reason: str
    state: int
    fault_code: int
    free_slots: int
    jobs: list[SlotJobOut]


class LinkOut(_Out):
    up: bool
    reason: str


class InstrumentsOut(_Out):
    links: dict[str, LinkOut]
    shuttles: dict[str, ShuttleOut]
    analyzers: dict[str, AnalyzerOut]


class QueueEntry(_Out):
    kind: str
    batch: str
    priority: int
    shuttle: str
    capability: str


class QueueOut(_Out):
    pending: list[QueueEntry]
    reserved: dict[str, str] = Field(description="shuttle/unit -> batch")
    parking: dict[str, str] = Field(description="shuttle/unit -> batch parking there")
    vacating: dict[str, str] = Field(
        description="shuttle/unit -> batch whose cartridge is being parked out of it"
    )
    transport: dict[str, str] = Field(description="shuttle -> batch holding its transport")


# ----------------------------------------------------------------------------- health
class HealthOut(_Out):
    status: Literal["serving"]
    site: str
    batches: int
    instruments: dict[str, LinkOut]
    internal_errors: int = Field(description="Requests answered 500 since start (bugs)")
