-- Weekly counts per area of a set of categories, for the intervention follow-up (pipelines/intervention_effects.py).
-- Reads only the aggregate `weekly_counts` (PRIVACY.md). An empty $categories list means every category.
-- Parameters: $categories VARCHAR[], $first_week VARCHAR, $last_week VARCHAR ('YYYY-Www', inclusive).
SELECT w.iso_week,
       w.area_code,
       sum(w.n) AS n
FROM weekly_counts AS w
WHERE (len($categories) = 0 OR list_contains($categories, w.category))
  AND w.iso_week BETWEEN $first_week AND $last_week
  AND w.area_code <> 'unplaced'
GROUP BY w.iso_week, w.area_code
ORDER BY w.iso_week, w.area_code;
