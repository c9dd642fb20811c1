"""Invariants and faults of ingest (../shared/RELIABILITY.md, issue 3 item 5), each a test that can fail:
nothing applied twice (same, renamed, reordered), a period re-delivery replaces that period, a killed or failing
load leaves the database consistent and a rerun completes it, two partners' records of one incident stay two."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelines import ingest as ingest_module
from pipelines import jobs
from pipelines.contracts import contract_for
from pipelines.settings import PARTNER_CONTRACTS_DIR, Home

from test_ingest_helpers import FIXTURES, INGEST_FIXTURES, KEY, fingerprint, fixture_contract, ingest, query

UK_MARCH = FIXTURES / "police_uk" / "2018-03-essex-head40.csv"
UK_APRIL_RENAMED = FIXTURES / "police_uk" / "2018-04-renamed-head30.csv"
ALL_TABLES = ("incidents", "quarantine", "ingest_ledger", "weekly_counts", "audit_log")


@pytest.fixture()
def home(tmp_path) -> Home:
    home = Home(tmp_path / "home").ensure()
    jobs.prepare_reference(home)
    return home


def _reordered(path: Path, target: Path) -> Path:
    header, *rows = path.read_text(encoding="utf-8").splitlines(keepends=True)
    target.write_text(header + "".join(reversed(rows)), encoding="utf-8")
    return target


def test_same_file_twice_renamed_or_reordered_changes_nothing(home, tmp_path):
    contract = contract_for("police_uk")
    first = ingest(home, contract, UK_MARCH)
    assert first.status == "accepted" and first.rows_loaded == 40
    jobs.aggregate(home)
    before = fingerprint(home)
    everything = fingerprint(home, ALL_TABLES)

    assert ingest(home, contract, UK_MARCH).status == "duplicate"
    renamed = tmp_path / "renamed.csv"
    shutil.copy(UK_MARCH, renamed)
    assert ingest(home, contract, renamed).status == "duplicate"
    jobs.aggregate(home)
    assert fingerprint(home, ALL_TABLES) == everything  # not even a ledger row or an audit entry

    # Another row order is other bytes: a new ledger row, but not one incident changes (not even its source_row).
    reordered = ingest(home, contract, _reordered(UK_MARCH, tmp_path / "reordered.csv"))
    assert reordered.status == "accepted" and reordered.rows_loaded == 40 and reordered.rows_withdrawn == 0
    jobs.aggregate(home)
    assert fingerprint(home) == before


def test_one_batch_holding_the_same_content_twice_applies_it_once(home, tmp_path):
    # jobs.ingest_files prepares the next file while the previous one loads: the second copy is prepared before
    # the first is committed, so only the ledger check at apply time, in file order, can stop it.
    copies = []
    for name in ("a_march.csv", "b_march_again.csv", "c_march_third.csv"):
        copies.append(home.partner_inbox("police_uk") / name)
        copies[-1].parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(UK_MARCH, copies[-1])
    receipts = jobs.ingest_files(home, "police_uk", copies, KEY)
    assert [r.status for r in receipts] == ["accepted", "duplicate", "duplicate"]
    assert query(home, "SELECT count(*), count(DISTINCT partner_record_id) FROM incidents") == [(40, 40)]
    assert query(home, "SELECT count(*) FROM ingest_ledger") == [(1,)]


def test_records_repeated_or_revised_within_one_run_are_held_once(home, tmp_path):
    """A run inserts a file as it is when none of its records is held (ingest.HeldRecordKeys): records that an
    earlier file of the same run loaded, or an earlier run, must still be found and replaced, never doubled."""
    inbox = home.partner_inbox("police_uk")
    inbox.mkdir(parents=True, exist_ok=True)
    header, *rows = UK_MARCH.read_text(encoding="utf-8").splitlines(keepends=True)
    first = inbox / "a_march.csv"
    shutil.copy(UK_MARCH, first)
    reordered = _reordered(UK_MARCH, inbox / "b_march_reordered.csv")  # other bytes, the same 40 records
    fields = rows[0].split(",")
    fields[9] = "Robbery"  # one record revised (its Crime type), the rest as before
    revised = inbox / "c_march_revised.csv"
    revised.write_text(header + ",".join(fields) + "".join(rows[1:]), encoding="utf-8")
    receipts = jobs.ingest_files(home, "police_uk", [first, reordered, revised], KEY)
    assert [r.status for r in receipts] == ["accepted", "accepted", "accepted"]
    assert query(home, "SELECT count(*), count(DISTINCT partner_record_id) FROM incidents") == [(40, 40)]
    assert query(home, "SELECT count(*) FROM incidents WHERE partner_category = 'Robbery'") == [
        (1 + sum(r.split(",")[9] == "Robbery" for r in rows),)]
    # A later run starts from what the warehouse holds.
    again = jobs.ingest_files(home, "police_uk", [_reordered(revised, tmp_path / "d_again.csv")], KEY)
    assert again[0].status == "accepted"
    assert query(home, "SELECT count(*), count(DISTINCT partner_record_id) FROM incidents") == [(40, 40)]


def test_held_record_keys_finds_every_listed_key_and_only_those():
    """HeldRecordKeys answers from a bitmap of the keys' top bits, then the sorted runs: a key that shares its
    bit with a listed one is not held, a listed key is found in whichever run it went into, however the runs
    were merged."""
    import duckdb
    import numpy as np
    import pyarrow as pa

    con = duckdb.connect()
    con.execute("CREATE TABLE incidents (record_key UBIGINT)")
    rng = np.random.default_rng(3)
    stored = rng.integers(0, 2**64, 5_000, dtype=np.uint64, endpoint=False)
    con.register("stored_frame", pa.table({"record_key": stored}))
    con.execute("INSERT INTO incidents SELECT record_key FROM stored_frame")
    held = ingest_module.HeldRecordKeys(con)
    files = [rng.integers(0, 2**64, size, dtype=np.uint64, endpoint=False) for size in (700, 300, 2_000, 50, 40_000, 9_000)]
    for number, keys in enumerate(files):
        table = pa.table({"record_key": keys})
        assert not held.any_held(table)
        # As the loader does, the table any_held sorted the keys of (sorted once), or another one.
        held.add(table if number % 2 else pa.table({"record_key": keys}))
    assert held._sorted is None  # no table is kept once its keys are listed
    assert len(held._runs) < len(files)  # runs were merged along the way
    assert held._bits > held.MIN_BITS  # the bitmap grew with the keys, rebuilt from every run
    assert all(len(older) > len(newer) for older, newer in zip(held._runs, held._runs[1:]))
    for keys in (stored, *files):
        for key in keys[[0, len(keys) // 2, -1]]:
            assert held.any_held(pa.table({"record_key": np.array([key], dtype=np.uint64)}))
    # The same top bits as listed keys (the bitmap says "maybe"), other low bits: not held.
    listed = np.concatenate([stored, *files])
    neighbours = listed ^ np.uint64(1)
    neighbours = neighbours[~np.isin(neighbours, listed)]
    assert not held.any_held(pa.table({"record_key": neighbours}))
    assert not held.any_held(pa.table({"record_key": np.array([], dtype=np.uint64)}))


def test_the_ledger_records_the_content_that_was_parsed_even_if_the_file_changes(home, tmp_path):
    """The content hash and the parsed rows come from one read (ingest.read_once): a file still being written
    when it is picked up cannot be recorded under one content and loaded with another."""
    path = tmp_path / "2018-03.csv"
    shutil.copy(UK_MARCH, path)
    delivery_id, content = ingest_module.read_once(path)
    header, *rows = UK_MARCH.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text(header + "".join(rows[:10]), encoding="utf-8")  # the file changes after it was read
    prepared = ingest_module.prepare_delivery(contract_for("police_uk"), path, KEY, None,  # nothing to place
                                              delivery_id=delivery_id, content=content)
    assert prepared.receipt.delivery_id == delivery_id == ingest_module.content_hash(UK_MARCH)
    assert prepared.receipt.rows_in == len(rows) == 40


def test_a_corrected_redelivery_of_a_period_replaces_that_periods_rows(home, tmp_path):
    contract = contract_for("police_uk")  # deliveries: period_snapshot (a monthly file is the whole month)
    ingest(home, contract, UK_MARCH)
    header, *rows = UK_MARCH.read_text(encoding="utf-8").splitlines(keepends=True)
    corrected = rows[5:]  # five records withdrawn by the partner
    fields = corrected[0].split(",")
    fields[9] = "Robbery"  # one record corrected (its Crime type)
    corrected[0] = ",".join(fields)
    path = tmp_path / "2018-03-corrected.csv"
    path.write_text(header + "".join(corrected), encoding="utf-8")
    receipt = ingest(home, contract, path)
    assert receipt.status == "accepted" and receipt.rows_withdrawn == 5
    assert query(home, "SELECT count(*) FROM incidents WHERE partner = 'police_uk'") == [(35,)]
    assert query(home, "SELECT count(DISTINCT delivery_number) FROM incidents") == [(2,)]  # unchanged rows keep theirs
    # The next month is another period: March's records stay.
    april = ingest(home, contract, UK_APRIL_RENAMED)
    assert april.status == "accepted" and april.rows_withdrawn == 0
    assert query(home, "SELECT count(*) FROM incidents WHERE partner = 'police_uk'") == [(65,)]


def test_an_incremental_partners_partial_delivery_withdraws_nothing(home, tmp_path):
    contract = fixture_contract()  # deliveries: incremental (the default): weekly files may be partial
    ingest(home, contract, INGEST_FIXTURES / "cp1252_semicolon_decimal_comma.csv")
    partial = tmp_path / "partial.csv"
    lines = (INGEST_FIXTURES / "cp1252_semicolon_decimal_comma.csv").read_bytes().splitlines(keepends=True)
    partial.write_bytes(lines[0] + lines[2])
    receipt = ingest(home, contract, partial)
    assert receipt.status == "accepted" and receipt.rows_withdrawn == 0
    assert query(home, "SELECT count(*) FROM incidents") == [(2,)]


def test_renamed_header_is_refused_naming_missing_and_unknown_columns_unless_aliased(home):
    from test_ingest_helpers import contract_with

    without_aliases = contract_with(PARTNER_CONTRACTS_DIR / "police_uk.yaml", aliases=None)
    receipt = ingest(home, without_aliases, UK_APRIL_RENAMED)
    assert receipt.status == "rejected"
    assert "the header has changed" in receipt.reason
    assert "required column(s) missing: 'Crime ID', 'Month', 'Crime type'" in receipt.reason
    assert "unknown column(s): 'crime_id', 'month', 'reported_by'" in receipt.reason
    html = next((home.receipts / "police_uk").glob("2018-04-renamed-head30.*.html")).read_text(encoding="utf-8")
    assert "required column(s) missing: &#39;Crime ID&#39;, &#39;Month&#39;, &#39;Crime type&#39;" in html
    assert query(home, "SELECT count(*) FROM incidents") == [(0,)]

    accepted = ingest(home, contract_for("police_uk"), UK_APRIL_RENAMED)
    assert accepted.status == "accepted" and accepted.rows_loaded == 30
    assert "column 'Crime ID' read from 'crime_id' (an alias in the contract)" in accepted.notes


def test_police_uk_from_configuration_alone_on_the_real_month(home):
    source = Path(__file__).resolve().parents[2] / "shared" / "data" / "police-uk" / "2018-03-essex-street.csv"
    receipt = ingest(home, contract_for("police_uk"), source)
    assert receipt.status == "accepted" and receipt.rows_in == 16014
    assert receipt.rows_loaded + receipt.rows_quarantined == receipt.rows_in
    assert receipt.rows_quarantined == 0  # blank Crime IDs get row-hash ids; England is inside the extent
    precisions = dict(query(home, "SELECT location_precision, count(*) FROM incidents GROUP BY 1"))
    assert set(precisions) <= {"area", "unplaced"} and precisions["area"] > 15000
    assert query(home, "SELECT expected_weekly FROM partner_expectations WHERE partner = 'police_uk'") == [(False,)]
    assert query(home, "SELECT expected_weekly FROM partner_expectations WHERE partner = 'housing'") == [(True,)]


def test_failure_inside_the_load_transaction_leaves_the_database_unchanged(home, monkeypatch):
    contract = fixture_contract()
    before = fingerprint(home, ALL_TABLES)

    def broken(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ingest_module, "_write_ledger", broken)
    with pytest.raises(OSError):
        ingest(home, contract, INGEST_FIXTURES / "coordinates_bad.csv")
    assert fingerprint(home, ALL_TABLES) == before
    monkeypatch.undo()
    receipt = ingest(home, contract, INGEST_FIXTURES / "coordinates_bad.csv")
    assert receipt.status == "accepted" and receipt.rows_in == receipt.rows_loaded + receipt.rows_quarantined == 4


KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from pipelines import ingest
    from pipelines.settings import Home
    from test_ingest_helpers import KEY, fixture_contract, ingest as run

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(ingest, sys.argv[2], die)  # 'audit': inside the transaction; 'write_receipt': after the commit
    run(Home(Path(sys.argv[1])), fixture_contract(), Path(sys.argv[4]))
""")


