-- Retention: quarantine rows of deliveries received before $cutoff (the raw file they point into is deleted too).
-- Parameters: $cutoff TIMESTAMPTZ.
DELETE FROM quarantine
WHERE delivery_id IN (SELECT delivery_id FROM ingest_ledger WHERE received_at < $cutoff);
