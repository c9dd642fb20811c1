-- Which partner delivered for which ISO week: a partner delivered for a week when it has an accepted or empty
-- ledger row whose [period_from, period_to] overlaps the week (a rejected file brought nothing). The weeks a
-- period touches are enumerated day by day, with ISO week-numbering (%G-W%V, as incidents.iso_week).
-- A row without a period (an empty file carries no occurrence dates) overlaps no week.
-- Parameters: $weeks VARCHAR[] ('YYYY-Www').
WITH days AS (
    SELECT l.partner, unnest(generate_series(l.period_from, l.period_to, INTERVAL 1 DAY)) AS day
    FROM ingest_ledger AS l
    WHERE l.status IN ('accepted', 'empty')
      AND l.period_from IS NOT NULL
      AND l.period_to IS NOT NULL
)
SELECT DISTINCT partner, strftime(day, '%G-W%V') AS iso_week
FROM days
WHERE list_contains($weeks, strftime(day, '%G-W%V'))
ORDER BY partner, iso_week;