@pytest.mark.parametrize("where, committed", [("audit", False), ("write_receipt", True)])
def test_a_process_killed_before_or_after_the_commit_is_completed_by_a_rerun(home, tmp_path, where, committed):
    fixture = INGEST_FIXTURES / "unknown_codes_and_duplicates.csv"
    script = tmp_path / "killer.py"
    script.write_text(KILLER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, str(script), str(home.root), where, str(Path(__file__).parent), str(fixture)],
                          env=env, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    ledger = query(home, "SELECT rows_in, rows_loaded, rows_quarantined FROM ingest_ledger")
    incidents = query(home, "SELECT count(*) FROM incidents")[0][0]
    quarantined = query(home, "SELECT count(*) FROM quarantine")[0][0]
    if committed:
        assert ledger == [(4, 2, 2)] and incidents == 2 and quarantined == 2
    else:
        assert ledger == [] and incidents == 0 and quarantined == 0  # nothing half-applied

    rerun = ingest(home, fixture_contract(), fixture)
    assert rerun.status == ("duplicate" if committed else "accepted")
    assert query(home, "SELECT rows_in, rows_loaded, rows_quarantined FROM ingest_ledger") == [(4, 2, 2)]
    assert query(home, "SELECT count(*) FROM incidents") == [(2,)]
    assert query(home, "SELECT count(*) FROM quarantine") == [(2,)]


