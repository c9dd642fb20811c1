-- `weekly_counts` without its PRIMARY KEY, for the reason sql/003 gave for `incidents`: DuckDB keeps a primary
-- key as an ART index, and at national scale the aggregate is millions of cells (5,984 areas x weeks x
-- categories x partners): measured here on 3 M bench incidents over the national areas, 1.7 M cells, rebuilding
-- the table took 4.8 s with the index and 16.5 s when it already held them (the index deletes and re-inserts
-- every key). The one writer, sql/aggregate_weekly_counts.sql, makes each (iso_week, area_code, category,
-- partner) one row by its GROUP BY; tests/test_aggregate.py checks that no cell appears twice.
CREATE TABLE weekly_counts_unindexed (
    iso_week  VARCHAR NOT NULL,
    area_code VARCHAR NOT NULL,                -- 'unplaced' for incidents without an area
    category  VARCHAR NOT NULL,
    partner   VARCHAR NOT NULL,
    n         BIGINT NOT NULL
);
INSERT INTO weekly_counts_unindexed SELECT * FROM weekly_counts;
DROP TABLE weekly_counts;
ALTER TABLE weekly_counts_unindexed RENAME TO weekly_counts;
