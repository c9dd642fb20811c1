-- Data completeness per expected partner for one period: its accepted/empty deliveries whose
-- [period_from, period_to] overlaps the period, the rows they loaded and quarantined, and rejected files for the
-- period. Rows are per delivered file, so a delivery that also covers other weeks counts whole.
-- A partner outside the weekly rhythm (contract `expected_weekly: false`, e.g. police.uk) is listed only when it
-- delivered for the period: it is never reported as missing.
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
LEFT JOIN partner_expectations AS e ON e.partner = p.partner
GROUP BY p.partner, p.partner_name, p.sensitive, e.expected_weekly
HAVING coalesce(e.expected_weekly, true)
    OR count(l.delivery_id) FILTER (WHERE l.status IN ('accepted', 'empty')) > 0
ORDER BY p.partner_name, p.partner;
