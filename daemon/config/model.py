"""The site as typed pydantic models: what ``site.yaml`` may say, and its JSON Schema.

A site is the set of instruments one daemon drives and how to reach them, plus where
it keeps its journal, where its API listens, its clock and its policy. It is the only
place where units and hosts are named: recipes name capabilities, so an approved
recipe runs unchanged at any site. This module owns the shape of the file (keys,
types, defaults, descriptions: the JSON Schema of ``cellfab site schema``) and the
rules that need no file system (``RuleError`` from a model validator):

* names are unique across shuttles, analyzers and balances, and so are endpoints
  (a URL, a ``host:port``, a serial device serves one instrument);
* the API binds to loopback or a UNIX socket unless TLS is configured (decision 0055);
* a time scale other than 1 is for twins only and must say ``simulation: true``
  (decision 0056);
* a shuttle's security is either a development instrument (``allow_none: true``,
  nothing else) or a secure policy with all four identity files.

Paths are resolved when validated with ``context={"base": folder}`` (the site file's
folder): ``~`` is expanded and relative paths are taken from that folder, so a
validated ``Site`` holds absolute paths. Whether files exist is checked by
``daemon.config.load`` (it needs the file system and reports at the naming line).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from daemon.config.addresses import (
    DEFAULT_API_PORT,
    HostPort,
    UnixSocket,
    canonical_opc_url,
    parse_bind,
    parse_host_port,
    resolve_path,
)
from daemon.config.errors import Problem, RuleError, rule
from drivers import icd

SCHEMA_ID: Final = "https://cellfab.example/schemas/site-v1.json"
NAME_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9._-]{0,31}$"
UNIT_PATTERN: Final = f"^{icd.ID_RE.pattern}$"
MAX_TIME_SCALE: Final = 1e7  # the twins' own upper bound (ICD 4)
PATTERNS: Final = {  # what each pattern wants, in words (the hint of a mismatch)
    NAME_PATTERN: "a name starts with a letter, then up to 31 letters, digits, '.', '_' or '-'",
    UNIT_PATTERN: "a unit id is 1 to 32 letters, digits, '.', '_' or '-' (ICD 0), e.g. INC07",
}


# --------------------------------------------------------------------------- paths
@dataclass(frozen=True, slots=True)
class PathKind:
    """What a path field names, for the file checks: a readable ``file``, a ``folder``,
    a recipe ``source`` (file or folder), or a ``journal`` (its folder must exist or be
    creatable)."""

    kind: Literal["file", "folder", "source", "journal"]


def _base(info: ValidationInfo) -> Path | None:
    base = (info.context or {}).get("base")
    return Path(base) if base is not None else None


def _to_path(value: Any, info: ValidationInfo) -> Path:
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str):
        raise PydanticCustomError("string_type", "a path is text")
    if not value.strip():
        raise rule("a path must not be empty", "write the path, relative to the site file")
    if "\x00" in value:
        raise rule("a path cannot hold a NUL character")
    return resolve_path(value, _base(info))


def _path(kind: Literal["file", "folder", "source", "journal"], what: str) -> Any:
    return Annotated[
        Path,
        BeforeValidator(_to_path),
        PlainSerializer(str, return_type=str),
        WithJsonSchema({"type": "string", "description": what}),
        PathKind(kind),
    ]


CertFile = _path("file", "A file (PEM or DER); relative paths are relative to the site file")
KeyFile = _path("file", "A private key file (PEM); relative to the site file")
Folder = _path("folder", "A folder; relative paths are relative to the site file")
RecipeSource = _path("source", "A recipe file or a folder of them, relative to the site file")
JournalFile = _path("journal", "The journal database file, relative to the site file")

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
UnitId = Annotated[str, StringConstraints(pattern=UNIT_PATTERN)]


def _text(check: Callable[[str, Path | None], object]) -> Any:
    """A text field written back in the canonical form ``check(text, base)`` gives (it
    raises RuleError for a text it refuses)."""

    def validate(value: Any, info: ValidationInfo) -> str:
        if not isinstance(value, str):
            raise PydanticCustomError("string_type", "expected text")
        return str(check(value, _base(info)))

    return BeforeValidator(validate)


ApiBind = Annotated[
    str,
    _text(parse_bind),
    WithJsonSchema(
        {"type": "string", "examples": ["127.0.0.1:8470", "unix:/run/cellfab/api.sock"]}
    ),
]
TcpAddress = Annotated[
    str,
    _text(lambda text, _base: parse_host_port(text, icd.DEFAULT_CELLQ_PORT)),
    WithJsonSchema({"type": "string", "examples": ["10.0.0.12:5020"]}),
]
OpcUrl = Annotated[
    str,
    _text(lambda text, _base: canonical_opc_url(text)),
    WithJsonSchema({"type": "string", "examples": ["opc.tcp://10.0.0.5:4840/shuttle"]}),
]
Device = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


# --------------------------------------------------------------------------- models
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Clock(_Model):
    """How fast process time runs against the wall clock."""

    time_scale: float = Field(
        1.0,
        ge=1.0,
        le=MAX_TIME_SCALE,
        allow_inf_nan=False,
        description="Process seconds per wall second: 1 is real time, the only scale a real "
        "instrument follows; above 1 (up to 1e7) only for twins, with simulation: true",
    )
    simulation: bool = Field(
        False,
        description="true when every instrument is a software twin (cellfab sim): required "
        "for a time scale other than 1, so a real cell cannot be run fast by a typo",
    )

    @model_validator(mode="after")
    def _simulated_time_needs_twins(self) -> Clock:
        if self.time_scale != 1.0 and not self.simulation:
            raise rule(
                f"a time scale of {self.time_scale:g} needs 'simulation: true' "
                "(rule: only twins run faster than the wall clock)",
                "real instruments follow the wall clock: use time_scale: 1, or add "
                "'simulation: true' when every instrument is a twin",
                "time_scale",
            )
        return self


class Tls(_Model):
    """The API's TLS identity (required when it binds beyond loopback)."""

    certificate: CertFile = Field(description="The API server's certificate chain (PEM)")
    private_key: KeyFile = Field(description="The API server's private key (PEM, unencrypted)")


