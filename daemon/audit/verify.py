"""``cellfab audit verify``: is the audit trail as it was written?

Read-only (a snapshot; safe while the daemon runs). It finds, and names by seq:

* altered: a row whose body no longer matches its hash (a changed value);
* deleted: a gap in the seqs, or a row whose predecessor's hash is in no row;
* inserted: a row that is not in the chain (a later row follows the one before it), or
  one that neither matches its hash nor follows its predecessor;
* reordered: a row that follows a row stored after it;
* columns: an indexed column that disagrees with the row's body;
* signature: a signature whose manifest no longer matches its sha256, or whose signed
  record (rebuilt from the database by ``signatures.derive``) changed after signing;
* unaudited: a person's journal record (BatchCreated, CommandIssued, Confirmed) written
  since the trail exists without its audit row (a tail of the trail cut off);
* anchor: the row of ``anchor`` (a seq and hash noted earlier, e.g. from the daemon's
  log) is not there as noted: the whole chain after it was rewritten.

A hash chain shows changes made by anyone who does not recompute it; whoever rewrites
the whole chain is caught by an anchor kept elsewhere (decision 0083).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import daemon.audit.batches
import daemon.lifecycle  # noqa: F401  (registers the recipe signature deriver)
from daemon.audit.chain import COLUMNS, GENESIS, row_hash
from daemon.audit.signatures import derive, verify_signature
from daemon.journal import files, schema
from daemon.journal.errors import sqlite_said

__all__ = ["AuditReport", "Problem", "signature_problem", "verify"]

MAX_LISTED: Final = 50
AUDITED_RECORDS: Final = ("BatchCreated", "CommandIssued", "Confirmed")


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str  # altered, deleted, inserted, reordered, columns, signature, unaudited, anchor
    seq: int | None
    text: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.text}"


@dataclass(slots=True)
class AuditReport:
    path: Path
    rows: int = 0
    signatures: int = 0
    head: tuple[int, str] = (0, GENESIS)
    problems: list[Problem] = field(default_factory=list)
    unlisted: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, seq: int | None, text: str) -> None:
        if len(self.problems) < MAX_LISTED:
            self.problems.append(Problem(kind, seq, text))
        else:
            self.unlisted += 1


@dataclass(frozen=True, slots=True)
class _Row:
    seq: int
    columns: tuple[Any, ...]
    body: str
    prev: str
    hash: str


def verify(path: Path, anchor: tuple[int, str] | None = None) -> AuditReport:
    """Check the audit trail of the journal at ``path`` (typed JournalErrors for a file
    that is no journal; a report naming every problem otherwise)."""
    files.examine(path)
    report = AuditReport(path)
    with contextlib.closing(files.connect_ro(path)) as conn:
        conn.execute("BEGIN")
        try:
            rows = [
                _Row(int(r[0]), tuple(r[1:7]), str(r[7]), str(r[8]), str(r[9]))
                for r in conn.execute(
                    f"SELECT seq, {', '.join(COLUMNS)}, body, prev, hash FROM audit ORDER BY seq"
                )
            ]
            report.rows = len(rows)
            if rows:
                report.head = (rows[-1].seq, rows[-1].hash)
            _chain(rows, report)
            bodies = _bodies(rows, report)
            _signatures(conn, bodies, report)
            _unaudited(conn, bodies, report)
        except sqlite3.DatabaseError as exc:
            report.add("damaged", None, f"SQLite says: {sqlite_said(exc)}")
    if anchor is not None:
        _anchor(rows, anchor, report)
    return report


def _chain(rows: list[_Row], report: AuditReport) -> None:
    where = {row.hash: i for i, row in enumerate(rows)}
    expected, last_seq = GENESIS, 0
    explained: set[int] = set()
    for i, row in enumerate(rows):
        gap = row.seq != last_seq + 1
        if gap:
            missing = (
                f"seq {last_seq + 1}"
                if row.seq == last_seq + 2
                else f"seqs {last_seq + 1}..{row.seq - 1}"
            )
            report.add("deleted", last_seq + 1, f"{missing} missing (before seq {row.seq})")
        own = row_hash(row.prev, row.body) == row.hash
        linked = row.prev == expected
        j = where.get(row.prev)
        if linked and not own:
            report.add(
                "altered", row.seq, f"seq {row.seq} changed: its content does not match its hash"
            )
        elif not linked and i not in explained:
            if j is not None and j > i:
                explained.update((j, j + 1))  # the moved row and the one after it
                report.add(
                    "reordered",
                    row.seq,
                    f"seq {row.seq} follows seq {rows[j].seq} in the chain but is stored before it",
                )
            elif j is not None and j < i - 1:
                between = ", ".join(str(rows[k].seq) for k in range(j + 1, i))
                report.add(
                    "inserted",
                    rows[j + 1].seq,
                    f"seq {between} not in the chain (seq {row.seq} follows seq {rows[j].seq})",
                )
            elif not own:
                report.add(
                    "inserted",
                    row.seq,
                    f"seq {row.seq} was not written by cellfab: it neither matches its hash "
                    f"nor follows seq {last_seq}",
                )
            elif not gap:
                report.add(
                    "deleted",
                    row.seq,
                    f"the row before seq {row.seq} is not the one it follows (a row deleted "
                    f"and the rest renumbered, or seq {last_seq} altered and re-hashed)",
                )
        expected, last_seq = row.hash, row.seq


def _bodies(rows: list[_Row], report: AuditReport) -> list[tuple[int, dict[str, Any]]]:
    out: list[tuple[int, dict[str, Any]]] = []
    for row in rows:
        try:
            body = json.loads(row.body)
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            report.add("altered", row.seq, f"seq {row.seq}: its body is not JSON ({exc})")
            continue
        for name, value in zip(COLUMNS, row.columns, strict=True):
            if str(body.get(name)) != str(value):
                report.add(
                    "columns",
                    row.seq,
                    f"seq {row.seq}: column {name} {value!r} disagrees with its body "
                    f"{body.get(name)!r}",
                )
        out.append((row.seq, body))
    return out


def signature_problem(conn: sqlite3.Connection, body: Mapping[str, Any]) -> str:
    """Why the signature of an audit row body does not hold ("" when it does)."""
    stored = body.get("signature")
    if not isinstance(stored, dict):
        return ""
    if not verify_signature(stored):
        return "its manifest does not match its sha256"
    content = derive(conn, body)
    if content is None:
        return ""
    if isinstance(content, str):
        return f"the signed record cannot be checked: {content}"
    if verify_signature(stored, content):
        return ""
    signed = stored["manifest"].get("content", {})
    changed = [
        f"{k} {signed.get(k)!r} -> {content.get(k)!r}"
        for k in sorted(set(signed) | set(content))
        if signed.get(k) != content.get(k)
    ]
    return "the signed record changed after signing: " + "; ".join(changed)


def _signatures(
    conn: sqlite3.Connection, bodies: list[tuple[int, dict[str, Any]]], report: AuditReport
) -> None:
    for seq, body in bodies:
        if not isinstance(body.get("signature"), dict):
            continue
        report.signatures += 1
        problem = signature_problem(conn, body)
        if problem:
            manifest = body["signature"].get("manifest", {})
            who = manifest.get("signer", {}).get("user_name", "?")
            report.add(
                "signature",
                seq,
                f"seq {seq}: the signature {manifest.get('meaning', '?')!r} by {who} on "
                f"{body.get('object_type')} {body.get('object_id')} is invalid: {problem}",
            )


def _unaudited(
    conn: sqlite3.Connection, bodies: list[tuple[int, dict[str, Any]]], report: AuditReport
) -> None:
    start = int(schema.read_meta(conn).get("audit_from_seq", "1"))
    referenced = {
        body["ref"].get("seq")
        for _seq, body in bodies
        if isinstance(body.get("ref"), dict) and body["ref"].get("table") == "records"
    }
    marks = ", ".join("?" for _ in AUDITED_RECORDS)
    for seq, type_name, batch_id in conn.execute(
        f"SELECT seq, type, batch_id FROM records WHERE seq >= ? AND type IN ({marks}) "
        "ORDER BY seq",
        (start, *AUDITED_RECORDS),
    ):
        if seq not in referenced:
            report.add(
                "unaudited",
                None,
                f"journal seq {seq} ({type_name} of {batch_id}) has no audit row",
            )


def _anchor(rows: list[_Row], anchor: tuple[int, str], report: AuditReport) -> None:
    seq, digest = anchor
    row = next((r for r in rows if r.seq == seq), None)
    if row is None:
        report.add("anchor", seq, f"the anchored row seq {seq} is not in the trail")
    elif row.hash != digest:
        report.add(
            "anchor",
            seq,
            f"seq {seq} has hash {row.hash[:16]}..., not the anchored {digest[:16]}...: "
            "the chain was rewritten",
        )
