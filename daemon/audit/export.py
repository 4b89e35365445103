"""``cellfab audit export``: the audit trail (or a batch's part of it) for people.

Rows come as plain dicts (the API's ``AuditRowOut``, or ``rows_of`` on a journal file);
``text`` writes one readable line per row (and the signature under it), ``csv_text``
one CSV row per audit row with a fixed header (values that are JSON, such as a list of
roles, are written as JSON).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from daemon.audit.entries import read_rows
from daemon.audit.verify import signature_problem
from daemon.journal import files

__all__ = ["CSV_FIELDS", "csv_text", "rows_of", "text"]

CSV_FIELDS: Final = (
    "seq",
    "at",
    "actor",
    "actor_id",
    "role",
    "action",
    "object_type",
    "object_id",
    "field",
    "old",
    "new",
    "reason",
    "batch_id",
    "ref",
    "signature_meaning",
    "signer",
    "signed_at",
    "signed_sha256",
    "signature_valid",
    "hash",
)


def rows_of(path: Path, *, examine: bool = True, **filters: Any) -> list[dict[str, Any]]:
    """The rows of the journal at ``path`` (``read_rows`` filters) as the API gives them,
    signatures checked, from one snapshot; ``examine`` first checks the file is a
    journal (a command pointed at a file; the daemon knows its own)."""
    if examine:
        files.examine(path)
    with contextlib.closing(files.connect_ro(path)) as conn:
        conn.execute("BEGIN")
        return [as_dict(conn, row.seq, row.hash, row.body) for row in read_rows(conn, **filters)]


def as_dict(conn: Any, seq: int, digest: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """One row as a plain dict (the API's ``AuditRowOut``)."""
    out = {k: body.get(k) for k in CSV_FIELDS[:14] if k not in ("seq",)}
    out.update(seq=seq, hash=digest, signature=None)
    for key in (
        "actor",
        "role",
        "action",
        "object_type",
        "object_id",
        "field",
        "reason",
        "batch_id",
        "at",
    ):
        out[key] = str(out.get(key) or "")
    stored = body.get("signature")
    if isinstance(stored, dict):
        manifest = stored.get("manifest", {})
        signer = manifest.get("signer", {})
        problem = signature_problem(conn, body)
        out["signature"] = {
            "meaning": manifest.get("meaning", ""),
            "user_id": signer.get("user_id", 0),
            "user_name": signer.get("user_name", ""),
            "printed_name": signer.get("printed_name", ""),
            "at": manifest.get("at", ""),
            "sha256": stored.get("sha256", ""),
            "manifest": manifest,
            "valid": not problem,
            "problem": problem,
        }
    return out


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def text(rows: Iterable[Mapping[str, Any]]) -> str:
    lines: list[str] = []
    for row in rows:
        what = f"{row['object_type']} {row['object_id']}"
        if row.get("field"):
            what += f" {row['field']}"
        change = ""
        if row.get("old") is not None or row.get("new") is not None:
            change = f": {_value(row.get('old')) or '-'} -> {_value(row.get('new')) or '-'}"
        who = row["actor"] + (f" ({row['role']})" if row.get("role") else "")
        lines.append(
            f"{row['seq']:>6}  {row['at']}  {who}  {row['action']}  {what}{change}"
            + (f"  -- {row['reason']}" if row.get("reason") else "")
        )
        sig = row.get("signature")
        if sig:
            state = "valid" if sig.get("valid") else f"INVALID: {sig.get('problem')}"
            lines.append(
                f"{'':>6}  signed {sig['meaning']!r} by {sig['printed_name']} "
                f"({sig['user_name']}, id {sig['user_id']}) at {sig['at']}, "
                f"sha256 {sig['sha256']} ({state})"
            )
    return "\n".join(lines) + ("\n" if lines else "")


def csv_text(rows: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for row in rows:
        sig = row.get("signature") or {}
        flat = {
            **{k: _value(row.get(k)) for k in CSV_FIELDS},
            "signature_meaning": sig.get("meaning", ""),
            "signer": sig.get("printed_name", ""),
            "signed_at": sig.get("at", ""),
            "signed_sha256": sig.get("sha256", ""),
            "signature_valid": "" if not sig else str(bool(sig.get("valid"))).lower(),
        }
        writer.writerow([flat[k] for k in CSV_FIELDS])
    return out.getvalue()
