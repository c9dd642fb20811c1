-- Fingerprints of work a writer would otherwise redo on every connection or task: the catalogues the ENUM
-- columns of `incidents` were last made from (warehouse.sync_vocabularies, checked on every connection) and the
-- reference data last installed (jobs.prepare_reference: areas, partners, expectations, interventions, at the
-- start of every ingest, report and pack). Each row is written in the transaction of the change it describes,
-- and warehouse.migrate empties the table whenever it applies a migration, so a changed schema is always
-- checked whole. Measured here in one week through the Airflow DAGs: 37 connections asked information_schema
-- (about 10 ms each) and 10 reference tasks rewrote unchanged tables (about 0.12 s each).
CREATE TABLE warehouse_state (
    name        VARCHAR PRIMARY KEY,
    fingerprint VARCHAR NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
