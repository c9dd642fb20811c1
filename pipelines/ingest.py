"""Ingest one delivered file: ledger, read, validate, pseudonymise, place, load, receipt.

The promise (RELIABILITY.md): every data row of an accepted file ends loaded or quarantined
(rows_in = rows_loaded + rows_quarantined), a refused file changes nothing but its ledger row, and a file
already applied (same bytes, whatever its name) is never applied again. The database work for one file is a
single transaction, so a process killed mid-load leaves no half delivery and a rerun completes it.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import geography, privacy, validate
from pipelines.canonical import to_canonical
from pipelines.contracts import Contract
from pipelines.publish import write_atomic
from pipelines.readers import MAX_DELIVERY_BYTES, DeliveryRefused, RawDelivery, one_array, read_delivery
from pipelines.receipts import Receipt, write_receipt
from pipelines.settings import MUNICIPALITY_NAME, TIMEZONE, Home
from pipelines.warehouse import OPEN_VOCABULARIES, OpenVocabularies, audit, sql_text, transaction

log = logging.getLogger(__name__)

# Key domains (PRIVACY.md: one key per domain, so pseudonyms of one domain cannot be joined with another's).
RECORD_DOMAIN = "record"  # partners' own case/record ids
ANALYSIS_DOMAIN = "analysis"  # persons, inside the analysis domain only

# location_precision values: placing's own, a contract's municipality-level override, a district named in the text.
LOCATION_PRECISIONS = geography.PRECISIONS + ("municipality", "gazetteer")

INCIDENT_COLUMNS = [
    "partner", "partner_record_id", "revision", "source_row", "occurred_from", "occurred_to",
    "time_precision", "reported_at", "iso_week", "category", "partner_category", "place_type", "area_code",
    "grid_cell", "location_precision", "person", "key_id", "description",
]


@dataclass(frozen=True)
class PlacingContext:
    """What placing needs, loaded once per ingest run rather than once per file."""

    areas: object  # GeoDataFrame of areas in SWEREF 99 TM
    address_register: pd.DataFrame | None
    area_index: object = None  # geography.prepare_area_index(areas, ...): placing finds it again otherwise


_STAGE_LOCK = threading.Lock()


@contextmanager
def _timed(stage_seconds: dict[str, float] | None, stage: str):
    """Add the block's wall time to stage_seconds[stage] (the benchmark's per-stage figures)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        if stage_seconds is not None:
            with _STAGE_LOCK:  # several preparing threads add to one dict (jobs.PREPARING_THREADS)
                stage_seconds[stage] = stage_seconds.get(stage, 0.0) + time.perf_counter() - started


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes: identifies a delivery by content, whatever it is called."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


INBOX_HASHES_FILE = "inbox-hashes.json"


def inbox_hashes(home: Home, folder: Path, paths: list[Path]) -> dict[Path, str]:
    """The :func:`content_hash` of each of ``paths`` (files of one inbox ``folder``), reading only the files not
    seen before as they are now.

    Delivered files stay in their inbox until retention deletes them (a year and more), and every watch and
    ingest asks which of them are new: reading them all again made that grow with the history (0.5 s of a week
    through the Airflow DAGs after half a year, measured here). A file's hash is kept in
    ``work/inbox-hashes.json`` with the file's identity as it was hashed: inode, size, modification and change
    times in ns. Writing to a file or putting another in its place (a copy, rename or rsync, even one that keeps
    the modification time) changes its change time, which no tool can set back, so a file whose identity is
    unchanged holds the bytes that were hashed. Entries of files no longer in ``folder`` are dropped."""
    store = home.work / INBOX_HASHES_FILE
    try:
        known = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # first run, or a damaged file: it is only a cache
        known = {}
    if not isinstance(known, dict):
        known = {}
    prefix = f"{folder.name}/"
    kept = {name: entry for name, entry in known.items() if not name.startswith(prefix)}
    hashes = {}
    for path in paths:
        status = path.stat()  # before reading: a file that changes while it is read gets a new identity
        identity = [status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns]
        name = prefix + path.relative_to(folder).as_posix()
        entry = known.get(name)
        digest = entry[4] if isinstance(entry, list) and len(entry) == 5 and entry[:4] == identity else content_hash(path)
        kept[name] = [*identity, digest]
        hashes[path] = digest
    if kept != known:
        write_atomic(store, json.dumps(kept, sort_keys=True))
    return hashes


