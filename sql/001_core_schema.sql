-- The warehouse: one DuckDB file per installation. Person-level data lives only in `incidents` and
-- `quarantine` (the restricted layer); everything published is derived from `weekly_counts`.

-- Every delivered file, by content hash: a file already applied is never applied twice.
CREATE TABLE ingest_ledger (
    delivery_id      VARCHAR PRIMARY KEY,      -- SHA-256 of the file's bytes (content, not a person)
    partner          VARCHAR NOT NULL,
    file_name        VARCHAR NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL,
    status           VARCHAR NOT NULL,         -- accepted | rejected | empty
    rows_in          BIGINT NOT NULL DEFAULT 0,
    rows_loaded      BIGINT NOT NULL DEFAULT 0,
    rows_quarantined BIGINT NOT NULL DEFAULT 0,
    rows_unplaced    BIGINT NOT NULL DEFAULT 0, -- loaded, but no area could be found
    encoding         VARCHAR,
    contract_version INTEGER,
    reason           VARCHAR,                  -- why a file was rejected (one line, no personal values)
    period_from      DATE,                     -- earliest and latest occurrence date in the delivery
    period_to        DATE
);

-- The canonical incident (DESIGN.md section 4), pseudonymised. Exact coordinates are not kept:
-- placing turns them into an area and a grid cell before anything is stored.
CREATE TABLE incidents (
    partner            VARCHAR NOT NULL,
    partner_record_id  VARCHAR NOT NULL,       -- keyed pseudonym of the partner's own record id
    revision           INTEGER NOT NULL,
    delivery_id        VARCHAR NOT NULL,
    source_row         BIGINT NOT NULL,        -- 1-based data row in the delivered file
    occurred_from      TIMESTAMPTZ NOT NULL,
    occurred_to        TIMESTAMPTZ,
    time_precision     VARCHAR NOT NULL,       -- exact | interval | day
    reported_at        TIMESTAMPTZ,
    iso_week           VARCHAR NOT NULL,       -- ISO week of occurred_from in Europe/Stockholm, 'YYYY-Www'
    category           VARCHAR NOT NULL,
    partner_category   VARCHAR,
    place_type         VARCHAR,
    area_code          VARCHAR,                -- NULL when it could not be placed (counted, never dropped)
    grid_cell          VARCHAR,
    location_precision VARCHAR NOT NULL,       -- point | address | area | municipality | unplaced
    persons            VARCHAR[],              -- keyed pseudonyms, only where a partner supplies persons
    key_id             VARCHAR,                -- which key made the pseudonyms (rotation)
    description        VARCHAR,                -- scrubbed free text, restricted layer only
    PRIMARY KEY (partner, partner_record_id)
);

-- Rows that broke their partner's contract: where and why, never the personal values.
CREATE TABLE quarantine (
    delivery_id  VARCHAR NOT NULL,
    partner      VARCHAR NOT NULL,
    source_row   BIGINT NOT NULL,
    reasons      VARCHAR[] NOT NULL,           -- e.g. ['occurred_from: not a date in the contract's formats']
    released_at  TIMESTAMPTZ,
    PRIMARY KEY (delivery_id, source_row)
);

CREATE TABLE areas (
    area_code         VARCHAR PRIMARY KEY,     -- DeSO code (e.g. 1880C1010) or the municipality's district
    area_name         VARCHAR,
    municipality_code VARCHAR NOT NULL,
    population        INTEGER,
    is_stand_in       BOOLEAN NOT NULL,        -- true: generated polygon, not SCB's boundary
    geometry_wkb      BLOB NOT NULL            -- polygon in SWEREF 99 TM
);

-- The partners with a contract in schemas/partners/: who is expected to deliver each week.
CREATE TABLE partners (
    partner          VARCHAR PRIMARY KEY,
    partner_name     VARCHAR NOT NULL,
    sensitive        BOOLEAN NOT NULL,         -- social services, schools, home care: stricter small-count rule
    contract_version INTEGER NOT NULL
);

CREATE TABLE categories (
    category   VARCHAR PRIMARY KEY,
    label_sv   VARCHAR NOT NULL,
    label_en   VARCHAR NOT NULL,
    source     VARCHAR NOT NULL                -- municipal | police | both
);

-- The intervention register ("what is being done"), read from the YAML file the security department edits.
CREATE TABLE interventions (
    intervention_id     VARCHAR PRIMARY KEY,
    title               VARCHAR NOT NULL,
    area_code           VARCHAR NOT NULL,
    kind                VARCHAR NOT NULL,
    responsible_partner VARCHAR NOT NULL,
    starts_on           DATE NOT NULL,
    ends_on             DATE,
    categories          VARCHAR[]             -- categories it targets; empty means all
);

-- Who did what, when, from which data: loads, publications, exports, releases, deletions.
CREATE SEQUENCE audit_seq;
CREATE TABLE audit_log (
    audit_id   BIGINT PRIMARY KEY DEFAULT nextval('audit_seq'),
    logged_at  TIMESTAMPTZ NOT NULL,
    action     VARCHAR NOT NULL,
    subject    VARCHAR NOT NULL,
    audience   VARCHAR,
    detail     JSON
);

-- The aggregate every published number comes from: rebuilt from `incidents` by sql/aggregate_weekly_counts.sql.
CREATE TABLE weekly_counts (
    iso_week  VARCHAR NOT NULL,
    area_code VARCHAR NOT NULL,                -- 'unplaced' for incidents without an area
    category  VARCHAR NOT NULL,
    partner   VARCHAR NOT NULL,
    n         BIGINT NOT NULL,
    PRIMARY KEY (iso_week, area_code, category, partner)
);
