-- Data completeness per partner and ISO week (issue 3, item 7): delivered or missing, rows loaded for the week,
-- and the quarantine share of the deliveries that cover the week. A week without a delivery is 'missing', so
-- the weekly report can say so instead of showing a false drop; partners whose contract says
-- `expected_weekly: false` (sql/002) are 'not_expected', never 'missing'.
-- A delivery covers the weeks its [period_from, period_to] touches; an empty ("nothing delivered") file has no
-- period and covers the week it was received in (Europe/Stockholm).
-- Parameters: $weeks VARCHAR[] ('YYYY-Www').
WITH weeks AS (
    SELECT unnest($weeks) AS iso_week
), covered AS (
    SELECT l.partner, l.delivery_id, l.rows_in, l.rows_quarantined,
           strftime(unnest(generate_series(l.period_from, l.period_to, INTERVAL 1 DAY)), '%G-W%V') AS iso_week
    FROM ingest_ledger AS l
    WHERE l.status = 'accepted' AND l.period_from IS NOT NULL
    UNION
    SELECT l.partner, l.delivery_id, l.rows_in, l.rows_quarantined,
           strftime(timezone('Europe/Stockholm', l.received_at), '%G-W%V') AS iso_week
    FROM ingest_ledger AS l
    WHERE l.status = 'empty' OR (l.status = 'accepted' AND l.period_from IS NULL)
), per_week AS (
    SELECT partner, iso_week, count(*) AS deliveries, sum(rows_in) AS rows_in,
           sum(rows_quarantined) AS rows_quarantined
    FROM (SELECT DISTINCT * FROM covered)
    GROUP BY ALL
), loaded AS (
    SELECT partner, iso_week, count(*) AS rows_loaded FROM incidents GROUP BY ALL
)
SELECT p.partner,
       w.iso_week,
       CASE WHEN coalesce(d.deliveries, 0) > 0 THEN 'delivered'
            WHEN coalesce(e.expected_weekly, true) THEN 'missing'
            ELSE 'not_expected' END                                            AS status,
       coalesce(d.deliveries, 0)                                              AS deliveries,
       coalesce(i.rows_loaded, 0)                                             AS rows_loaded,
       coalesce(d.rows_quarantined, 0)                                        AS rows_quarantined,
       CASE WHEN coalesce(d.rows_in, 0) = 0 THEN 0.0
            ELSE d.rows_quarantined / d.rows_in END                           AS quarantine_share
FROM partners AS p
CROSS JOIN weeks AS w
LEFT JOIN partner_expectations AS e ON e.partner = p.partner
LEFT JOIN per_week AS d ON d.partner = p.partner AND d.iso_week = w.iso_week
LEFT JOIN loaded AS i ON i.partner = p.partner AND i.iso_week = w.iso_week
ORDER BY p.partner, w.iso_week;