def test_the_same_incident_from_two_partners_is_two_records_counted_once_per_partner(home, tmp_path):
    from test_ingest_helpers import contract_with

    other_path = tmp_path / "fixture_other.yaml"
    other_path.write_text((INGEST_FIXTURES / "fixture_csv.yaml").read_text(encoding="utf-8")
                          .replace("partner: fixture_csv", "partner: fixture_other"), encoding="utf-8")
    own_copy = tmp_path / "other_partners_export.csv"  # the other partner's own export of the same incidents
    own_copy.write_bytes((INGEST_FIXTURES / "utf8_bom.csv").read_bytes().replace(b"\n", b"\r\n"))
    for contract, path in ((fixture_contract(), INGEST_FIXTURES / "utf8_bom.csv"), (contract_with(other_path), own_copy)):
        assert ingest(home, contract, path).rows_loaded == 2
    jobs.aggregate(home)
    # sql/aggregate_weekly_counts.sql: one count per partner record; partners are never merged.
    assert query(home, "SELECT partner, sum(n) FROM weekly_counts GROUP BY 1 ORDER BY 1") == [
        ("fixture_csv", 2), ("fixture_other", 2)]


def test_contract_settings_are_checked_when_the_contract_is_loaded():
    from pipelines.contracts import ContractError

    with pytest.raises(ContractError, match="deliveries must be one of"):
        fixture_contract(deliveries="sometimes")
    with pytest.raises(ContractError, match="extent.height"):
        fixture_contract(extent={"height": [0, 1]})
    with pytest.raises(ContractError, match="gazetteer"):
        fixture_contract(gazetteer="no_such_file.yaml")
    assert fixture_contract().deliveries == "incremental" and fixture_contract().expected_weekly is True