class Api(_Model):
    """Where the HTTP control API listens."""

    bind: ApiBind = Field(
        f"127.0.0.1:{DEFAULT_API_PORT}",
        description="host:port ([v6]:port; port 0 picks a free one) or unix:PATH. Loopback by "
        "default; any other address (0.0.0.0 included) must be written and needs tls",
    )
    tls: Tls | None = Field(
        None, description="certificate and private_key: required when bind is not loopback"
    )

    @property
    def endpoint(self) -> HostPort | UnixSocket:
        return parse_bind(self.bind)

    @model_validator(mode="after")
    def _tls_beyond_loopback(self) -> Api:
        endpoint = self.endpoint
        if isinstance(endpoint, UnixSocket) and self.tls is not None:
            raise rule(
                "tls is for an API on TCP; a UNIX socket is guarded by its file permissions",
                "remove tls, or bind to host:port",
                "tls",
                key=True,
            )
        if isinstance(endpoint, HostPort) and not endpoint.is_loopback and self.tls is None:
            raise rule(
                f"the API would listen on {endpoint} without TLS "
                "(rule: never beyond loopback without TLS)",
                "add tls: {certificate: ..., private_key: ...}, or bind to 127.0.0.1:PORT "
                "or unix:/run/cellfab/api.sock",
                "bind",
            )
        return self


class Policy(_Model):
    """What the daemon allows beyond the GMP defaults."""

    allow_unapproved_recipes: bool = Field(
        False,
        description="DEVELOPMENT ONLY: start batches on draft recipes (not approved and "
        "pinned by hash); the log and every batch record say so loudly",
    )


class Argon2(_Model):
    """argon2id parameters of password hashes (RFC 9106's second recommended option)."""

    time_cost: int = Field(3, ge=1, le=20, description="Passes over the memory")
    memory_kib: int = Field(65536, ge=1024, le=4 * 1024 * 1024, description="Memory, KiB")
    parallelism: int = Field(4, ge=1, le=16, description="Lanes")

    @property
    def weak(self) -> bool:
        return self.time_cost < 3 or self.memory_kib < 65536


class Auth(_Model):
    """Sign-in: token lifetime and password hashing (decisions 0080, 0081)."""

    token_hours: float = Field(
        12.0,
        gt=0,
        le=24 * 7,
        allow_inf_nan=False,
        description="How long a sign-in token lasts (hours; then sign in again)",
    )
    argon2: Argon2 = Field(
        default_factory=Argon2,
        description="Password hash cost; below the default only with clock.simulation: true",
    )


