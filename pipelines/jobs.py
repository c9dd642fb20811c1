"""The pipeline's jobs: what a DAG task or a CLI command calls. Each composes the stage functions.

Every job takes a Home and plain values, so Airflow tasks, the command line and tests call the same code.
Jobs that write open the DuckDB file for the duration of the job only (one writer at a time).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa
import yaml

from pipelines import geography, warehouse
from pipelines.contracts import load_contracts
from pipelines.ingest import (
    EnumCodes,
    HeldRecordKeys,
    PlacingContext,
    apply_delivery,
    inbox_hashes,
    ingest_file,
    ledger_entry,
    pending_files,
    prepare_delivery,
    read_once,
)
from pipelines.receipts import Receipt
from pipelines.settings import Home

log = logging.getLogger(__name__)


def _replace_table(con, table: str, frame: pd.DataFrame | pa.Table) -> None:
    con.register("replacement_rows", frame)
    try:
        con.execute(f"DELETE FROM {table}")  # table names come from this module, never from input
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM replacement_rows")
    finally:
        con.unregister("replacement_rows")


# DuckDB's buffer pool while files are ingested. By default it may grow to 80 % of the machine's memory and
# keeps what it wrote cached: at 30 M bench rows the process peaked at 5.7 GB. Loading needs no more than the
# file in hand; the rest is written to the database file anyway.
INGEST_DUCKDB_MEMORY = "1GB"
# Files prepared at once. Two: each core prepares a file while DuckDB loads the one before in between, so
# neither core waits for the other's kind of work. Measured here at 10 M bench rows, after loading became
# cheaper than preparing: 20.2, 19.1 and 18.8 s with two against 23.5, 19.8, 20.5 and 19.4 s with one (a
# shared machine: compare the runs, not one). One prepared file more in memory at a time.
PREPARING_THREADS = 2



def reuse_freed_memory() -> None:
    """Let glibc's malloc keep the memory a file's arrays freed, for the next file's, instead of handing it back
    to the kernel: every file allocates the same large numpy and pandas buffers (and its bytes), and memory
    fresh from the kernel is zeroed page by page on first touch. Measured here at 10 M bench rows, in pairs of
    runs: 23.7-23.9 s of CPU against 25.0-25.6 s, 13.6-13.8 against 14.5-14.8 s end to end, 20 % fewer page
    faults, peak memory about 100 MB higher (2.3-2.4 GB). Allocations of up to 1 GB come from the heap
    (not a mapping of their own each), and up to 2 GB of free heap is kept. Only glibc's malloc (numpy,
    pandas, Python). Arrow then allocates from the same malloc (its system pool): its default pool (mimalloc)
    hands freed pages back after 10 ms; measured in four more pairs of runs, 13.6-13.8 s against 13.8-14.4 s,
    peak memory 2.55 GB. DuckDB keeps its own allocator. Does nothing where there is no glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # malloc.h
    mallopt(m_mmap_threshold, 1 << 30)
    mallopt(m_trim_threshold, (1 << 31) - 1)
    mallopt(m_top_pad, 256 << 20)


def load_interventions(path: Path) -> pd.DataFrame:
    """The intervention register the security department edits (YAML list), as rows of `interventions`."""
    columns = ["intervention_id", "title", "area_code", "kind", "responsible_partner", "starts_on", "ends_on",
               "categories"]
    if not path.exists():
        return pd.DataFrame(columns=columns)
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    if isinstance(entries, dict):
        entries = entries.get("interventions", [])
    rows = []
    for number, entry in enumerate(entries, start=1):
        missing = [k for k in ("id", "title", "area_code", "kind", "responsible_partner", "starts_on") if not entry.get(k)]
        if missing:
            raise ValueError(f"{path.name}: intervention number {number} lacks {missing}")
        rows.append({
            "intervention_id": str(entry["id"]), "title": str(entry["title"]), "area_code": str(entry["area_code"]),
            "kind": str(entry["kind"]), "responsible_partner": str(entry["responsible_partner"]),
            "starts_on": pd.Timestamp(entry["starts_on"]).date(),
            "ends_on": pd.Timestamp(entry["ends_on"]).date() if entry.get("ends_on") else None,
            "categories": [str(c) for c in entry.get("categories") or []],
        })
    return pd.DataFrame(rows, columns=columns)


