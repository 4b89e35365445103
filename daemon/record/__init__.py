"""The electronic batch record (issue #11): one batch's story from the journal, for QA.

``gather(path, batch_id)`` reads it and ``html(record)`` / ``pdf(record)`` render it;
``GET /batches/{id}/record`` and ``cellfab batch report ID`` serve it. The modules, one
owner each:

* ``model``: the record as frozen dataclasses (identity, recipe and approval, steps
  and their tasks, QC results and limits, deviations, commands, alarms, signatures,
  the audit extract);
* ``gather``: the journal's records of the batch folded with the engine's reducer,
  its audit rows with each signature verified, the recipe's lifecycle; the alarm hook
  (``AlarmSource``);
* ``limits``: the limits a recipe's guards state on a value, and their verdicts;
* ``timeline``: the picture of the steps per unit (matplotlib, SVG);
* ``render``: the self-contained HTML (Jinja2, autoescaped; ``templates/``) and the
  PDF (WeasyPrint; decision 0125).
"""

from daemon.record.gather import AlarmSource, RecordError, UnknownBatch, gather
from daemon.record.render import PdfUnavailable, html, pdf

__all__ = ["AlarmSource", "PdfUnavailable", "RecordError", "UnknownBatch", "gather", "html", "pdf"]