class Security(_Model):
    """How the daemon secures its OPC UA channel to one shuttle."""

    allow_none: bool = Field(
        False,
        description="DEVELOPMENT ONLY: security policy None (no signing, no encryption), for "
        "twins and instruments configured for development; takes no other key",
    )
    policy: Literal["Basic256Sha256", "Aes256_Sha256_RsaPss"] = Field(
        "Basic256Sha256",
        description="OPC UA security policy, always with SignAndEncrypt (ICD 1); the "
        "deprecated Basic128Rsa15 and Basic256 are refused",
    )
    certificate: CertFile | None = Field(None, description="Our client certificate")
    private_key: KeyFile | None = Field(None, description="Our client private key")
    server_certificate: CertFile | None = Field(
        None, description="The shuttle's certificate, pinned (compared byte for byte)"
    )
    trust: Folder | None = Field(
        None, description="Folder of trusted server certificates or their CAs"
    )
    revocation: Folder | None = Field(
        None, description="Optional folder of certificate revocation lists"
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a development instrument is written as it is configured: {allow_none: true}
        return {"allow_none": True} if self.allow_none else handler(self)

    @model_validator(mode="after")
    def _one_kind(self) -> Security:
        given = [k for k in type(self).model_fields if k in self.model_fields_set]
        if self.allow_none:
            extra = [k for k in given if k != "allow_none"]
            if extra:
                raise RuleError(
                    Problem(
                        (k,),
                        f"'{k}' has no use with allow_none: true",
                        "a development instrument has no security; remove the key, or "
                        "remove allow_none to secure the channel",
                        key=True,
                    )
                    for k in extra
                )
            return self
        missing = [k for k in _IDENTITY if getattr(self, k) is None]
        if missing:
            raise rule(
                f"security is missing {', '.join(repr(k) for k in missing)}",
                f"a {self.policy} channel needs certificate, private_key, server_certificate "
                "and trust; or write {allow_none: true} for a development instrument",
                key=True,
            )
        return self


_IDENTITY: Final = ("certificate", "private_key", "server_certificate", "trust")


class Shuttle(_Model):
    """A Cell Shuttle, reached over OPC UA."""

    name: Name = Field(description="Unique name of this instrument in the site")
    url: OpcUrl = Field(description="The shuttle's endpoint: opc.tcp://host:4840/shuttle")
    security: Security = Field(
        description="{policy: ..., certificate: ..., private_key: ..., server_certificate: ..., "
        "trust: ...}, or {allow_none: true} for a development instrument"
    )
    out_of_service: list[UnitId] = Field(
        default_factory=list,
        description="Units (bays, e.g. INC07) of this shuttle that the site does not use",
    )

    def wire(self) -> tuple[tuple[str, ...], tuple[str, str]]:
        """Where the endpoint is written, and the endpoint as compared (host in lower case)."""
        parts = urlsplit(self.url)
        return ("url",), ("opc.tcp", f"opc.tcp://{parts.netloc.lower()}{parts.path}")

    @model_validator(mode="after")
    def _units_once(self) -> Shuttle:
        seen: set[str] = set()
        problems = []
        for i, unit in enumerate(self.out_of_service):
            if unit in seen:
                problems.append(Problem(("out_of_service", i), f"unit {unit} is listed twice"))
            seen.add(unit)
        if problems:
            raise RuleError(problems)
        return self


class Rtu(_Model):
    """Modbus RTU line settings (ICD 2: 19200 baud, 8N1 unless the site says otherwise)."""

    device: Device = Field(description="The serial device, e.g. /dev/ttyUSB0")
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = Field(
        19200, description="Line speed in baud"
    )
    bytesize: Literal[7, 8] = Field(8, description="Data bits")
    parity: Literal["N", "E", "O"] = Field("N", description="N (none), E (even) or O (odd)")
    stopbits: Literal[1, 2] = Field(1, description="Stop bits")


class Analyzer(_Model):
    """A Cell Q QC analyzer, reached over Modbus TCP or RTU."""

    name: Name = Field(description="Unique name of this instrument in the site")
    tcp: TcpAddress | None = Field(
        None, description="Modbus TCP host:port (port 5020 when omitted); or give rtu"
    )
    rtu: Rtu | None = Field(None, description="Modbus RTU device and line settings; or give tcp")
    device_id: int = Field(
        icd.CELLQ_DEVICE_ID, ge=1, le=247, description="Modbus device (unit) id, 1 per ICD 2"
    )

    @property
    def endpoint(self) -> HostPort | Rtu:
        if self.rtu is not None:
            return self.rtu
        assert self.tcp is not None
        return parse_host_port(self.tcp, icd.DEFAULT_CELLQ_PORT)

    def wire(self) -> tuple[tuple[str, ...], tuple[str, str]]:
        """Where the endpoint is written, and the endpoint as compared."""
        if self.rtu is not None:
            return ("rtu", "device"), ("serial", os.path.normpath(self.rtu.device))
        return ("tcp",), ("tcp", str(self.endpoint).lower())

    @model_validator(mode="after")
    def _one_wire(self) -> Analyzer:
        if (self.tcp is None) == (self.rtu is None):
            both = self.tcp is not None
            raise rule(
                f"analyzer {self.name} {'gives both tcp and rtu' if both else 'gives no wire'}",
                "give either tcp: host:port or rtu: {device: /dev/ttyUSB0}",
                key=True,
            )
        return self


class Balance(_Model):
    """An MT-SICS balance on a serial line (9600 8N1, ICD 3)."""

    name: Name = Field(description="Unique name of this instrument in the site")
    device: Device = Field(description="The serial device, e.g. /dev/ttyUSB1")

    def wire(self) -> tuple[tuple[str, ...], tuple[str, str]]:
        """Where the endpoint is written, and the endpoint as compared."""
        return ("device",), ("serial", os.path.normpath(self.device))


class Site(_Model):
    """A cellfab site: the instruments of one cell and how the daemon runs them."""

    model_config = ConfigDict(title="cellfab site", json_schema_extra={"$id": SCHEMA_ID})

    site: Name = Field(description="Name of this site (cell), e.g. cell-a")
    clock: Clock = Field(default_factory=Clock, description="Real time, or a twin time scale")
    journal: JournalFile = Field(
        description="The journal (SQLite) file; its folder must exist or be creatable"
    )
    api: Api = Field(default_factory=Api, description="Where the HTTP control API listens")
    policy: Policy = Field(default_factory=Policy, description="Development relaxations")
    auth: Auth = Field(default_factory=Auth, description="Sign-in and password hashing")
    recipes: list[RecipeSource] = Field(
        default_factory=list,
        description="The recipe library: recipe files and folders of them",
    )
    shuttles: list[Shuttle] = Field(min_length=1, description="The Cell Shuttles (at least one)")
    analyzers: list[Analyzer] = Field(default_factory=list, description="The Cell Q analyzers")
    balances: list[Balance] = Field(default_factory=list, description="The balances")

    @model_validator(mode="after")
    def _weak_hashes_only_simulated(self) -> Site:
        if self.auth.argon2.weak and not self.clock.simulation:
            raise rule(
                "password hashes cheaper than argon2id t=3, m=64 MiB are for simulated "
                "sites only (rule: real users get the recommended cost)",
                "remove auth.argon2, or set clock.simulation: true for a test site",
                "auth",
            )
        return self

    @model_validator(mode="after")
    def _each_once(self) -> Site:
        problems: list[Problem] = []
        names: dict[str, str] = {}
        wires: dict[tuple[str, str], str] = {}
        kinds = (("shuttles", self.shuttles), ("analyzers", self.analyzers))
        for kind, items in (*kinds, ("balances", self.balances)):
            for i, item in enumerate(items):
                where = f"{item.name} ({kind}[{i}])"
                if item.name in names:
                    problems.append(
                        Problem(
                            (kind, i, "name"),
                            f"the name {item.name} is taken by {names[item.name]}",
                            "names are unique across shuttles, analyzers and balances",
                        )
                    )
                names.setdefault(item.name, f"{kind}[{i}]")
                at, wire = item.wire()
                if wire in wires:
                    problems.append(
                        Problem(
                            (kind, i, *at),
                            f"{wire[1]} is already the endpoint of {wires[wire]}",
                            "one endpoint (URL, host:port or serial device) serves one instrument",
                        )
                    )
                wires.setdefault(wire, where)
        if problems:
            raise RuleError(problems)
        return self


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a site file (``cellfab site schema``)."""
    schema = Site.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
