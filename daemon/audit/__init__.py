"""The audit trail: append-only, hash-chained, in the journal's database (decision 0083).

Who did what to which object (field, old and new value), when (UTC) and why, for every
change a person makes (and the engine's own holds), with the electronic signatures of
21 CFR Part 11 inside the rows they sign. The modules, one owner each:

* ``chain``: the row format, the canonical JSON, the hash chain and the ONE insert
  (``append_rows``: its statement is the only insert into the table anywhere; nothing
  updates or deletes a row, and the schema's triggers refuse both);
* ``entries``: ``Actor``, ``Entry`` (a row to be written), ``Act`` (a person's request as
  the engine passes it on), and the reading side (``AuditRow``, ``read_rows``);
* ``signatures``: ``SignatureDraft`` (what a signer signs: meaning, object, content),
  the manifest and its sha256, ``verify_signature``, and the derivers that rebuild a
  signed content from the database (``register_deriver`` for new kinds);
* ``trail``: ``AuditTrail``, the daemon's one writer of audit rows (through the
  journal's writer thread, with the records they accompany) and its reader;
* ``batches``: the engine's auditor (a batch command, confirmation or creation and its
  audit row in one transaction; the signatures stop, abort and a QA confirmation need);
* ``verify``: ``cellfab audit verify`` (altered, deleted, inserted, reordered rows, and
  signed records that changed); ``export``: the readable extract and CSV.
"""
