"""Unit tier: reading deliveries as their contract says, canonical fields, and Great Expectations' rules."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from pipelines.canonical import to_canonical
from pipelines.contracts import ContractError, parse_contract
from pipelines.readers import DeliveryRefused, detect_encoding, read_delivery
from pipelines.validate import validate

RECEIVED = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)

CONTRACT = {
    "partner": "testpartner",
    "name": "Test partner",
    "version": 3,
    "file": {"type": "csv", "encoding": "detect", "delimiter": "detect", "decimal": ","},
    "columns": {
        "record_id": {"from": "Id"},
        "revision": {"from": "Rev"},
        "occurred_from": {"from": "Datum", "formats": ["%Y-%m-%d %H:%M"]},
        "occurred_to": {"from": "Till", "formats": ["%Y-%m-%d %H:%M"]},
        "category": {"from": "Typ"},
        "latitude": {"from": "Lat"},
        "longitude": {"from": "Lon"},
        "description": {"from": "Text"},
    },
    "category_map": {"Klotter": "graffiti", "Skadegörelse": "property_damage"},
}


def contract(tmp_path: Path, **changes):
    raw = {**CONTRACT, **changes}
    return parse_contract(raw, tmp_path / f"{raw['partner']}.yaml")


def write(tmp_path: Path, text: str, encoding: str = "utf-8", name: str = "d.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


HEADER = "Id;Rev;Datum;Till;Typ;Lat;Lon;Text\n"


def test_windows_1252_semicolon_decimal_comma_read_as_text(tmp_path):
    path = write(tmp_path, HEADER + "0001011239;1;2026-03-02 21:30;;Skadegörelse;59,27;15,21;Fönster – krossat\n",
                 encoding="cp1252")
    raw = read_delivery(path, contract(tmp_path))
    assert raw.encoding == "windows-1252"
    assert raw.table.column("Id").to_pylist() == ["0001011239"]  # leading zeros survive: text, never a number
    frame = to_canonical(raw, contract(tmp_path), RECEIVED)
    assert frame.loc[0, "latitude"] == pytest.approx(59.27)
    assert frame.loc[0, "category"] == "property_damage"
    assert frame.loc[0, "description"] == "Fönster – krossat"


def test_utf16_and_bom_detected(tmp_path):
    text = HEADER.replace(";", ",") + "A1,1,2026-03-02 21:30,,Klotter,,,x\n"
    assert detect_encoding("\ufeff".encode("utf-16-le")[:2] + b"", "utf-8") == "utf-16"
    raw = read_delivery(write(tmp_path, "\ufeff" + text, "utf-16-le", "u16.csv"), contract(tmp_path))
    assert raw.encoding == "utf-16" and raw.rows_in == 1
    raw = read_delivery(write(tmp_path, "\ufeff" + text, "utf-8", "bom.csv"), contract(tmp_path))
    assert raw.encoding == "utf-8-sig" and raw.header[0] == "Id"


def test_missing_required_column_refuses_file_naming_missing_and_unknown(tmp_path):
    path = write(tmp_path, "Id;Rev;When;Typ\nA;1;2026-01-01 10:00;Klotter\n")
    with pytest.raises(DeliveryRefused) as refusal:
        read_delivery(path, contract(tmp_path))
    message = str(refusal.value)
    assert "d.csv" in message and "'Datum'" in message and "'When'" in message


def test_aliases_accept_a_renamed_header(tmp_path):
    path = write(tmp_path, "Id;Rev;When;Typ\nA;1;2026-01-01 10:00;Klotter\n")
    raw = read_delivery(path, contract(tmp_path, aliases={"Datum": ["When"]}))
    frame = to_canonical(raw, contract(tmp_path, aliases={"Datum": ["When"]}), RECEIVED)
    assert frame.loc[0, "occurred_from"] == pd.Timestamp("2026-01-01 09:00", tz="UTC")


def test_ragged_rows_are_reported_with_their_row_numbers(tmp_path):
    rows = ["A1;1;2026-03-02 21:30;;Klotter;;;x", "A2;1;2026-03-02", "A3;1;2026-03-02 22:00;;Klotter;;;y"]
    raw = read_delivery(write(tmp_path, HEADER + "\n".join(rows) + "\n"), contract(tmp_path))
    assert raw.rows_in == 3
    assert [r for r, _ in raw.broken_rows] == [2]
    assert list(raw.source_rows) == [1, 3]


def test_rules_quarantine_with_reasons_and_no_personal_values(tmp_path):
    rows = [
        "A1;1;2026-03-02 21:30;;Klotter;59,27;15,21;ok",
        ";1;2026-03-02 21:30;;Klotter;;;no id",
        "A3;1;02/03/2026;;Klotter;;;bad date",
        "A4;1;2026-03-02 21:30;;Okänd;;;unknown category",
        "A5;1;2026-03-02 21:30;2026-03-01 10:00;Klotter;;;ends before it starts",
        "A6;1;2026-03-02 21:30;;Klotter;15,21;59,27;swapped",
        "A7;1;2099-01-01 10:00;;Klotter;;;future",
        "A1;2;2026-03-03 10:00;;Klotter;;;higher revision of A1",
        "A9;x;2026-03-02 21:30;;;0;0;several problems",
        "A10;1;1850-06-01 10:00;;Klotter;;;before the warehouse's calendar (a typo for 1950?)",
    ]
    c = contract(tmp_path)
    raw = read_delivery(write(tmp_path, HEADER + "\n".join(rows) + "\n"), c)
    frame = to_canonical(raw, c, RECEIVED)
    reasons = validate(frame)
    assert reasons[1] == ["record_id: repeated_in_file"]  # A1 revision 2 (row 8) wins
    assert 8 not in reasons
    assert reasons[2] == ["record_id: missing"]
    assert reasons[3] == ["occurred_from: not_a_date"]
    assert reasons[4] == ["category: unknown_value"]
    assert reasons[5] == ["occurred_to: before occurred_from"]
    assert any("latitude outside Sweden" in r for r in reasons[6])
    assert reasons[7] == ["occurred_from: in_the_future"]
    assert {"revision: not_a_whole_number", "category: missing"} <= set(reasons[9])
    assert reasons[10] == ["occurred_from: year_outside_1900_2199"]  # its ISO week is not one the store holds
    # Reasons are codes and fixed texts: no value from the file appears in them.
    text = " ".join(r for found in reasons.values() for r in found)
    for value in ("A1", "A9", "Okänd", "02/03/2026", "several", "15,21"):
        assert value not in text


def test_daylight_saving_nights_land_in_the_right_utc_time(tmp_path):
    rows = ["B1;1;2026-10-25 02:30;;Klotter;;;autumn, happens twice", "B2;1;2026-03-29 02:30;;Klotter;;;spring, never"]
    c = contract(tmp_path)
    frame = to_canonical(read_delivery(write(tmp_path, HEADER + "\n".join(rows) + "\n"), c), c, RECEIVED)
    assert frame.loc[0, "occurred_from"] == pd.Timestamp("2026-10-25 00:30", tz="UTC")  # first (summer) time
    assert frame.loc[1, "occurred_from"] == pd.Timestamp("2026-03-29 01:00", tz="UTC")  # shifted forward
    assert validate(frame) == {}


def test_contract_errors_name_the_file(tmp_path):
    with pytest.raises(ContractError, match="testpartner.yaml: category_map maps to codes not in"):
        contract(tmp_path, category_map={"X": "not_a_code"})
    with pytest.raises(ContractError, match="required fields"):
        contract(tmp_path, columns={"record_id": {"from": "Id"}})


def test_real_contracts_all_load():
    from pipelines.contracts import load_contracts

    contracts = load_contracts()
    assert {"police_events", "police_cases", "housing", "schools", "social_services", "home_care"} <= set(contracts)
