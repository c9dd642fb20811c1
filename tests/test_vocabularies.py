"""The closed vocabularies of `incidents` are ENUMs of the project's catalogues (warehouse.sync_vocabularies)."""

import duckdb
import pytest

from pipelines import warehouse


def _warehouse_with_an_incident() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    warehouse.migrate(con)
    con.execute(
        "INSERT INTO incidents (partner, partner_record_id, revision, delivery_number, source_row, occurred_from, "
        "time_precision, iso_week, category, place_type, location_precision, record_key) VALUES "
        "('housing', [1, 2, 3, 4], 1, 1, 1, TIMESTAMPTZ '2026-03-02 21:30:00+01', 'exact', '2026-W10', 'graffiti', "
        "'park', 'point', 1)")
    return con


def _type(con, column: str) -> str:
    return con.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'incidents' "
                       "AND column_name = ?", [column]).fetchone()[0]


def test_each_vocabulary_column_is_the_enum_of_its_catalogue():
    con = _warehouse_with_an_incident()
    for column, values in warehouse.incident_vocabularies().items():
        assert _type(con, column) == warehouse._enum_type(values)
    assert "graffiti" in warehouse.incident_vocabularies()["category"]


def test_the_store_refuses_a_category_outside_the_taxonomy():
    con = _warehouse_with_an_incident()
    with pytest.raises(duckdb.ConversionException):
        con.execute("UPDATE incidents SET category = 'made_up_category'")
    assert con.execute("SELECT category FROM incidents").fetchone()[0] == "graffiti"


def test_a_warehouse_written_before_the_enums_is_converted_with_its_values_kept():
    con = _warehouse_with_an_incident()
    con.execute("ALTER TABLE incidents ALTER COLUMN category TYPE VARCHAR")
    assert warehouse.sync_vocabularies(con) == ["category"]
    assert con.execute("SELECT category FROM incidents").fetchone()[0] == "graffiti"
    assert warehouse.sync_vocabularies(con) == []  # nothing left to do: connecting again costs one query


def test_a_catalogue_that_grows_widens_the_column_and_one_that_drops_a_stored_value_stops(monkeypatch):
    con = _warehouse_with_an_incident()
    current = warehouse.incident_vocabularies()
    grown = dict(current, category=tuple(sorted(current["category"] + ("bicycle_theft",))))
    monkeypatch.setattr(warehouse, "incident_vocabularies", lambda: grown)
    assert warehouse.sync_vocabularies(con) == ["category"]
    con.execute("UPDATE incidents SET category = 'bicycle_theft'")

    shrunk = dict(current)  # without bicycle_theft, which a stored incident now holds
    monkeypatch.setattr(warehouse, "incident_vocabularies", lambda: shrunk)
    with pytest.raises(duckdb.ConversionException):
        warehouse.sync_vocabularies(con)
    assert con.execute("SELECT category FROM incidents").fetchone()[0] == "bicycle_theft"


def test_the_week_calendar_covers_every_accepted_year_in_order_and_compares_as_text():
    weeks = warehouse.incident_vocabularies()["iso_week"]
    assert weeks[0] == "1900-W01" and "2199-W52" in weeks and "2026-W53" in weeks and "2025-W53" not in weeks
    assert list(weeks) == sorted(weeks)  # the ENUM's order is the calendar's
    con = _warehouse_with_an_incident()
    assert con.execute("SELECT count(*) FROM incidents WHERE iso_week <= '2026-W10'").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM incidents WHERE iso_week < '2026-W10'").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM incidents WHERE iso_week BETWEEN '2025-W50' AND '2026-W12'"
                       ).fetchone()[0] == 1



