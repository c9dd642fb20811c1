"""The DuckDB warehouse: connections, the migration runner, SQL files and the audit log.

DuckDB allows one writer per file; the pipeline serialises writers (an Airflow pool of one slot, see dags/) and
every write happens inside one transaction, so a killed process leaves either all of a load or none of it.
"""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

import duckdb
import yaml

from pipelines.settings import SCHEMAS_DIR, SQL_DIR, Home

MIGRATION_PATTERN = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def sql_text(name: str) -> str:
    """The text of ``sql/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def migrations() -> list[tuple[int, Path]]:
    found = []
    for path in sorted(SQL_DIR.glob("*.sql")):
        match = MIGRATION_PATTERN.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return found


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply the numbered files in sql/ not yet applied, each in its own transaction. Returns what ran."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL)"
    )
    done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for version, path in migrations():
        if version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(path.read_text(encoding="utf-8"))
            con.execute("INSERT INTO schema_migrations VALUES (?, ?)", [version, path.name])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        applied.append(version)
    if applied:
        load_categories(con)
        con.execute("DELETE FROM warehouse_state")  # a changed schema: every fingerprint is checked again
    if applied or state(con, "vocabularies") != vocabularies_fingerprint():
        sync_vocabularies(con)
        set_state(con, "vocabularies", vocabularies_fingerprint())
    return applied


def state(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    """The fingerprint recorded under ``name`` in `warehouse_state` (sql/010), or None."""
    row = con.execute("SELECT fingerprint FROM warehouse_state WHERE name = ?", [name]).fetchone()
    return row[0] if row else None


def set_state(con: duckdb.DuckDBPyConnection, name: str, fingerprint: str) -> None:
    """Record ``fingerprint`` under ``name``: call it in the transaction of the change it describes."""
    con.execute("INSERT OR REPLACE INTO warehouse_state VALUES (?, ?, ?)",
                [name, fingerprint, datetime.now(timezone.utc)])


# The closed vocabularies of `incidents`: columns whose every value comes from the project's own catalogues
# (schemas/taxonomy.yaml, schemas/incident.yaml) or from the code. DuckDB stores them as
# ENUMs: one byte a row instead of a string, which made loading these columns several times cheaper (measured
# here, 2 cores: a load of the whole table ran at 0.42 M rows per CPU-second with VARCHAR, 0.57 M with these as
# ENUMs), and the store itself refuses a value outside the vocabulary. DuckDB cannot add a value to an ENUM in
# place, so a catalogue that grows is met by converting the column to the larger ENUM (sync_vocabularies).
@lru_cache(maxsize=1)
def incident_vocabularies() -> dict[str, tuple[str, ...]]:
    """Column -> its allowed values, sorted: what `incidents` stores as ENUM columns. Read once per process
    (every connection checks its columns against it)."""
    from pipelines.canonical import FIRST_YEAR, LAST_YEAR, TIME_PRECISIONS
    from pipelines.contracts import _place_types, _taxonomy_codes
    from pipelines.ingest import LOCATION_PRECISIONS

    return {
        "category": tuple(sorted(_taxonomy_codes())),
        "place_type": tuple(sorted(_place_types())),
        "time_precision": tuple(sorted(TIME_PRECISIONS)),
        "location_precision": tuple(sorted(LOCATION_PRECISIONS)),
        # Every ISO week of the years canonical.py accepts a date in (an earlier or later date is quarantined
        # there), so the calendar never has to grow. 'YYYY-Www' sorts as the weeks follow each other, so the
        # ENUM's order is the calendar's and `iso_week <= '2026-W10'` means what it says.
        # (LAST_YEAR + 1: the last days of a year can be week 1 of the next.)
        "iso_week": _iso_weeks(FIRST_YEAR, LAST_YEAR + 1),
    }


def _iso_weeks(first_year: int, last_year: int) -> tuple[str, ...]:
    """'YYYY-Www' of every ISO week of the ISO years first_year..last_year, in order."""
    from datetime import date

    return tuple(f"{year}-W{week:02d}" for year in range(first_year, last_year + 1)
                 for week in range(1, date(year, 12, 28).isocalendar()[1] + 1))


def _enum_type(values: tuple[str, ...]) -> str:
    return "ENUM(" + ", ".join("'" + value.replace("'", "''") + "'" for value in values) + ")"


_VOCABULARIES_FINGERPRINT: list = [None, ""]  # (the vocabularies object, its fingerprint): 15,000 weeks take 3 ms


def vocabularies_fingerprint() -> str:
    """SHA-256 of :func:`incident_vocabularies`: what `warehouse_state` records once the columns are made of them."""
    vocabularies = incident_vocabularies()
    if _VOCABULARIES_FINGERPRINT[0] is not vocabularies:
        text = json.dumps(vocabularies, sort_keys=True)
        _VOCABULARIES_FINGERPRINT[:] = [vocabularies, hashlib.sha256(text.encode("utf-8")).hexdigest()]
    return _VOCABULARIES_FINGERPRINT[1]


def sync_vocabularies(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Make each vocabulary column of `incidents` the ENUM of its catalogue's current values; returns the
    columns converted. A value still stored but no longer in its catalogue stops the conversion with DuckDB's
    conversion error, and nothing changes: a category is retired by re-mapping its incidents first.

    Checks every column (information_schema, about 10 ms here); :func:`migrate` calls it only when the
    catalogues differ from the ones it recorded in `warehouse_state` after the last check."""
    present = dict(con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'incidents' AND table_schema = 'main'").fetchall())
    if not present:
        return []
    converted = []
    for column, values in incident_vocabularies().items():
        wanted = _enum_type(values)
        if present.get(column) != wanted:
            con.execute(f"ALTER TABLE incidents ALTER COLUMN {column} TYPE {wanted}")
            converted.append(column)
    return converted


# The open vocabularies of `incidents`: few values per delivery, but from outside the project's catalogues
# (the partners an installation has contracts for, their own category codes, the areas installed or given by
# a partner, the keys in use). Stored as ENUMs of the values they hold, sorted, so that ORDER BY still sorts
# them as text; a delivery with a value not yet held first widens its column (OpenVocabularies.widen, a
# rewrite of that one column). Measured here (2 cores, 3 M bench rows in 11 files), each of these columns as
# text cost the load 0.25-0.35 s, as an ENUM about a tenth of that. A new warehouse starts with them as text
# (an ENUM needs a value); the first load turns them into ENUMs.
OPEN_VOCABULARIES = ("partner", "partner_category", "area_code", "key_id")


class OpenVocabularies:
    """The values each open vocabulary column of `incidents` holds now, read once per writer and kept up to
    date by :meth:`widen` (the writer's own changes are the only ones: one writer at a time)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        types = dict(con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'incidents' AND table_schema = 'main'").fetchall())
        self.values: dict[str, frozenset[str] | None] = {}
        for column in OPEN_VOCABULARIES:
            kind = types.get(column, "VARCHAR")
            self.values[column] = (frozenset(v for (v,) in con.execute(f"SELECT unnest(enum_range(NULL::{kind}))")
                                             .fetchall()) if kind.startswith("ENUM(") else None)

    def lacks(self, wanted: dict[str, Iterable[str | None]]) -> bool:
        """Whether a column does not hold one of the ``wanted`` values yet (widen would change something)."""
        return any(not {v for v in values if v is not None} <= (self.values[column] or frozenset())
                   for column, values in wanted.items())

    def widen(self, con: duckdb.DuckDBPyConnection, wanted: dict[str, Iterable[str | None]]) -> list[str]:
        """Make each column's ENUM hold ``wanted`` values too (a text column becomes the ENUM of what it holds
        and of them). Returns the columns changed; a value already held changes nothing and costs no query."""
        changed = []
        for column, values in wanted.items():
            held = self.values[column]
            new = {value for value in values if value is not None} - (held or frozenset())
            if not new:
                continue
            if held is None:
                held = frozenset(v for (v,) in con.execute(
                    f"SELECT DISTINCT {column} FROM incidents WHERE {column} IS NOT NULL").fetchall())
            merged = tuple(sorted(held | new))
            con.execute(f"ALTER TABLE incidents ALTER COLUMN {column} TYPE {_enum_type(merged)}")
            self.values[column] = frozenset(merged)
            changed.append(column)
        return changed


def load_categories(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)load the project taxonomy from schemas/taxonomy.yaml."""
    taxonomy = yaml.safe_load((SCHEMAS_DIR / "taxonomy.yaml").read_text(encoding="utf-8"))
    rows = [
        (code, spec["sv"], spec["en"], spec["source"]) for code, spec in taxonomy["categories"].items()
    ]
    con.execute("DELETE FROM categories")
    con.executemany("INSERT INTO categories VALUES (?, ?, ?, ?)", rows)


