-- A partner's own deliveries for one period (its partner view of the weekly report): ledger rows of that
-- partner only whose [period_from, period_to] overlaps the period, with their row counts and status.
-- Parameters: $partner VARCHAR, $first DATE, $last DATE (inclusive).
SELECT received_at, status, rows_in, rows_loaded, rows_quarantined
FROM ingest_ledger
WHERE partner = $partner
  AND period_from <= $last
  AND period_to >= $first
ORDER BY received_at, delivery_id;
