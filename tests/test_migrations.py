"""A warehouse written by earlier code is converted in place by the numbered files in sql/, its data kept.

sql/005-008 changed how `incidents` stores the grid cell, the record pseudonym and the delivery (numbers instead
of text, for the loader's speed): a warehouse holding rows in the old layout must come out with the same rows,
the same pseudonyms read as text, and each row still naming its delivery. sql/009 made `weekly_counts` a view
over cells kept as codes: readers must read the same text cells as before.
"""

import hashlib

import duckdb

from pipelines import warehouse


def _warehouse_before(version: int) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL)")
    for number, path in warehouse.migrations():
        if number <= version:
            con.execute(path.read_text(encoding="utf-8"))
            con.execute("INSERT INTO schema_migrations VALUES (?, ?)", [number, path.name])
    return con


def test_a_warehouse_of_the_text_layout_keeps_its_rows_pseudonyms_and_deliveries():
    con = _warehouse_before(4)
    pseudonyms = [hashlib.sha256(f"record {i}".encode()).hexdigest() for i in range(3)]
    deliveries = [hashlib.sha256(f"file {i}".encode()).hexdigest() for i in range(2)]
    for number, delivery in enumerate(deliveries):
        con.execute("INSERT INTO ingest_ledger (delivery_id, partner, file_name, received_at, status) VALUES "
                    "(?, 'housing', ?, TIMESTAMPTZ '2026-03-01 10:00:00+00' + to_days(?), 'accepted')",
                    [delivery, f"f{number}.csv", 2 - number])  # the second file was received first
    for i, pseudonym in enumerate(pseudonyms):
        con.execute(
            "INSERT INTO incidents (partner, partner_record_id, revision, delivery_id, source_row, occurred_from, "
            "time_precision, iso_week, category, location_precision, grid_cell, record_key) VALUES "
            "('housing', ?, 1, ?, ?, TIMESTAMPTZ '2026-03-02 21:30:00+01', 'exact', '2026-W10', 'graffiti', "
            "'point', '5117506570500', ('0x' || left(?, 16))::UBIGINT)",
            [pseudonym, deliveries[i % 2], i + 1, pseudonym])

    assert warehouse.migrate(con) == [5, 6, 7, 8, 9, 10]

    rows = con.execute(
        "SELECT pseudonym_text(i.partner_record_id), l.delivery_id, l.delivery_number, i.grid_cell, "
        "i.record_key = i.partner_record_id[1] FROM incidents AS i JOIN ingest_ledger AS l USING (delivery_number) "
        "ORDER BY i.source_row").fetchall()
    assert [r[0] for r in rows] == pseudonyms
    assert [r[1] for r in rows] == [deliveries[0], deliveries[1], deliveries[0]]
    assert [r[2] for r in rows] == [2, 1, 2]  # numbered in the order received
    assert all(r[3] == 5117506570500 and r[4] for r in rows)
    assert warehouse.migrate(con) == []  # applied once


def test_weekly_counts_read_the_same_cells_as_text_after_they_are_kept_as_codes():
    con = _warehouse_before(8)
    con.execute("""
        INSERT INTO incidents (partner, partner_record_id, revision, delivery_number, source_row, occurred_from,
                               time_precision, iso_week, category, area_code, location_precision, record_key)
        SELECT 'housing', [i, 0, 0, 0], 1, 1, i, TIMESTAMPTZ '2026-03-02 12:00:00+01', 'exact',
               CASE WHEN i % 2 = 0 THEN '2026-W10' ELSE '2026-W11' END, 'graffiti',
               CASE WHEN i % 3 = 0 THEN NULL ELSE '1880C1010' END,
               CASE WHEN i % 3 = 0 THEN 'unplaced' ELSE 'point' END, i
        FROM range(30) AS t(i)""")
    con.execute("""
        INSERT INTO weekly_counts SELECT iso_week, coalesce(area_code, 'unplaced'), category, partner, count(*)
        FROM incidents GROUP BY ALL""")  # the aggregate as it was written into sql/004's text table
    before = con.execute("SELECT * FROM weekly_counts ORDER BY ALL").fetchall()
    assert warehouse.migrate(con) == [9, 10]
    assert con.execute("SELECT * FROM weekly_counts ORDER BY ALL").fetchall() == before
    assert ("2026-W10", "unplaced", "graffiti", "housing", 5) in before
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'weekly_counts'").fetchall())
    assert types == {"iso_week": "VARCHAR", "area_code": "VARCHAR", "category": "VARCHAR", "partner": "VARCHAR",
                     "n": "BIGINT"}
    # The aggregate rebuilds the coded cells; readers still get text.
    con.execute(warehouse.sql_text("aggregate_weekly_counts"))
    assert con.execute("SELECT * FROM weekly_counts ORDER BY ALL").fetchall() == before
    assert con.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'weekly_counts_coded' "
                       "AND column_name = 'category'").fetchone()[0].startswith("ENUM(")