def read_once(path: Path) -> tuple[str, bytes | None]:
    """The file's :func:`content_hash` and, unless it is over the size limit (refused unread), its bytes: read
    once for both, so the content the ledger records is the very content parsed, even if the file changes
    meanwhile (one still being copied into the inbox), and the bytes are not read twice (about 0.05 s of
    CPU for a 40 MB file here)."""
    if path.stat().st_size > MAX_DELIVERY_BYTES:
        return content_hash(path), None
    content = path.read_bytes()
    return hashlib.sha256(content).hexdigest(), content


def iso_weeks(occurred_utc: pd.Series) -> pd.Series:
    """'YYYY-Www' of each time in Swedish local time: a Sunday 23:30 belongs to that Sunday's week.

    A categorical: the week of each distinct local day is worked out once (a file spans a few hundred days at
    most), not once per row; 3.5x faster on 300,000 rows, measured here."""
    local_days = occurred_utc.dt.tz_convert(TIMEZONE).dt.tz_localize(None).to_numpy().astype("datetime64[D]")
    day_codes, days = pd.factorize(local_days)
    calendar = pd.DatetimeIndex(days).isocalendar()
    labels = (calendar["year"].astype(str) + "-W" + calendar["week"].astype(str).str.zfill(2)).to_numpy(dtype=object)
    week_codes, weeks = pd.factorize(labels)
    codes = np.where(day_codes >= 0, week_codes[day_codes] if len(week_codes) else -1, -1)
    return pd.Series(pd.Categorical.from_codes(codes, categories=pd.Index(weeks, dtype=object)),
                     index=occurred_utc.index)


def ledger_entry(con: duckdb.DuckDBPyConnection, delivery_id: str) -> dict | None:
    row = con.execute(
        "SELECT status, file_name, received_at FROM ingest_ledger WHERE delivery_id = ?", [delivery_id]
    ).fetchone()
    return None if row is None else {"status": row[0], "file_name": row[1], "received_at": row[2]}


def next_delivery_number(con: duckdb.DuckDBPyConnection) -> int:
    """The number the next delivery gets (sql/007): one more than the ledger's largest; one writer at a time."""
    return int(con.execute("SELECT coalesce(max(delivery_number), 0) + 1 FROM ingest_ledger").fetchone()[0])


def _write_ledger(con, receipt: Receipt, delivery_number: int) -> None:
    con.execute(
        sql_text("ledger_insert"),
        {
            "delivery_id": receipt.delivery_id, "delivery_number": delivery_number, "partner": receipt.partner,
            "file_name": receipt.file_name,
            "received_at": receipt.received_at, "status": receipt.status, "rows_in": receipt.rows_in,
            "rows_loaded": receipt.rows_loaded, "rows_quarantined": receipt.rows_quarantined,
            "rows_unplaced": receipt.rows_unplaced, "encoding": receipt.encoding,
            "contract_version": receipt.contract_version, "reason": receipt.reason,
            "period_from": receipt.period_from, "period_to": receipt.period_to,
        },
    )


def _constant(value: str, count: int) -> pd.Categorical:
    """A column holding one value: a categorical, so the value is not copied into every row on its way to the
    loader (the partner, the key id)."""
    return pd.Categorical.from_codes(np.zeros(count, dtype=np.int8), categories=pd.Index([value], dtype=object))


