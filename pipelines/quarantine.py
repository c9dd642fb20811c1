"""The quarantine, for the security department: list, show and release rows (issue 3, item 6).

Nothing here shows a value from a delivered file: rows are named by delivery, row number and reason.
Releasing re-reads the original delivered file from the partner's inbox (found by its content hash, the
delivery id), re-validates it with the *current* contract (e.g. after a category was added to the mapping), and
loads the quarantined rows that now pass, in one transaction that also marks them released, moves the counts
in the ledger (rows_in = loaded + quarantined still holds) and writes an audit entry 'release'.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from pipelines import validate
from pipelines.contracts import Contract
from pipelines.ingest import (
    PlacingContext, _canonical, _load, _stage_incidents, content_hash, pending_files, staged_table,
    widen_vocabularies,
)
from pipelines.readers import read_delivery
from pipelines.settings import Home
from pipelines.warehouse import audit, sql_text, transaction


class ReleaseRefused(Exception):
    """The release cannot be done (unknown delivery, file no longer in the inbox, ...)."""


def list_quarantine(con: duckdb.DuckDBPyConnection, partner: str | None = None,
                    delivery_id: str | None = None, reason: str | None = None) -> pd.DataFrame:
    """Quarantined rows still held, by partner, delivery and reason: counts and file names, no values."""
    return con.execute(sql_text("quarantine_list"), {
        "partner": partner, "delivery_id": delivery_id, "reason": reason,
    }).df()


def show_delivery(con: duckdb.DuckDBPyConnection, delivery_id: str) -> pd.DataFrame:
    """One delivery's quarantined rows: row number, reasons, released or not."""
    return con.execute(
        "SELECT q.source_row, q.reasons, q.released_at FROM quarantine AS q "
        "WHERE q.delivery_id = ? OR q.delivery_id LIKE ? || '%' ORDER BY q.source_row",
        [delivery_id, delivery_id],
    ).df()


def _resolve(con, delivery_id: str) -> tuple[str, str, str]:
    rows = con.execute(
        "SELECT delivery_id, partner, file_name FROM ingest_ledger WHERE delivery_id LIKE ? || '%' "
        "AND status = 'accepted'", [delivery_id],
    ).fetchall()
    if len(rows) != 1:
        raise ReleaseRefused(f"delivery {delivery_id!r}: {'no' if not rows else 'more than one'} accepted delivery")
    return rows[0]


def find_delivered_file(home: Home, contract: Contract, delivery_id: str, file_name: str) -> Path:
    """The delivered file in inbox/<partner>/ whose content hash is the delivery id (names may change)."""
    candidates = sorted(pending_files(home, contract), key=lambda p: p.name != file_name)
    for path in candidates:
        if content_hash(path) == delivery_id:
            return path
    raise ReleaseRefused(
        f"delivery {delivery_id[:12]} ({file_name}): the delivered file is no longer in inbox/{contract.partner}/"
    )


def release(con: duckdb.DuckDBPyConnection, home: Home, contract: Contract, delivery_id: str, master_key: bytes,
            placing: PlacingContext, at: datetime | None = None) -> dict:
    """Re-validate a delivery's quarantined rows with the current contract; load those that now pass."""
    delivery_id, partner, file_name = _resolve(con, delivery_id)
    if partner != contract.partner:
        raise ReleaseRefused(f"delivery {delivery_id[:12]} is {partner}'s, not {contract.partner}'s")
    held = {int(r[0]) for r in con.execute(
        "SELECT source_row FROM quarantine WHERE delivery_id = ? AND released_at IS NULL", [delivery_id]).fetchall()}
    path = find_delivered_file(home, contract, delivery_id, file_name)
    at = at or datetime.now(timezone.utc)
    received, number = con.execute(
        "SELECT received_at, delivery_number FROM ingest_ledger WHERE delivery_id = ?", [delivery_id]).fetchone()
    raw = read_delivery(path, contract)
    frame = _canonical(raw, contract, received)
    reasons = validate.validate(frame, contract.extent)
    broken = {row for row, _ in raw.broken_rows}
    passing = sorted(r for r in held if r not in reasons and r not in broken)
    good = frame[frame["source_row"].isin(passing)]
    staged = _stage_incidents(good, contract, master_key, placing)
    table = staged_table(staged, number)
    if len(staged):
        widen_vocabularies(con, table)
    with transaction(con):
        if len(staged):
            _load(con, table)
            con.register("released_rows", pd.DataFrame({"source_row": passing}))
            try:
                con.execute(
                    "UPDATE quarantine SET released_at = ? WHERE delivery_id = ? "
                    "AND source_row IN (SELECT source_row FROM released_rows)", [at, delivery_id])
            finally:
                con.unregister("released_rows")
            con.execute(
                "UPDATE ingest_ledger SET rows_loaded = rows_loaded + ?, rows_quarantined = rows_quarantined - ?, "
                "rows_unplaced = rows_unplaced + ? WHERE delivery_id = ?",
                [len(staged), len(staged), int(staged["location_precision"].eq("unplaced").sum()), delivery_id])
        detail = {"partner": partner, "delivery_id": delivery_id, "released": len(staged),
                  "still_quarantined": len(held) - len(staged), "contract_version": contract.version}
        audit(con, "release", file_name, detail=detail, at=at)
    return detail
