"""Logging for every `cellfab` command: structlog, configured once, here.

This module owns the one logging configuration of the process. Our code logs with
``structlog.get_logger("cellfab.<area>")`` and key=value fields; third-party libraries
(asyncua, pymodbus) log through the standard library. Both go through one handler on
the root logger whose ``ProcessorFormatter`` runs the same processors (level, logger
name, UTC timestamp, exception) and the same renderer, so every line has one format:

* a terminal (stderr is a tty): structlog's ConsoleRenderer, readable, in colour;
* under systemd: one JSON object per line (as ``--log-json``), each prefixed with its
  syslog priority (``<3>`` for an error) when stderr is the journal, which takes the
  prefix as the entry's PRIORITY (``journalctl -p warning`` works) and keeps the JSON;
* otherwise (a file, a pipe): plain ``key=value`` lines (logfmt);
* ``--log-json``: one JSON object per line, for log shippers.

"Under systemd" is known, not guessed from a variable a child inherits: stderr is the
stream ``$JOURNAL_STREAM`` names (its device and inode), or this very process is the one
systemd started (``$INVOCATION_ID`` set and ``$SYSTEMD_EXEC_PID`` is our pid).

Structlog context variables are merged into every line: the batch engine binds
``batch``, ``step`` and ``task_id`` in each batch's tasks (``daemon.batch.runner``); a
line that names a batch and no step or task (a batch created through the API) gets
both as "", so every line of a batch has the three keys.

``--log-level`` filters our loggers; third-party loggers stay at WARNING unless the
level is DEBUG (asyncua says a lot at INFO).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Final, TextIO

import structlog
from structlog.typing import EventDict, Processor

LEVELS: Final = ("debug", "info", "warning", "error", "critical")
DEFAULT_LEVEL: Final = "info"
THIRD_PARTY: Final = ("asyncua", "pymodbus", "httpx", "httpcore", "uvicorn")
_HANDLER: Final = "cellfab"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (as the standard
    library's last-resort handler does), so a redirected stderr gets the lines."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure(
    *, json: bool = False, level: str = DEFAULT_LEVEL, stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging to ``stream`` (default: stderr) in one
    format. Calling it again replaces the handler it installed, and only that one."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    target = stream if stream is not None else sys.stderr
    journal = is_journal(target)
    json = json or journal or started_by_systemd()
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _batch_fields,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    if json:
        final: list[Processor] = [structlog.processors.dict_tracebacks]
        renderer = structlog.processors.JSONRenderer()
    elif _isatty(target):
        final = []
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    else:
        final = [structlog.processors.format_exc_info]
        renderer = structlog.processors.LogfmtRenderer(
            key_order=["timestamp", "level", "logger", "event"]
        )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.set_name(_HANDLER)
    formatter = _JournalFormatter if journal else structlog.stdlib.ProcessorFormatter
    handler.setFormatter(
        formatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *final,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        if old.get_name() == _HANDLER:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    quiet = numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(quiet)


def _batch_fields(_logger: object, _name: str, event: EventDict) -> EventDict:
    """A line about a batch says its step and TaskId, "" when it is in none."""
    if "batch" in event:
        event.setdefault("step", "")
        event.setdefault("task_id", "")
    return event


def is_journal(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``stream`` is connected to systemd's journal ($JOURNAL_STREAM is
    "device:inode" of that stream; a child whose stderr goes elsewhere inherits the
    variable, so the stream itself is compared)."""
    value = environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):  # unset, malformed, or no descriptor
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


def started_by_systemd(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether systemd started this process itself as a service's main process."""
    return bool(environ.get("INVOCATION_ID")) and environ.get("SYSTEMD_EXEC_PID") == str(
        os.getpid()
    )


class _JournalFormatter(structlog.stdlib.ProcessorFormatter):
    """Prefixes each line with its syslog priority, which the journal takes as the
    entry's PRIORITY and strips (systemd.exec(5), SyslogLevelPrefix=)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{_priority(record.levelno)}>{super().format(record)}"


def _priority(levelno: int) -> int:
    for floor, priority in ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4)):
        if levelno >= floor:
            return priority
    return 6 if levelno >= logging.INFO else 7


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream is not a terminal
        return False