def _stage_incidents(
    good: pd.DataFrame, contract: Contract, master_key: bytes, placing: PlacingContext,
    stage_seconds: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Pseudonymise, scrub and place the rows that passed validation; drop what must not be stored."""
    record_key = privacy.derive_key(master_key, RECORD_DOMAIN)
    person_key = privacy.derive_key(master_key, ANALYSIS_DOMAIN)
    staged = pd.DataFrame(index=good.index)
    staged["partner"] = _constant(contract.partner, len(good))
    with _timed(stage_seconds, "pseudonymise"):
        staged["partner_record_id"] = privacy.pseudonymise(good["record_id"], record_key, keep_arrow=True)
        # One pseudonym per row here; staged_table wraps it into the `persons` list in bulk.
        staged["person"] = privacy.pseudonymise(good["person_id"], person_key, keep_arrow=True)
    staged["revision"] = good["revision"].astype("int32")
    staged["source_row"] = good["source_row"]
    for column in ("occurred_from", "occurred_to", "reported_at", "time_precision", "category",
                   "partner_category", "place_type"):
        staged[column] = good[column]
    staged["iso_week"] = iso_weeks(good["occurred_from"])

    if contract.area_codes == "partner":
        # A partner outside the installation's geography (contract `area_codes: partner`, e.g. police.uk's
        # LSOA codes): its own area code is kept as given, at area precision; no grid cell, no placing.
        staged["area_code"] = good["area_code"]
        staged["grid_cell"] = pd.array([pd.NA] * len(good), dtype="Int64")
        staged["location_precision"] = np.where(good["area_code"].notna(), "area", "unplaced")
    elif contract.location_precision == "municipality":
        # Coordinates that are a town centre say nothing about where in the municipality it happened.
        staged["area_code"] = None
        staged["grid_cell"] = pd.array([pd.NA] * len(good), dtype="Int64")
        staged["location_precision"] = "municipality"
        if contract.gazetteer and good["description"].notna().any():
            # The district named in the text (before scrubbing; the text itself is not kept for this).
            from pipelines.gazetteer import load_gazetteer, match_areas

            with _timed(stage_seconds, "place"):
                named = match_areas(good["description"], load_gazetteer(contract.gazetteer))
            staged["area_code"] = named.astype(object).where(named.notna(), None)
            staged["location_precision"] = staged["location_precision"].where(named.isna(), "gazetteer")
    else:
        with _timed(stage_seconds, "place"):
            placed = geography.place(
                good[["latitude", "longitude", "sweref99_e", "sweref99_n", "address", "area_code"]],
                placing.areas,
                placing.address_register,
                index=placing.area_index,
            )
        staged["area_code"] = placed["area_code"]
        staged["grid_cell"] = placed["grid_cell"]
        staged["location_precision"] = placed["location_precision"]

    staged["key_id"] = _constant(person_key.key_id, len(good))
    description = good["description"]
    with _timed(stage_seconds, "scrub"):
        staged["description"] = privacy.scrub_text(description) if description.notna().any() else description
    return staged[INCIDENT_COLUMNS]


# Columns with a handful of values per file (a vocabulary, or one value per delivery). Handed to DuckDB as
# Arrow dictionary arrays, the text of each distinct value is converted once, not once per row: measured here
# (2 cores) that made inserting these columns into the persistent table about 1.3x faster.
_FEW_VALUES = ("partner", "time_precision", "iso_week", "category", "partner_category", "place_type",
               "location_precision", "key_id")


def _pseudonym_numbers(pseudonyms: pa.Array) -> pa.FixedSizeListArray:
    """64-hex pseudonyms as the four big-endian 64-bit numbers the warehouse stores (sql/006), decoded in bulk
    from the Arrow buffer rather than per row."""
    if len(pseudonyms) == 0:
        return pa.FixedSizeListArray.from_arrays(pa.array([], type=pa.uint64()), 4)
    if pseudonyms.null_count:
        raise ValueError("a staged incident has no record pseudonym")
    offsets = np.frombuffer(pseudonyms.buffers()[1], dtype=np.int32)[
        pseudonyms.offset:pseudonyms.offset + len(pseudonyms) + 1]
    if not np.all(np.diff(offsets) == 64):
        raise ValueError("a record pseudonym is not 64 hex characters")
    # binascii reads the Arrow buffer in place (bytes.fromhex wants a str: two copies more; 0.018 against
    # 0.006 s for 300,000 pseudonyms here).
    hex_digits = memoryview(pseudonyms.buffers()[2])[offsets[0]:offsets[-1]]
    numbers = np.frombuffer(binascii.unhexlify(hex_digits), dtype=">u8").astype(np.uint64)
    return pa.FixedSizeListArray.from_arrays(pa.array(numbers, type=pa.uint64()), 4)


def staged_table(staged: pd.DataFrame, delivery_number: int | None = None) -> pa.Table:
    """The staged rows as the Arrow table the loader reads: the person pseudonym wrapped into the `persons`
    list, the record pseudonym as four numbers (sql/006) and `record_key` computed, columns of few values
    dictionary-encoded, and the delivery's number (sql/007) in every row (:func:`numbered`: the number is
    given when the file is applied, so a table made ahead of that has none yet)."""
    # One thread: the columns are zero-copy or dictionary already, and pyarrow's pool of converter threads cost
    # more to start and join (0.012 s a file here) than it saved.
    table = pa.Table.from_pandas(staged, preserve_index=False, nthreads=1)
    columns = {}
    for name in table.column_names:
        column = one_array(table[name])
        if name in _FEW_VALUES:
            column = column.dictionary_encode()
        columns[name] = column
    person = columns.pop("person")
    if pa.types.is_null(person.type):
        person = person.cast(pa.string())
    offsets = pa.array(np.arange(len(person) + 1, dtype=np.int32))
    mask = pc.is_null(person) if person.null_count else None
    columns["persons"] = pa.ListArray.from_arrays(offsets, person.fill_null(""), mask=mask)
    record = _pseudonym_numbers(columns["partner_record_id"].cast(pa.string()))
    columns["partner_record_id"] = record
    columns["record_key"] = pc.list_element(record, 0)  # its first number (sql/003)
    table = pa.table(columns)
    return table if delivery_number is None else numbered(table, delivery_number)


def numbered(table: pa.Table, delivery_number: int) -> pa.Table:
    """:func:`staged_table`'s rows with the delivery's number (sql/007) in every row."""
    return table.append_column("delivery_number", pa.array(np.full(len(table), delivery_number, dtype=np.int64)))


class HeldRecordKeys:
    """The ``record_key`` of every record the warehouse held when an ingest run began, and of every record the
    run has loaded since: a superset of the keys `incidents` holds (a record withdrawn or replaced meanwhile may
    still be listed), for one writer's run.

    A staged file none of whose keys is listed holds no record already held, so it is inserted as it is and
    sql/upsert_incidents.sql need not look for held records. That search reads the key of every stored row
    for every file, so it grew with the table: measured here (2 cores), loading a 300,000-row file into a
    3 M-row table took 0.40 s as a plain insert against 0.48 s through the upsert. A file that repeats or
    revises a listed record takes the upsert as before, so the result is the same either way.

    The keys are the first 64 bits of an HMAC, so their top bits are spread evenly. A bitmap of their top
    bits (up to 29 bits, 64 MB) answers "certainly not held" for most keys of a new file; only the few whose bit
    is set are looked up in the sorted keys. Those are kept as a few sorted runs whose sizes halve from one to
    the next, so listing a file's keys does not copy every key listed before. Measured here for 300,000 keys
    against 10 M listed: the check took 0.032 s with one sorted array, 0.007 s with the bitmap first; keeping
    one sorted array merged all keys every file (0.023 s at 10 M, growing with the table).
    """

    # The bitmap has at least BITMAP_SPREAD bits a key, from 2**MIN_BITS up to 2**MAX_BITS (64 MB): a small
    # warehouse's run (an Airflow DAG's week) does not zero 64 MB (0.15 s here for 30,000 keys), and the
    # bitmap doubles, rebuilt from the runs, as a long run lists more keys.
    MIN_BITS, MAX_BITS, BITMAP_SPREAD = 20, 29, 32

    def __init__(self, con: duckdb.DuckDBPyConnection, expected: int = 0) -> None:
        """``expected``: about how many keys the run will list (sizes the bitmap once, instead of doubling)."""
        self._runs: list[np.ndarray] = []
        # The last table any_held sorted the keys of, and those keys: add() lists the same file's keys after its
        # commit, sorted once. Measured here for 100 files of 300,000 keys (a 30 M-row run): any_held and add
        # took 4.3-4.4 s of CPU that way against 4.9-5.0 s sorting each file's keys twice.
        self._sorted: tuple[pa.Table, np.ndarray] | None = None
        keys = np.asarray(con.execute("SELECT record_key FROM incidents").fetchnumpy()["record_key"], dtype=np.uint64)
        self._bits = self._bits_for(len(keys) + expected)
        self._bitmap = np.zeros(1 << (self._bits - 3), dtype=np.uint8)
        self._list(keys)

    def _bits_for(self, count: int) -> int:
        wanted = int(np.ceil(np.log2(max(count, 1) * self.BITMAP_SPREAD)))
        return min(self.MAX_BITS, max(self.MIN_BITS, wanted))

    def _positions(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        top = keys >> np.uint64(64 - self._bits)
        return (top >> np.uint64(3)).astype(np.intp), (np.uint8(1) << (top & np.uint64(7)).astype(np.uint8))

    def _mark(self, sorted_keys: np.ndarray) -> None:
        # Sorted keys give sorted bytes: each byte's bits are OR-ed together in one pass (reduceat), then set
        # once; np.bitwise_or.at (a loop over unbuffered ufunc calls) took 0.16 s for 300,000 keys here.
        byte, bit = self._positions(sorted_keys)
        starts = np.flatnonzero(np.concatenate(([True], byte[1:] != byte[:-1])))
        self._bitmap[byte[starts]] |= np.bitwise_or.reduceat(bit, starts)

    def _list(self, keys: np.ndarray, is_sorted: bool = False) -> None:
        if len(keys) == 0:
            return
        keys = keys if is_sorted else np.sort(keys)
        self._runs.append(keys)
        bits = self._bits_for(sum(len(run) for run in self._runs))
        if bits > self._bits:
            self._bits = bits
            self._bitmap = np.zeros(1 << (self._bits - 3), dtype=np.uint8)
            for run in self._runs:
                self._mark(run)
        else:
            self._mark(keys)
        # Merge while the newest run is as large as the one before it: runs halve in size, so there are at most
        # log2(held keys / keys a file) of them and each key is copied about that many times in a run, where
        # one sorted array copied every held key once per file. Measured here over 100 files of 300,000 keys:
        # 1.4 s for this, 2.1 s merging all runs whenever there were more than 24, far more for one array.
        while len(self._runs) > 1 and len(self._runs[-1]) >= len(self._runs[-2]):
            newer = self._runs.pop()
            merged = np.concatenate([self._runs.pop(), newer])
            merged.sort(kind="stable")  # two sorted runs: timsort only merges them
            self._runs.append(merged)

    def any_held(self, table: pa.Table) -> bool:
        if table.num_rows == 0 or not self._runs:
            return False
        # Sorted first (0.001 s for 300,000): the bitmap is then read in order, and numpy's search walks the
        # listed keys in order (in random order each step is a cache miss: 0.37 s against 0.03 s for 300,000
        # keys among 10 M, measured here).
        keys = self._sorted_keys(table)
        byte, bit = self._positions(keys)
        maybe = keys[(self._bitmap[byte] & bit) != 0]
        if len(maybe) == 0:
            return False
        for run in self._runs:
            position = np.minimum(np.searchsorted(run, maybe), len(run) - 1)
            if (run[position] == maybe).any():
                return True
        return False

    def _sorted_keys(self, table: pa.Table) -> np.ndarray:
        if self._sorted is None or self._sorted[0] is not table:
            self._sorted = (table, np.sort(table["record_key"].to_numpy()))
        return self._sorted[1]

    def add(self, table: pa.Table) -> None:
        """List the keys of a file just committed."""
        # Listed, not made unique: a key listed twice is still found.
        keys = self._sorted_keys(table)
        self._sorted = None  # the table is done with: hold no reference to it
        self._list(keys, is_sorted=True)


def _vocabulary_values(table: pa.Table) -> dict[str, list[str]]:
    """The values of each open vocabulary column (warehouse.OPEN_VOCABULARIES) in a staged table: a dictionary
    column's dictionary, any other column's distinct values."""
    values = {}
    for column in OPEN_VOCABULARIES:
        array = one_array(table[column])
        if pa.types.is_dictionary(array.type):
            array = array.dictionary
        values[column] = [] if pa.types.is_null(array.type) else pc.unique(array.cast(pa.string())).to_pylist()
    return values


def widen_vocabularies(con, table: pa.Table, vocabularies: OpenVocabularies | None = None,
                       wanted: dict[str, list[str]] | None = None) -> bool:
    """Widen the open vocabulary columns for values of :func:`staged_table`'s rows they do not hold yet, in a
    transaction of its own, before the rows' own: a wider ENUM holding no row of a file that then fails changes
    nothing, and the run's copy (``vocabularies``, else read here) stays true. ``wanted``: the table's values
    (:func:`_vocabulary_values`) when the preparing thread has them already. Returns whether a column changed."""
    vocabularies = vocabularies or OpenVocabularies(con)
    wanted = wanted if wanted is not None else _vocabulary_values(table)
    if vocabularies.lacks(wanted):
        with transaction(con):
            return bool(vocabularies.widen(con, wanted))
    return False


class EnumCodes:
    """Inserts a staged table's ENUM columns as their codes: each dictionary column goes to DuckDB as its
    indices, and its few values as one list cast once to the column's type, which the indices pick from. Handed
    the text, DuckDB looks every row's value up in the ENUM (a hash per row): measured here on 3 M bench rows,
    the insert took 0.57-0.58 µs of CPU a row that way and 0.52-0.54 µs by the codes.

    The column types are mirrored as temporary types of the loading connection; :meth:`refresh` after a
    column's ENUM changes (warehouse.OpenVocabularies.widen)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._types: dict[str, str] = {}
        self.refresh(con)

    def refresh(self, con: duckdb.DuckDBPyConnection) -> None:
        types = dict(con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'incidents' "
            "AND table_schema = 'main' AND data_type LIKE 'ENUM(%'").fetchall())
        for column, enum in types.items():
            if self._types.get(column) != enum:
                con.execute(f"CREATE OR REPLACE TEMP TYPE est_load_{column} AS {enum}")
        self._types = types

    def insert(self, con: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
        """INSERT the table's rows into `incidents`, inside the caller's transaction."""
        columns, values, picks = {}, {}, []
        for name in table.column_names:
            column = one_array(table[name])
            if name in self._types and pa.types.is_dictionary(column.type) and len(column.dictionary):
                columns[name] = column.indices
                values[name] = column.dictionary.cast(pa.string()).to_pylist()
                picks.append(f"(CAST(${name} AS est_load_{name}[]))[{name} + 1] AS {name}")
            else:
                columns[name] = column
        replaced = f" REPLACE ({', '.join(picks)})" if picks else ""
        con.register("staged_codes", pa.table(columns))
        try:
            con.execute(f"INSERT INTO incidents BY NAME SELECT *{replaced} FROM staged_codes", values)
        finally:
            con.unregister("staged_codes")


def _load(con, table: pa.Table, held: HeldRecordKeys | None = None, codes: EnumCodes | None = None) -> None:
    """Upsert the rows of :func:`staged_table` (sql/upsert_incidents.sql), inside the caller's transaction,
    after :func:`widen_vocabularies`. With ``held`` (the run's :class:`HeldRecordKeys`), a file that holds no
    listed record is inserted as is (by ``codes``, the run's :class:`EnumCodes`, when given)."""
    plain = held is not None and not held.any_held(table)
    if plain and codes is not None:
        codes.insert(con, table)
        return
    con.register("staged_incidents", table)
    try:
        if plain:
            con.execute("INSERT INTO incidents BY NAME SELECT * FROM staged_incidents")
        else:
            con.execute(sql_text("upsert_incidents"))
    finally:
        con.unregister("staged_incidents")


def _withdraw_period(con, receipt: Receipt, delivered_ids: pd.DataFrame, delivery_number: int) -> int:
    """Delete the partner's records in the delivery's period that the delivery no longer holds."""
    con.register("delivered_ids", delivered_ids)
    try:
        before = con.execute("SELECT count(*) FROM incidents WHERE partner = ?", [receipt.partner]).fetchone()[0]
        con.execute(sql_text("withdraw_period"), {
            "partner": receipt.partner, "period_from": receipt.period_from, "period_to": receipt.period_to,
            "delivery_number": delivery_number,
        })
        after = con.execute("SELECT count(*) FROM incidents WHERE partner = ?", [receipt.partner]).fetchone()[0]
    finally:
        con.unregister("delivered_ids")
    return int(before - after)


def _quarantine_rows(con, receipt: Receipt, reasons: dict[int, list[str]]) -> None:
    if not reasons:
        return
    frame = pd.DataFrame(
        {
            "delivery_id": receipt.delivery_id,
            "partner": receipt.partner,
            "source_row": np.fromiter(reasons.keys(), dtype=np.int64, count=len(reasons)),
            "reasons": list(reasons.values()),
        }
    )
    con.register("new_quarantine", frame)
    try:
        con.execute(
            "INSERT INTO quarantine (delivery_id, partner, source_row, reasons) "
            "SELECT delivery_id, partner, source_row, reasons FROM new_quarantine"
        )
    finally:
        con.unregister("new_quarantine")


@dataclass
class PreparedDelivery:
    """One file after everything that needs no database: read, canonical, validated, pseudonymised, placed.

    ``receipt.status`` is "rejected" or "empty" when there is nothing to load, else "accepted" with ``table``
    (the rows to load as the loader's Arrow table, :func:`staged_table`, without the delivery's number, which
    is given when the file is applied), ``reasons`` (quarantine) and, for period snapshots, ``delivered_ids``.
    The table is made by the preparing thread, with the values of its open vocabulary columns
    (``vocabulary_values``): the loading thread is the pipeline's critical path (at 10 M rows the preparing
    threads waited for it about 40 % of the time), and making them costs about 0.045 s a 300,000-row file."""

    receipt: Receipt
    table: pa.Table | None = None
    reasons: dict[int, list[str]] | None = None
    delivered_ids: pd.DataFrame | None = None
    vocabulary_values: dict[str, list[str]] | None = None


def _duplicate(con, contract: Contract, path: Path, delivery_id: str, received_at: datetime) -> Receipt | None:
    """The "duplicate" receipt when the same content was already applied; None when it may be applied."""
    earlier = ledger_entry(con, delivery_id)
    if earlier is not None and earlier["status"] == "rejected":
        # A refused file changed nothing; offered again (e.g. after a contract fix: aliases for a renamed
        # header) it is read afresh. Its refusal stays in the audit log; the ledger row is replaced.
        with transaction(con):
            con.execute("DELETE FROM ingest_ledger WHERE delivery_id = ? AND status = 'rejected'", [delivery_id])
            audit(con, "ingest_retry", path.name, detail={"partner": contract.partner, "delivery_id": delivery_id,
                                                          "earlier": "rejected"})
        return None
    if earlier is None:
        return None
    receipt = Receipt.start(contract, path.name, delivery_id, received_at)
    receipt.status = "duplicate"
    receipt.reason = (
        f"the same content was already received as {earlier['file_name']} "
        f"({earlier['status']}); nothing was applied again"
    )
    return receipt


def prepare_delivery(
    contract: Contract,
    path: Path,
    master_key: bytes,
    placing: PlacingContext,
    received_at: datetime | None = None,
    stage_seconds: dict[str, float] | None = None,
    delivery_id: str | None = None,
    content: bytes | None = None,
) -> PreparedDelivery:
    """Read, canonicalise, validate, pseudonymise and place one file; touches no database, writes no file, so
    it can run for the next file while the previous one loads (jobs.ingest_files). Never raises for bad data.

    ``delivery_id`` and ``content``: the file's hash and bytes when the caller has them (:func:`read_once`); the
    caller holds the bytes until this returns (one file's worth a preparing thread)."""
    received_at = received_at or datetime.now(timezone.utc)
    if delivery_id is None:
        delivery_id, content = read_once(path)
    receipt = Receipt.start(contract, path.name, delivery_id, received_at)
    try:
        with _timed(stage_seconds, "read"):
            raw = read_delivery(path, contract, content)
    except DeliveryRefused as refusal:
        receipt.status = "rejected"
        receipt.reason = str(refusal)
        return PreparedDelivery(receipt)

    receipt.encoding = raw.encoding
    receipt.header = raw.header
    receipt.notes = list(raw.notes)
    receipt.rows_in = raw.rows_in
    if raw.rows_in == 0:
        receipt.status = "empty"
        receipt.reason = "the file holds no data rows: nothing delivered"
        return PreparedDelivery(receipt)

    with _timed(stage_seconds, "canonical"):
        frame = _canonical(raw, contract, received_at)
    with _timed(stage_seconds, "validate"):
        reasons = validate.validate(frame, contract.extent)
    if len(frame) > validate.GX_MAX_ROWS:
        receipt.notes.append(
            f"{len(frame):,} rows: checked by the Great Expectations suite read in bulk (validate.bulk_validate; "
            f"Great Expectations itself runs on deliveries up to {validate.GX_MAX_ROWS:,} rows)"
        )
    for row, problem in raw.broken_rows:
        reasons.setdefault(row, []).append(f"row: {problem}")
    bad = frame["source_row"].isin(list(reasons)).to_numpy()
    good = frame[~bad] if bad.any() else frame  # a filter keeping every row would still copy every column
    staged = _stage_incidents(good, contract, master_key, placing, stage_seconds)

    receipt.status = "accepted"
    receipt.rows_loaded = len(staged)
    receipt.rows_quarantined = len(reasons)
    receipt.rows_unplaced = int(staged["location_precision"].eq("unplaced").sum())
    receipt.add_quarantine(reasons)
    if len(good):
        local = good["occurred_from"].dt.tz_convert(TIMEZONE)
        receipt.period_from = local.min().date()
        receipt.period_to = local.max().date()
    if receipt.rows_in != receipt.rows_loaded + receipt.rows_quarantined:
        raise AssertionError(
            f"{path.name}: row accounting broken: {receipt.rows_in} in, "
            f"{receipt.rows_loaded} loaded, {receipt.rows_quarantined} quarantined"
        )
    delivered_ids = None
    if contract.deliveries == "period_snapshot" and receipt.period_from is not None:
        # Every record id the file holds, loaded or quarantined: a quarantined row is not a withdrawal.
        ids = frame["record_id"].dropna()
        delivered_ids = pd.DataFrame({"partner_record_id": privacy.pseudonymise(
            ids, privacy.derive_key(master_key, RECORD_DOMAIN))})
    with _timed(stage_seconds, "load"):  # the loader's table: its work, done ahead in this thread
        table = staged_table(staged)
        values = _vocabulary_values(table)
    return PreparedDelivery(receipt, table, reasons, delivered_ids, values)


def apply_delivery(
    con: duckdb.DuckDBPyConnection,
    home: Home,
    contract: Contract,
    path: Path,
    prepared: PreparedDelivery,
    stage_seconds: dict[str, float] | None = None,
    held: HeldRecordKeys | None = None,
    vocabularies: OpenVocabularies | None = None,
    codes: EnumCodes | None = None,
) -> Receipt:
    """Apply a prepared file as one transaction (ledger, rows, quarantine, audit) and write its receipt. The
    ledger is asked here, in file order, so the same content prepared twice is still applied once. ``held``:
    the run's :class:`HeldRecordKeys`, given the file's keys once it is committed; ``vocabularies``: the run's
    :class:`warehouse.OpenVocabularies` (:func:`widen_vocabularies`); ``codes``: the run's :class:`EnumCodes`."""
    receipt = prepared.receipt
    duplicate = _duplicate(con, contract, path, receipt.delivery_id, receipt.received_at)
    if duplicate is not None:
        return duplicate
    number = next_delivery_number(con)
    if receipt.status in ("rejected", "empty"):
        with transaction(con):
            _write_ledger(con, receipt, number)
            audit(con, "ingest", path.name, audience=f"partner:{contract.partner}",
                  detail={"partner": contract.partner, "status": receipt.status})
        write_receipt(home, receipt)
        return receipt
    with _timed(stage_seconds, "load"):
        table = numbered(prepared.table, number)
        if widen_vocabularies(con, table, vocabularies, prepared.vocabulary_values) and codes is not None:
            codes.refresh(con)
    with _timed(stage_seconds, "load"), transaction(con):
        _load(con, table, held, codes)
        if prepared.delivered_ids is not None:
            receipt.rows_withdrawn = _withdraw_period(con, receipt, prepared.delivered_ids, number)
        _quarantine_rows(con, receipt, prepared.reasons)
        _write_ledger(con, receipt, number)
        audit(
            con, "ingest", path.name, audience=f"partner:{contract.partner}",  # its receipt is for the partner
            detail={"partner": contract.partner, "status": "accepted", "delivery_id": receipt.delivery_id,
                    "rows_loaded": receipt.rows_loaded, "rows_quarantined": receipt.rows_quarantined,
                    "rows_withdrawn": receipt.rows_withdrawn},
        )
    if held is not None:
        held.add(table)  # committed: from now on these records are held
    write_receipt(home, receipt)
    return receipt


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    home: Home,
    contract: Contract,
    path: Path,
    master_key: bytes,
    placing: PlacingContext,
    received_at: datetime | None = None,
    stage_seconds: dict[str, float] | None = None,
    held: HeldRecordKeys | None = None,
    vocabularies: OpenVocabularies | None = None,
    codes: EnumCodes | None = None,
) -> Receipt:
    """Ingest one file as one transaction and write its receipt. Never raises for bad data: it refuses.

    The ledger is asked first, so a file already applied costs no reading. ``held`` as in apply_delivery."""
    received_at = received_at or datetime.now(timezone.utc)
    delivery_id, content = read_once(path)
    duplicate = _duplicate(con, contract, path, delivery_id, received_at)
    if duplicate is not None:
        return duplicate
    prepared = prepare_delivery(contract, path, master_key, placing, received_at, stage_seconds, delivery_id,
                                content)
    return apply_delivery(con, home, contract, path, prepared, stage_seconds, held, vocabularies, codes)


def _canonical(raw: RawDelivery, contract: Contract, received_at: datetime) -> pd.DataFrame:
    return to_canonical(
        raw, contract, received_at,
        municipality_names={MUNICIPALITY_NAME, f"{MUNICIPALITY_NAME} kommun"},
        canonical_personnummer=privacy.canonical_personnummer,
    )


def pending_files(home: Home, contract: Contract) -> list[Path]:
    """Files in the partner's drop folder that match the contract's patterns, in name order."""
    folder = home.partner_inbox(contract.partner)
    if not folder.is_dir():
        return []
    found: set[Path] = set()
    for pattern in contract.patterns:
        found.update(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))
    return sorted(found)
