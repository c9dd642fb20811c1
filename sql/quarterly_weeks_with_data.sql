-- Which of the given ISO weeks hold any count in `weekly_counts` (a week nobody delivered for is missing, not
-- zero): the change maps compare quarters per week with data. Parameters: $weeks VARCHAR[] ('YYYY-Www').
SELECT DISTINCT iso_week
FROM weekly_counts
WHERE list_contains($weeks, iso_week)
ORDER BY iso_week;
