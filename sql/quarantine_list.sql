-- Quarantined rows still held (not released), per partner, delivery and reason: counts and file names only,
-- never a value from the file. Parameters: $partner, $delivery_id (a prefix is enough), $reason (NULL = all).
WITH held AS (
    SELECT q.partner, q.delivery_id, unnest(q.reasons) AS reason, q.source_row
    FROM quarantine AS q
    WHERE q.released_at IS NULL
      AND ($partner IS NULL OR q.partner = $partner)
      AND ($delivery_id IS NULL OR starts_with(q.delivery_id, $delivery_id))
)
SELECT h.partner, left(h.delivery_id, 12) AS delivery, l.file_name, h.reason,
       count(*) AS rows_held, min(h.source_row) AS first_row
FROM held AS h
JOIN ingest_ledger AS l USING (delivery_id)
WHERE $reason IS NULL OR h.reason = $reason OR starts_with(h.reason, $reason)
GROUP BY ALL
ORDER BY h.partner, l.file_name, rows_held DESC, h.reason;
