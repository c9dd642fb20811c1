-- Counts per area x category for a quarter's ISO weeks, with whether any of the cell's rows comes from a partner
-- whose cells need the stricter small-count rule (an unknown partner counts as sensitive). Reads only the
-- aggregate `weekly_counts`, never `incidents` (no free text, no exact place: PRIVACY.md).
-- Parameters: $weeks VARCHAR[] ('YYYY-Www', the quarter's weeks).
SELECT w.area_code,
       w.category,
       sum(w.n)                               AS n,
       bool_or(coalesce(p.sensitive, TRUE))   AS sensitive
FROM weekly_counts AS w
LEFT JOIN partners AS p ON p.partner = w.partner
WHERE list_contains($weeks, w.iso_week)
GROUP BY w.area_code, w.category
ORDER BY w.area_code, w.category;
