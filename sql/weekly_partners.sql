-- Data completeness per expected partner for one period: its accepted/empty deliveries whose
-- [period_from, period_to] overlaps the period, the rows they loaded and quarantined, and rejected files for the
-- period. Rows are per delivered file, so a delivery that also covers other weeks counts whole.
-- Parameters: $first DATE, $last DATE (the period, inclusive).
SELECT p.partner,
       p.partner_name,
       p.sensitive,
       count(l.delivery_id) FILTER (WHERE l.status IN ('accepted', 'empty'))                AS deliveries,
       coalesce(sum(l.rows_in) FILTER (WHERE l.status IN ('accepted', 'empty')), 0)          AS rows_in,
       coalesce(sum(l.rows_loaded) FILTER (WHERE l.status IN ('accepted', 'empty')), 0)      AS rows_loaded,
       coalesce(sum(l.rows_quarantined) FILTER (WHERE l.status IN ('accepted', 'empty')), 0) AS rows_quarantined,
       count(l.delivery_id) FILTER (WHERE l.status = 'rejected')                             AS rejected
FROM partners AS p
LEFT JOIN ingest_ledger AS l
       ON l.partner = p.partner
      AND l.period_from <= $last
      AND l.period_to >= $first
GROUP BY p.partner, p.partner_name, p.sensitive
ORDER BY p.partner_name, p.partner;