def prepare_reference(home: Home, areas: geography.gpd.GeoDataFrame | None = None) -> None:
    """Areas (stand-in or SCB's DeSO), partners and the intervention register into the warehouse.

    Rebuilt whole each time from their sources, in one transaction, so a rerun gives the same tables.
    ``areas`` replaces the municipality's own (:func:`geography.build_areas`), e.g. the national stand-in areas
    `est bench` places against (:func:`geography.national_areas`).
    """
    areas = geography.build_areas() if areas is None else areas
    contracts = load_contracts()
    partners = pd.DataFrame(
        [(c.partner, c.name, c.sensitive, c.version) for c in contracts.values()],
        columns=["partner", "partner_name", "sensitive", "contract_version"],
    )
    # Contract flag `expected_weekly:` (sql/002): a foreign or archive partner is never "missing" from a week.
    expectations = pd.DataFrame(
        [(c.partner, c.expected_weekly) for c in contracts.values()], columns=["partner", "expected_weekly"]
    )
    interventions = load_interventions(home.interventions_file)
    unknown = sorted(set(interventions["area_code"]) - set(areas["area_code"]))
    if unknown:
        raise ValueError(f"{home.interventions_file.name}: unknown area codes {unknown}")
    area_rows = geography.areas_to_arrow(areas)
    fingerprint = reference_fingerprint(area_rows, partners, expectations, interventions)
    with closing(warehouse.connect(home)) as con, warehouse.transaction(con):
        # Every ingest, report and pack starts here, and the sources rarely change: installed already, the
        # tables are left as they are (measured here: 0.03 s instead of 0.15 s a task for Örebro's areas). The
        # placing index was built when they were installed; placing_context builds it again if it was removed.
        if warehouse.state(con, "reference") == fingerprint:
            log.info("reference data unchanged since it was installed (%s)", fingerprint[:12])
            return
        _replace_table(con, "areas", area_rows)
        _replace_table(con, "partners", partners)
        _replace_table(con, "partner_expectations", expectations)
        _replace_table(con, "interventions", interventions)
        # The placing index belongs with the areas: built here when they change (seconds for a country),
        # read back from disk by each process that places (placing_context). From the stored rows, so that
        # it is keyed exactly as placing_context will key it.
        installed = geography.load_areas_from_db(con)
        if len(installed):
            geography.prepare_area_index(installed, home.area_index_cache)
        warehouse.set_state(con, "reference", fingerprint)


def reference_fingerprint(area_rows: pa.Table, *frames: pd.DataFrame) -> str:
    """SHA-256 of the reference rows prepare_reference installs: the areas' Arrow rows (codes, names, population,
    WKB polygons) and the other tables' values, so any change to any of them installs them all again."""
    digest = hashlib.sha256()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, area_rows.schema) as writer:
        writer.write_table(area_rows)
    digest.update(sink.getvalue())
    for frame in frames:
        digest.update(frame.to_json(orient="split", date_format="iso", default_handler=str).encode("utf-8"))
    return digest.hexdigest()


def placing_context(con, home: Home) -> PlacingContext:
    areas = geography.load_areas_from_db(con)
    if len(areas) == 0:
        raise RuntimeError("no areas in the warehouse: run prepare_reference first (est run does)")
    index = geography.prepare_area_index(areas, home.area_index_cache)
    register = geography.load_address_register(home.address_register) if home.address_register.exists() else None
    return PlacingContext(areas=areas, address_register=register, area_index=index)


def contract_category_codes(contracts: dict, partners: list[str]) -> list[str]:
    """The partner category codes the partners' contracts know (the keys of their category maps, or the constant
    a contract gives): the values a loaded row's ``partner_category`` can hold, as a row whose code is not in
    its contract's map is quarantined (canonical.py, ``unknown_value``)."""
    codes: set[str] = set()
    for partner in partners:
        contract = contracts[partner]
        spec = contract.columns.get("category")
        codes.update(contract.category_map)
        if spec is not None and spec.value is not None:
            codes.add(spec.value)
    return sorted(codes)