def test_an_open_vocabulary_becomes_an_enum_of_what_it_holds_and_widens_sorted():
    con = _warehouse_with_an_incident()  # area_code NULL, partner 'housing', as text (a new warehouse)
    vocabularies = warehouse.OpenVocabularies(con)
    assert vocabularies.values["partner"] is None
    assert vocabularies.widen(con, {"partner": ["schools", "housing", None]}) == ["partner"]
    assert _type(con, "partner") == warehouse._enum_type(("housing", "schools"))
    assert vocabularies.widen(con, {"partner": ["housing"]}) == []  # held already: nothing to do
    assert not vocabularies.lacks({"partner": ["schools"], "area_code": [None]})
    assert vocabularies.widen(con, {"partner": ["aa_partner"]}) == ["partner"]
    con.execute("INSERT INTO incidents SELECT * REPLACE ('aa_partner' AS partner, [5, 6, 7, 8]::UBIGINT[4] AS partner_record_id) "
                "FROM incidents")
    # Sorted ENUM: ORDER BY is still the text's order, and a value from another reader compares as text.
    assert [r[0] for r in con.execute("SELECT partner FROM incidents ORDER BY partner").fetchall()] == [
        "aa_partner", "housing"]
    assert con.execute("SELECT count(*) FROM incidents WHERE partner = 'no_such_partner'").fetchone()[0] == 0
    # A second writer reads what the first left.
    assert warehouse.OpenVocabularies(con).values["partner"] == {"aa_partner", "housing", "schools"}


def test_a_delivery_with_a_new_partner_category_is_loaded_after_widening(tmp_path):
    con = _warehouse_with_an_incident()
    vocabularies = warehouse.OpenVocabularies(con)
    vocabularies.widen(con, {"partner_category": ["A"]})
    with pytest.raises(duckdb.ConversionException):  # the store itself refuses a value not widened for
        con.execute("UPDATE incidents SET partner_category = 'B'")
    assert vocabularies.lacks({"partner_category": ["B"]})
    vocabularies.widen(con, {"partner_category": ["B"]})
    con.execute("UPDATE incidents SET partner_category = 'B'")
    assert con.execute("SELECT partner_category FROM incidents").fetchone()[0] == "B"


def test_a_run_widens_for_its_partners_contract_codes_before_its_first_file():
    """jobs.ingest_deliveries widens partner_category for every code the run's contracts map, up front, so that
    no file in the middle of a long run rewrites the column (a rewrite grows with the table)."""
    from pipelines import jobs
    from pipelines.contracts import load_contracts

    contracts = load_contracts()
    codes = jobs.contract_category_codes(contracts, ["housing", "police_uk"])
    assert set(contracts["housing"].category_map) <= set(codes)
    assert set(contracts["police_uk"].category_map) <= set(codes)
    assert codes == sorted(set(codes))
    con = _warehouse_with_an_incident()
    vocabularies = warehouse.OpenVocabularies(con)
    vocabularies.widen(con, {"partner_category": codes})
    # A housing file holds only codes its contract maps (any other is quarantined): nothing left to widen.
    assert not vocabularies.lacks({"partner_category": list(contracts["housing"].category_map)})


def test_a_connection_checks_the_columns_again_only_when_the_catalogues_change(monkeypatch):
    con = _warehouse_with_an_incident()
    checks = []
    full_check = warehouse.sync_vocabularies
    monkeypatch.setattr(warehouse, "sync_vocabularies", lambda c: checks.append(1) or full_check(c))
    assert warehouse.migrate(con) == [] and checks == []  # the catalogues as recorded: no information_schema

    current = warehouse.incident_vocabularies()
    grown = dict(current, category=tuple(sorted(current["category"] + ("bicycle_theft",))))
    monkeypatch.setattr(warehouse, "incident_vocabularies", lambda: grown)
    warehouse.migrate(con)
    assert checks == [1] and _type(con, "category") == warehouse._enum_type(grown["category"])
    warehouse.migrate(con)
    assert checks == [1]  # recorded again


def test_a_migration_makes_the_next_connection_check_every_column():
    con = _warehouse_with_an_incident()
    assert con.execute("SELECT count(*) FROM warehouse_state WHERE name = 'vocabularies'").fetchone()[0] == 1
    con.execute("DELETE FROM schema_migrations WHERE version = 10")
    con.execute("DROP TABLE warehouse_state")
    con.execute("ALTER TABLE incidents ALTER COLUMN category TYPE VARCHAR")  # as an older writer left it
    assert warehouse.migrate(con) == [10]
    assert _type(con, "category") == warehouse._enum_type(warehouse.incident_vocabularies()["category"])