def test_a_run_stores_the_same_rows_by_codes_as_one_file_at_a_time_by_text(tmp_path, monkeypatch):
    """jobs.ingest_deliveries inserts a file of new records by its ENUM codes (ingest.EnumCodes); ingest_file
    alone goes through sql/upsert_incidents.sql with the text. Both must store the very same rows, widened
    vocabularies included (every partner brings its own codes)."""
    from contextlib import closing

    from pipelines import generate, warehouse
    from pipelines.contracts import load_contracts

    by_run = Home(tmp_path / "run").ensure()
    generate.generate(by_run, weeks=2, last_week="2026-W10")
    by_file = Home(tmp_path / "file").ensure()
    shutil.copytree(by_run.inbox, by_file.inbox, dirs_exist_ok=True)
    shutil.copytree(by_run.reference, by_file.reference, dirs_exist_ok=True)
    jobs.prepare_reference(by_run)
    jobs.prepare_reference(by_file)
    partners = list(load_contracts())
    deliveries = [(partner, path) for partner in partners for path in jobs.new_files(by_run, partner)]
    assert len(deliveries) > len(partners)
    inserted_by_codes = []
    insert = ingest_module.EnumCodes.insert
    monkeypatch.setattr(ingest_module.EnumCodes, "insert",
                        lambda self, con, table: inserted_by_codes.append(table.num_rows) or insert(self, con, table))
    receipts = jobs.ingest_deliveries(by_run, deliveries, KEY)
    # Files of new records only took the codes; one revising records of an earlier file took the upsert.
    assert 0 < len(inserted_by_codes) < len(deliveries)
    assert {r.status for r in receipts} == {"accepted"}
    contracts = load_contracts()
    with closing(warehouse.connect(by_file)) as con:
        placing = jobs.placing_context(con, by_file)
        for partner, path in deliveries:
            ingest_module.ingest_file(con, by_file, contracts[partner],
                                      by_file.partner_inbox(partner) / path.name, KEY, placing)
    assert query(by_run, "SELECT count(*) FROM incidents")[0][0] > 500
    assert fingerprint(by_run, ("incidents",)) == fingerprint(by_file, ("incidents",))


