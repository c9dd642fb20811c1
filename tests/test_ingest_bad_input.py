"""Bad input from ../shared/RELIABILITY.md, one fixture each (tests/fixtures/ingest/): the right quarantine
reason or a refusal naming the file and the reason, and nothing lost (rows_in = loaded + quarantined)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipelines import jobs, privacy
from pipelines.ingest import RECORD_DOMAIN
from pipelines.settings import Home

from test_ingest_helpers import INGEST_FIXTURES, KEY, fixture_contract, ingest, query


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Home:
    home = Home(tmp_path_factory.mktemp("bad_input")).ensure()
    jobs.prepare_reference(home)
    return home


def _accounted(receipt) -> None:
    assert receipt.status == "accepted", receipt.reason
    assert receipt.rows_in == receipt.rows_loaded + receipt.rows_quarantined


def _reasons(receipt) -> dict[str, list[int]]:
    return {item["reason"]: item["rows"] for item in receipt.quarantine}


@pytest.mark.parametrize("name, encoding", [
    ("cp1252_semicolon_decimal_comma.csv", "windows-1252"),
    ("utf16_excel.csv", "utf-16"),
    ("utf8_bom.csv", "utf-8-sig"),
])
def test_encodings_delimiters_decimal_commas_and_nbsp_thousands(home, name, encoding):
    receipt = ingest(home, fixture_contract(), INGEST_FIXTURES / name)
    _accounted(receipt)
    assert receipt.encoding == encoding
    assert receipt.header == ["Id", "Tid", "Typ", "N", "E", "Beskrivning"]  # no BOM glued to the first name
    assert receipt.rows_loaded == 2 and receipt.rows_unplaced == 0  # "6 574 500,5" read as a number, placed
    assert sorted(r[0] for r in query(home, "SELECT partner_category FROM incidents WHERE delivery_number = "
                     "(SELECT delivery_number FROM ingest_ledger WHERE delivery_id = ?)",
                                      [receipt.delivery_id])) == ["Klotter", "Skadegörelse"]


def test_multiline_fields_and_ragged_rows_keep_row_numbers(home):
    receipt = ingest(home, fixture_contract(), INGEST_FIXTURES / "multiline_ragged_quotes.csv")
    _accounted(receipt)
    assert receipt.rows_in == 4
    # Row 1 spans three lines but is one data row, so the ragged row is row 2 (line 5 of the file).
    assert _reasons(receipt) == {"row: expected 6 fields, found 4": [2]}
    loaded = dict(query(home, "SELECT source_row, description FROM incidents WHERE delivery_number = "
                     "(SELECT delivery_number FROM ingest_ledger WHERE delivery_id = ?)",
                        [receipt.delivery_id]))
    assert sorted(loaded) == [1, 3, 4]
    assert loaded[1].count("\n") == 2  # the newlines inside the quoted field survive
    assert loaded[4] == 'ett "citat" och ;semikolon'


def test_an_unbalanced_quote_that_swallows_rows_refuses_the_file(home):
    receipt = ingest(home, fixture_contract(), INGEST_FIXTURES / "unbalanced_quote.csv")
    assert receipt.status == "rejected"
    assert receipt.reason.startswith("unbalanced_quote.csv: a quote in data row 1")


def test_identifier_with_leading_zero_far_down_the_file_survives(home):
    receipt = ingest(home, fixture_contract(), INGEST_FIXTURES / "leading_zero_far_down.csv")
    _accounted(receipt)
    expected = privacy.pseudonymise(pd.Series(["000123"]), privacy.derive_key(KEY, RECORD_DOMAIN))[0]
    assert query(home, "SELECT source_row FROM incidents WHERE pseudonym_text(partner_record_id) = ?", [expected]) == [(290,)]


def test_excel_serial_dates_and_dst_nights_land_in_the_right_iso_week(home):
    receipt = ingest(home, fixture_contract(), INGEST_FIXTURES / "excel_serial_and_dst.csv")
    _accounted(receipt)
    assert receipt.rows_loaded == 4
    weeks = dict(query(home, "SELECT source_row, iso_week FROM incidents WHERE delivery_number = "
                     "(SELECT delivery_number FROM ingest_ledger WHERE delivery_id = ?)", [receipt.delivery_id]))
    assert weeks == {1: "2026-W09", 2: "2026-W13", 3: "2026-W43", 4: "2026-W13"}
    first = query(home, "SELECT timezone('Europe/Stockholm', occurred_from) FROM incidents "
                        "WHERE delivery_number = (SELECT delivery_number FROM ingest_ledger WHERE delivery_id = ?) "
                        "AND source_row = 1", [receipt.delivery_id])[0][0]
    assert str(first).startswith("2026-03-01 12:00")


@pytest.mark.parametrize("name", ["empty_0byte.csv", "header_only.csv"])
def test_empty_and_header_only_files_are_a_clean_nothing_delivered_receipt(home, name):
    receipt = ingest(home, fixture_contract(), INGEST_FIXTURES / name)
    assert receipt.status == "empty" and receipt.rows_in == 0


@pytest.mark.parametrize("name, words", [
    ("zip_named_as.csv", "zip archive"),
    ("bomb.csv.gz", "compression bomb"),
    ("truncated.csv.gz", "truncated gzip"),
])
def test_archives_bombs_and_wrong_kinds_are_refused_before_parsing(home, name, words):
    before = query(home, "SELECT count(*) FROM incidents")
    receipt = ingest(home, fixture_contract(), INGEST_FIXTURES / name)
    assert receipt.status == "rejected"
    assert receipt.reason.startswith(name) and words in receipt.reason
    assert query(home, "SELECT count(*) FROM incidents") == before
    assert query(home, "SELECT status FROM ingest_ledger WHERE delivery_id = ?", [receipt.delivery_id]) == [("rejected",)]


def test_a_gzip_delivery_within_the_limits_is_read(home, tmp_path):
    import gzip

    path = tmp_path / "ok.csv.gz"
    path.write_bytes(gzip.compress((INGEST_FIXTURES / "utf8_bom.csv").read_bytes().replace(b"A-", b"G-")))
    receipt = ingest(home, fixture_contract(), path)
    _accounted(receipt)
    assert receipt.rows_loaded == 2 and "gzip archive, expanded" in receipt.notes


def test_coordinates_swapped_zero_outside_the_municipality_or_missing(home):
    receipt = ingest(home, fixture_contract(), INGEST_FIXTURES / "coordinates_bad.csv")
    _accounted(receipt)
    reasons = _reasons(receipt)
    assert reasons["coordinates: SWEREF 99 TM northing outside Sweden"] == [1, 2]
    # Inside Sweden but outside the municipality, or no location: loaded and counted as unplaced, not lost.
    assert query(home, "SELECT source_row, location_precision FROM incidents WHERE delivery_number = "
                     "(SELECT delivery_number FROM ingest_ledger WHERE delivery_id = ?) ORDER BY 1",
                 [receipt.delivery_id]) == [(3, "unplaced"), (4, "unplaced")]
    assert receipt.rows_unplaced == 2


def test_unknown_categories_area_codes_and_the_same_incident_twice_in_one_file(home):
    receipt = ingest(home, fixture_contract(), INGEST_FIXTURES / "unknown_codes_and_duplicates.csv")
    _accounted(receipt)
    reasons = _reasons(receipt)
    assert reasons["category: unknown_value"] == [1]
    assert reasons["record_id: repeated_in_file"] == [4]
    assert query(home, "SELECT source_row, location_precision FROM incidents WHERE delivery_number = "
                     "(SELECT delivery_number FROM ingest_ledger WHERE delivery_id = ?) ORDER BY 1",
                 [receipt.delivery_id]) == [(2, "unplaced"), (3, "unplaced")]


def test_html_script_template_and_formula_payloads_never_reach_a_receipt(home):
    receipt = ingest(home, fixture_contract(), INGEST_FIXTURES / "payloads.csv")
    _accounted(receipt)
    assert _reasons(receipt) == {"category: unknown_value": [4]}
    outputs = [p.read_text(encoding="utf-8") for p in (home.receipts / "fixture_csv").glob("payloads.*")]
    assert len(outputs) == 2
    for text in outputs:
        for payload in ("<script", "alert(", "${", "=HYPERLINK", "onerror", "<img"):
            assert payload not in text
    json.loads(next(t for t in outputs if t.lstrip().startswith("{")))


def test_excel_serial_number_in_an_xlsx_date_column_is_the_right_date(home, tmp_path):
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Id", "Tid", "Typ", "N", "E", "Beskrivning"])
    sheet.append(["X-1", 46082.5, "Klotter", 6574500, 514800, None])  # a number, not a date cell
    sheet.append(["X-2", 46082, "Klotter", 6574500, 514800, None])    # a whole day
    path = tmp_path / "serial.xlsx"
    workbook.save(path)
    contract = fixture_contract(file={"type": "xlsx", "patterns": ["*.xlsx"]})
    receipt = ingest(home, contract, path)
    _accounted(receipt)
    rows = query(home, "SELECT source_row, strftime(timezone('Europe/Stockholm', occurred_from), '%Y-%m-%d %H:%M'), "
                       "time_precision, iso_week FROM incidents WHERE delivery_number = "
                     "(SELECT delivery_number FROM ingest_ledger WHERE delivery_id = ?) ORDER BY 1", [receipt.delivery_id])
    assert rows == [(1, "2026-03-01 12:00", "exact", "2026-W09"), (2, "2026-03-01 00:00", "day", "2026-W09")]


def test_an_xlsx_named_csv_is_refused_naming_what_it_is(home, tmp_path):
    import openpyxl

    path = tmp_path / "export.csv"
    workbook = openpyxl.Workbook()
    workbook.active.append(["Id", "Tid", "Typ"])
    workbook.save(path)
    receipt = ingest(home, fixture_contract(), path)
    assert receipt.status == "rejected" and receipt.reason == (
        "export.csv: is an .xlsx workbook, not a csv file as the contract says")
