-- `incidents` without its PRIMARY KEY. DuckDB keeps a primary key as an ART index, and over random 64-hex
-- pseudonyms that index is what a large load waits for: measured here (2 cores), inserting 10 M incidents ran at
-- 0.05-0.2 M rows/s with it, slowing as the table grew, and at about 0.6 M rows/s without it.
-- (partner, partner_record_id) stays unique: sql/upsert_incidents.sql, the only loader, replaces or keeps a held
-- record, one writer at a time (the est_duckdb_writer pool and DuckDB's file lock); tests and `est bench` check
-- that no key is held twice. It finds held records through `record_key`, the pseudonym's first 64 bits as an
-- integer, so that the join reads 8 bytes a row of the table instead of 64.
CREATE TABLE incidents_unindexed (
    partner            VARCHAR NOT NULL,
    partner_record_id  VARCHAR NOT NULL,
    revision           INTEGER NOT NULL,
    delivery_id        VARCHAR NOT NULL,
    source_row         BIGINT NOT NULL,
    occurred_from      TIMESTAMPTZ NOT NULL,
    occurred_to        TIMESTAMPTZ,
    time_precision     VARCHAR NOT NULL,
    reported_at        TIMESTAMPTZ,
    iso_week           VARCHAR NOT NULL,
    category           VARCHAR NOT NULL,
    partner_category   VARCHAR,
    place_type         VARCHAR,
    area_code          VARCHAR,
    grid_cell          VARCHAR,
    location_precision VARCHAR NOT NULL,
    persons            VARCHAR[],
    key_id             VARCHAR,
    description        VARCHAR,
    record_key         UBIGINT                 -- ('0x' || left(partner_record_id, 16))::UBIGINT, set by the loader
);
INSERT INTO incidents_unindexed BY NAME
SELECT *, ('0x' || left(partner_record_id, 16))::UBIGINT AS record_key FROM incidents;
DROP TABLE incidents;
ALTER TABLE incidents_unindexed RENAME TO incidents;