def connect(home: Home, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the home's database, creating and migrating it when it is opened for writing."""
    if read_only:
        return duckdb.connect(str(home.db_path), read_only=True)
    home.ensure()
    con = duckdb.connect(str(home.db_path))
    # Insertion order is not needed anywhere (every query orders explicitly); dropping it saves memory.
    con.execute("SET preserve_insertion_order = false")
    # No compaction when a writer closes: each delivery is its own transaction, so each leaves a part-filled
    # row group, and DuckDB's checkpoint would merge those by rewriting the row groups after them, which is
    # nearly the whole table. Measured here (2 cores, 3 M bench rows in 11 files): the checkpoint took 1.7 s
    # with compaction (0.6 us a row, and whichever writer came next paid it) and 0.01 s without, and the file
    # came out smaller (212 against 290 MB). `compact` does it on purpose, where retention deletes rows.
    con.execute("SET max_vacuum_tasks = 0")
    migrate(con)
    return con


def compact(con: duckdb.DuckDBPyConnection) -> None:
    """Merge part-filled row groups and drop deleted rows from the file (DuckDB's vacuum, in a checkpoint):
    after retention, so that deleted and withdrawn records leave the file and not only the tables. DuckDB
    vacuums only the tables changed since the last checkpoint, so this compacts `incidents` when retention has
    just changed it (tests/test_retention.py shows both)."""
    con.execute("SET max_vacuum_tasks = 100")  # DuckDB's default
    try:
        con.execute("CHECKPOINT")
    finally:
        con.execute("SET max_vacuum_tasks = 0")


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: commit when the block ends, roll back on any exception."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def audit(
    con: duckdb.DuckDBPyConnection,
    action: str,
    subject: str,
    audience: str | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Append one entry to the audit log. ``detail`` must hold no personal values (counts, names of files).

    A publication or export (``action`` "publish" or "export") must name its audience, one that
    :func:`pipelines.audiences.audience` knows: an output without a declared audience is refused (ValueError)
    before anything is logged (PRIVACY.md "Keeping and deleting"; issue 4 item 5).
    """
    if action in ("publish", "export"):
        from pipelines import audiences

        if not audience:
            raise ValueError(f"a {action} entry must name its audience (pipelines/audiences.py): {subject!r}")
        audiences.audience(audience)  # raises ValueError for an unknown audience
    con.execute(
        "INSERT INTO audit_log (logged_at, action, subject, audience, detail) VALUES (?, ?, ?, ?, ?)",
        [at or datetime.now(timezone.utc), action, subject, audience, json.dumps(detail or {}, sort_keys=True)],
    )
