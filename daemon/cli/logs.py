"""Logging for every `cellfab` command: structlog, configured once, here.

This module owns the one logging configuration of the process. Our code logs with
``structlog.get_logger("cellfab.<area>")`` and key=value fields; third-party libraries
(asyncua, pymodbus) log through the standard library. Both go through one handler on
the root logger whose ``ProcessorFormatter`` runs the same processors (level, logger
name, UTC timestamp, exception) and the same renderer, so every line has one format:

* a terminal (stderr is a tty): structlog's ConsoleRenderer, readable, in colour;
* otherwise (a file, a pipe, journald): plain ``key=value`` lines (logfmt);
* ``--log-json``: one JSON object per line, for log shippers.

``--log-level`` filters our loggers; third-party loggers stay at WARNING unless the
level is DEBUG (asyncua says a lot at INFO).
"""

from __future__ import annotations

import logging
import sys
from typing import Final, TextIO

import structlog
from structlog.typing import Processor

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
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    if json:
        final: list[Processor] = [structlog.processors.dict_tracebacks]
        renderer = structlog.processors.JSONRenderer()
    elif _isatty(stream if stream is not None else sys.stderr):
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
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
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


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream is not a terminal
        return False
