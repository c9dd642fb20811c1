-- The deliveries a publication is built from (for its audit entry): accepted or empty ledger rows whose period
-- overlaps [$first, $last], and the latest time one of them was received, which the report prints instead
-- of a wall-clock "generated at" (so the same database always gives the same bytes).
-- Parameters: $first DATE, $last DATE (inclusive).
SELECT delivery_id, received_at
FROM ingest_ledger
WHERE status IN ('accepted', 'empty')
  AND period_from <= $last
  AND period_to >= $first
ORDER BY delivery_id;
