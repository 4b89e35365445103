"""The batch record as one self-contained HTML file, and as PDF (decision 0125).

``html(record)`` renders ``templates/record.html.j2`` with Jinja2, autoescape on for
everything (no ``|safe`` anywhere in the template: a reason, a note, a fault text or a
recipe parameter that holds markup is shown as text). The page needs nothing outside
itself: the style is inline, the timeline (``daemon.record.timeline``) is an SVG
embedded as a ``data:`` image, and there is no script.

``pdf(record)`` is the same HTML laid out by WeasyPrint (pango underneath, a system
library; ``PdfUnavailable`` says so when it is missing). WeasyPrint fetches nothing:
its URL fetcher accepts only the embedded ``data:`` image and refuses anything else.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Final

import jinja2

from daemon.record import timeline
from daemon.record.gather import utc
from daemon.record.model import BatchRecord, Moment

__all__ = ["PdfUnavailable", "html", "pdf"]

HOURS_FORMAT: Final = "{:.2f}"


class PdfUnavailable(RuntimeError):
    """WeasyPrint (or the pango library it needs) is not there."""


def _when(moment: Moment | None) -> str:
    return "" if moment is None else utc(moment.at)


def _hours(moment: Moment | None) -> str:
    return "" if moment is None else HOURS_FORMAT.format(moment.hours)


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("daemon.record", "templates"),
        autoescape=True,  # every value, whatever the file name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, hours=_hours, value=_value, utc=utc)
    return env


_ENV: Final = _environment()


def html(record: BatchRecord) -> str:
    """The record as one HTML document."""
    picture = base64.b64encode(timeline.svg(record).encode()).decode("ascii")
    return _ENV.get_template("record.html.j2").render(
        r=record, timeline="data:image/svg+xml;base64," + picture
    )


def pdf(record: BatchRecord) -> bytes:
    """The record as PDF (the HTML laid out by WeasyPrint)."""
    try:
        import weasyprint
        from weasyprint.urls import URLFetcher
    except (ImportError, OSError) as exc:  # OSError: pango missing
        raise PdfUnavailable(f"PDF needs WeasyPrint and pango: {exc}") from None
    fetcher = URLFetcher(allowed_protocols={"data"})  # the embedded timeline, nothing else
    document = weasyprint.HTML(string=html(record), url_fetcher=fetcher)
    return bytes(document.write_pdf())
