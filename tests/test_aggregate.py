"""weekly_counts (sql/aggregate_weekly_counts.sql): one row per cell, every stored incident counted once, the same
table on every rebuild. The table has no primary key (sql/004 says why), so this test is what holds the rule."""

import duckdb

from pipelines import warehouse


def _warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    warehouse.migrate(con)
    con.execute("""
        INSERT INTO incidents (partner, partner_record_id, revision, delivery_number, source_row, occurred_from,
                               time_precision, iso_week, category, place_type, area_code, location_precision,
                               record_key)
        SELECT CASE WHEN i % 3 = 0 THEN 'housing' ELSE 'police_cases' END, [i, 0, 0, 0], 1, 1, i,
               TIMESTAMPTZ '2026-03-02 12:00:00+01', 'exact', '2026-W' || lpad((10 + i % 4)::VARCHAR, 2, '0'),
               CASE WHEN i % 5 = 0 THEN 'graffiti' ELSE 'theft' END, 'park',
               CASE WHEN i % 7 = 0 THEN NULL ELSE '1880C10' || (i % 9)::VARCHAR END,
               CASE WHEN i % 7 = 0 THEN 'unplaced' ELSE 'point' END, i
        FROM range(5000) AS t(i)""")
    return con


def test_each_cell_is_one_row_and_every_incident_is_counted_once_on_every_rebuild():
    con = _warehouse()
    tables = []
    for _ in range(2):
        con.execute(warehouse.sql_text("aggregate_weekly_counts"))
        tables.append(con.execute("SELECT * FROM weekly_counts ORDER BY ALL").fetchall())
    assert tables[0] == tables[1]
    cells, distinct_cells, counted = con.execute(
        "SELECT count(*), count(DISTINCT (iso_week, area_code, category, partner)), sum(n) FROM weekly_counts"
    ).fetchone()
    assert cells == distinct_cells
    assert counted == 5000
    unplaced = con.execute("SELECT sum(n) FROM weekly_counts WHERE area_code = 'unplaced'").fetchone()[0]
    assert unplaced == len([i for i in range(5000) if i % 7 == 0])