def ingest_files(
    home: Home, partner: str, paths: list[Path], key: bytes, stage_seconds: dict[str, float] | None = None
) -> list[Receipt]:
    """Ingest the given files for one partner, in order. One transaction per file.

    ``stage_seconds``, when given, accumulates the wall time of each stage (for `est bench`)."""
    return ingest_deliveries(home, [(partner, path) for path in paths], key, stage_seconds)


def ingest_deliveries(
    home: Home, deliveries: list[tuple[str, Path]], key: bytes, stage_seconds: dict[str, float] | None = None,
    progress: Callable[[str, int], None] | None = None, new_only: bool = False,
) -> list[Receipt]:
    """Ingest (partner, file) pairs, in order, each file in its own transaction: one partner's files as its
    ingest DAG gives them, or every partner's at once (`est run`, a backfill, `est bench`), so that the next
    partner's first file is prepared while the last file of the one before loads.

    ``stage_seconds``, when given, accumulates the wall time of each stage (for `est bench`); ``progress`` is
    called with the partner and its number of files after a partner's last file. ``new_only``: files whose
    content the ledger holds are left out (no receipt), asked on the run's own connection (:func:`new_files`)."""
    contracts = load_contracts()
    unknown = sorted({partner for partner, _ in deliveries} - set(contracts))
    if unknown:
        raise KeyError(f"no contract in schemas/partners/ for {', '.join(unknown)}")
    receipts = []
    reuse_freed_memory()
    con = warehouse.connect(home)
    if new_only:
        deliveries = _not_in_ledger(con, home, deliveries)
    # DuckDB loads with one thread: the other core prepares the next file. Measured here on 2 M bench rows,
    # inserting and checkpointing took 2x less CPU with one thread than with two (4.0 s against 6-9 s, in wall
    # time too): a parallel insert into a persistent table costs more than it gains when both cores are busy.
    con.execute("SET threads = 1")
    con.execute(f"SET memory_limit = '{INGEST_DUCKDB_MEMORY}'")
    # Two cores, two kinds of work: while DuckDB loads one file (it releases the GIL), the next files are read,
    # validated, pseudonymised and placed in worker threads (PREPARING_THREADS). Files are still applied one at
    # a time, in order, each in its own transaction, and the ledger is asked when a file is applied, so nothing
    # is applied twice.
    pool = ThreadPoolExecutor(max_workers=PREPARING_THREADS, thread_name_prefix="est-prepare")
    try:
        placing = placing_context(con, home) if deliveries else None
        # About one row per 100 bytes delivered (the bench's files hold about 150): only sizes a bitmap.
        held = HeldRecordKeys(con, sum(path.stat().st_size for _, path in deliveries) // 100) if deliveries else None
        vocabularies = warehouse.OpenVocabularies(con) if deliveries else None
        if deliveries:
            # The run's partners, their contracts' category codes and the installed areas, all at once before
            # the first file: each value new to a column rewrites that column, which is cheapest while the run
            # has loaded nothing yet (measured here, a new partner's codes mid-run cost 0.06 s at 2.5 M rows
            # and grow with the table).
            partners = sorted({partner for partner, _ in deliveries})
            with warehouse.transaction(con):
                vocabularies.widen(con, {"partner": partners,
                                         "partner_category": contract_category_codes(contracts, partners),
                                         "area_code": list(placing.area_index.codes)})
        codes = EnumCodes(con) if deliveries else None  # after the widening: the types as they now are

        def prepare(partner: str, path: Path):
            delivery_id, content = read_once(path)
            with closing(con.cursor()) as cursor:  # a connection of this thread's own to the same database
                earlier = ledger_entry(cursor, delivery_id)
            if earlier is not None and earlier["status"] != "rejected":
                return None  # applied already: ingest_file gives the duplicate receipt
            return prepare_delivery(contracts[partner], path, key, placing, stage_seconds=stage_seconds,
                                    delivery_id=delivery_id, content=content)

        upcoming = deque(pool.submit(prepare, *delivery) for delivery in deliveries[:PREPARING_THREADS])
        for number, (partner, path) in enumerate(deliveries, start=1):
            contract = contracts[partner]
            prepared = upcoming.popleft().result()
            if number + PREPARING_THREADS - 1 < len(deliveries):
                upcoming.append(pool.submit(prepare, *deliveries[number + PREPARING_THREADS - 1]))
            if prepared is None:
                receipt = ingest_file(con, home, contract, path, key, placing, stage_seconds=stage_seconds,
                                      held=held, vocabularies=vocabularies, codes=codes)
            else:
                receipt = apply_delivery(con, home, contract, path, prepared, stage_seconds, held, vocabularies,
                                         codes)
            log.info(
                "%s %d/%d %s: %s, %d in, %d loaded, %d quarantined",
                partner, number, len(deliveries), path.name, receipt.status, receipt.rows_in,
                receipt.rows_loaded, receipt.rows_quarantined,
            )
            receipts.append(receipt)
            if progress is not None and (number == len(deliveries) or deliveries[number][0] != partner):
                progress(partner, sum(1 for p, _ in deliveries if p == partner))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        started = time.perf_counter()
        con.close()  # DuckDB checkpoints here: writing the loaded rows into the file is part of loading
        if stage_seconds is not None:
            stage_seconds["load"] = stage_seconds.get("load", 0.0) + time.perf_counter() - started
    return receipts


def _not_in_ledger(con, home: Home, deliveries: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """The (partner, file) pairs whose content the ledger does not hold, in their order."""
    hashes: dict[Path, str] = {}
    for partner in dict.fromkeys(partner for partner, _ in deliveries):
        hashes.update(inbox_hashes(home, home.partner_inbox(partner), [p for q, p in deliveries if q == partner]))
    held = {delivery_id for (delivery_id,) in con.execute(
        "SELECT delivery_id FROM ingest_ledger WHERE delivery_id IN (SELECT unnest(?))",
        [sorted(set(hashes.values()))]).fetchall()}
    return [(partner, path) for partner, path in deliveries if hashes[path] not in held]


def new_files(home: Home, partner: str) -> list[Path]:
    """Files in inbox/<partner>/ whose content is not yet in the ledger."""
    files = pending_files(home, load_contracts()[partner])
    if not files or not home.db_path.exists():
        return files
    with closing(warehouse.connect(home)) as con:
        return [path for _, path in _not_in_ledger(con, home, [(partner, path) for path in files])]


def ingest_inbox(home: Home, partner: str, key: bytes) -> list[dict]:
    """Ingest every file in inbox/<partner>/ not yet in the ledger. Returns one receipt (dict) per file."""
    return ingest_inboxes(home, [partner], key)


def ingest_inboxes(home: Home, partners: list[str], key: bytes) -> list[dict]:
    """:func:`ingest_inbox` for several partners in one pass (one connection, one pipeline of files)."""
    contracts = load_contracts()
    deliveries = [(partner, path) for partner in partners for path in pending_files(home, contracts[partner])]
    return [r.to_json() for r in ingest_deliveries(home, deliveries, key, new_only=True)]


def aggregate(home: Home) -> None:
    """Rebuild weekly_counts from incidents (the aggregate every published number comes from)."""
    with closing(warehouse.connect(home)) as con, warehouse.transaction(con):
        con.execute(warehouse.sql_text("aggregate_weekly_counts"))


def render_weekly(home: Home, iso_week: str, lang: str = "sv", audience: str = "recipients") -> list[Path]:
    """Weekly report for 'YYYY-Www' into out/weekly/<week>/ (``lang`` 'sv' or 'en'; ``audience`` 'recipients'
    or 'partner:<id>'). Returns the files written."""
    from pipelines import report_weekly

    with closing(warehouse.connect(home)) as con:
        return report_weekly.render_weekly(con, home, iso_week, lang=lang, audience=audience)


def render_quarterly(home: Home, quarter: str) -> list[Path]:
    """The quarterly analysis pack for 'YYYYQn' into out/quarterly/<quarter>/: the maps, hot spots, near repeats,
    intervention follow-up, PNGs, CSVs and the index page (pipelines/quarterly_pack.py). Returns the files
    written, index.html last."""
    from pipelines import quarterly_pack

    with closing(warehouse.connect(home)) as con:
        return quarterly_pack.render_pack(con, home, quarter)
