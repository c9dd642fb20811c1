-- The ISO weeks for which the warehouse holds any count (a week nobody delivered for is missing, not zero).
-- Parameters: $last_week VARCHAR ('YYYY-Www', inclusive).
SELECT DISTINCT iso_week
FROM weekly_counts
WHERE iso_week <= $last_week
ORDER BY iso_week;