def test_new_files_reads_only_files_it_has_not_seen_as_they_are_now(home, monkeypatch):
    inbox = home.partner_inbox("police_uk")
    inbox.mkdir(parents=True, exist_ok=True)
    march, april = inbox / "2018-03.csv", inbox / "2018-04.csv"
    shutil.copy(UK_MARCH, march)
    shutil.copy(UK_APRIL_RENAMED, april)
    assert jobs.new_files(home, "police_uk") == [march, april]
    jobs.ingest_files(home, "police_uk", [march], KEY)

    read = []
    hash_file = ingest_module.content_hash
    monkeypatch.setattr(ingest_module, "content_hash", lambda path: read.append(path.name) or hash_file(path))
    assert jobs.new_files(home, "police_uk") == [april] and read == []  # both known as they are: neither read

    # The applied file overwritten in place with other bytes of the same length, its modification time put
    # back (as `cp -p` or rsync would): its change time moved, so it is read, and it is new.
    status = march.stat()
    data = bytearray(march.read_bytes())
    data[-2:-1] = b"0" if data[-2:-1] != b"0" else b"1"
    march.write_bytes(bytes(data))
    os.utime(march, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert march.stat().st_size == status.st_size and march.stat().st_mtime_ns == status.st_mtime_ns
    assert jobs.new_files(home, "police_uk") == [march, april] and read == [march.name]

    # The remembered hashes damaged: every file is read again, and the answer is the same.
    (home.work / ingest_module.INBOX_HASHES_FILE).write_text("{not json", encoding="utf-8")
    read.clear()
    assert jobs.new_files(home, "police_uk") == [march, april] and sorted(read) == [march.name, april.name]

    april.unlink()  # removed (retention): forgotten
    jobs.new_files(home, "police_uk")
    remembered = (home.work / ingest_module.INBOX_HASHES_FILE).read_text(encoding="utf-8")
    assert "2018-04.csv" not in remembered and "2018-03.csv" in remembered
