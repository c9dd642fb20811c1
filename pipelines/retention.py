"""Retention (gallring): raw delivered files and person-level rows are deleted after a configurable period;
aggregates stay; every deletion is written to the audit log (PRIVACY.md, "Keeping and deleting").

What is deleted when older than the retention period (``EST_RETENTION_DAYS``, default
:data:`DEFAULT_RETENTION_DAYS`):

- raw files in ``inbox/<partner>/``: a file whose content the ledger received before the cut-off, or any file
  last modified before it (a file never applied ages out too: it still holds personal data);
- the person-level values of incidents that occurred before the cut-off: ``persons`` (pseudonyms) and
  ``description`` (scrubbed free text) become NULL. The incident rows themselves stay: ``weekly_counts`` is
  rebuilt from them, and aggregates are kept;
- quarantine rows of deliveries received before the cut-off.

The database work is one transaction that also writes the ``gallring`` audit entry (counts only, never values);
files are deleted after it commits, so a crash leaves at worst files that the next run deletes (and logs).
Idempotent: a second run finds nothing, deletes nothing and writes no entry.
"""

from __future__ import annotations

import os
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pipelines import warehouse
from pipelines.ingest import content_hash
from pipelines.settings import Home

# 13 months: a quarter's analysis meeting and the follow-up of interventions a year on need the person-level
# layer (distinct persons per cell, revisions of old records); beyond that only aggregates are needed. Shorter
# is better where the municipality's records-management plan (dokumenthanteringsplan) allows it.
DEFAULT_RETENTION_DAYS = 395
RETENTION_ENV_VAR = "EST_RETENTION_DAYS"
# Never shorter than a quarter and its weeks: a shorter setting would delete what the running quarter needs.
MIN_RETENTION_DAYS = 100
AUDIT_ACTION = "gallring"


def retention_days(value: str | int | None = None) -> int:
    """The configured period in days (argument, else ``EST_RETENTION_DAYS``, else the default)."""
    raw = value if value is not None else os.environ.get(RETENTION_ENV_VAR)
    if raw is None or str(raw).strip() == "":
        return DEFAULT_RETENTION_DAYS
    try:
        days = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"{RETENTION_ENV_VAR}={raw!r} is not a whole number of days") from None
    if days < MIN_RETENTION_DAYS:
        raise ValueError(f"{RETENTION_ENV_VAR}={days} is shorter than the minimum of {MIN_RETENTION_DAYS} days")
    return days


@dataclass
class RetentionResult:
    cutoff: str
    files_deleted: int = 0
    bytes_deleted: int = 0
    incidents_cleared: int = 0
    quarantine_deleted: int = 0
    files: list[str] = field(default_factory=list)  # inbox-relative names: partner/file (no personal values)

    @property
    def anything(self) -> bool:
        return bool(self.files_deleted or self.incidents_cleared or self.quarantine_deleted)


def _expired_files(con, home: Home, cutoff: datetime) -> list[Path]:
    if not home.inbox.is_dir():
        return []
    received = dict(con.execute("SELECT delivery_id, received_at FROM ingest_ledger").fetchall())
    expired = []
    for path in sorted(p for p in home.inbox.rglob("*") if p.is_file()):
        modified = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        when = received.get(content_hash(path))
        if modified < cutoff or (when is not None and when < cutoff):
            expired.append(path)
    return expired


def run_retention(home: Home, now: datetime | None = None, days: int | None = None) -> RetentionResult:
    """Delete what is older than the retention period and log it (see the module docstring)."""
    now = now or datetime.now(timezone.utc)
    cutoff = now - timedelta(days=retention_days(days))
    result = RetentionResult(cutoff=cutoff.isoformat())
    with closing(warehouse.connect(home)) as con:
        files = _expired_files(con, home, cutoff)
        with warehouse.transaction(con):
            result.incidents_cleared = con.execute(
                warehouse.sql_text("retention_person_level"), {"cutoff": cutoff}).fetchone()[0]
            result.quarantine_deleted = con.execute(
                warehouse.sql_text("retention_quarantine"), {"cutoff": cutoff}).fetchone()[0]
            result.files_deleted = len(files)
            result.bytes_deleted = sum(p.stat().st_size for p in files)
            result.files = [str(p.relative_to(home.inbox)) for p in files]
            if result.anything:
                warehouse.audit(con, AUDIT_ACTION, "inbox, incidents, quarantine", detail={
                    **{k: v for k, v in asdict(result).items()}, "retention_days": retention_days(days),
                }, at=now)
        # Writers leave compaction to this step (warehouse.connect says why): when this run has cleared rows,
        # those and the rows deleted by revisions and withdrawn periods since are removed from the file.
        warehouse.compact(con)
    for path in files:
        path.unlink(missing_ok=True)
    return result
