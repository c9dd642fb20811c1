-- Incidents per 250 m grid cell in a date range, for Getis-Ord Gi* (pipelines/hotspots.py). Reads only the cell
-- id, never an exact place (PRIVACY.md). The date is occurred_from's local date in Europe/Stockholm.
-- Incidents without a cell come back as one row with grid_cell NULL, so the caller can count them.
-- Parameters: $start DATE (inclusive), $end DATE (exclusive), $categories VARCHAR[] (NULL: every category).
SELECT grid_cell::VARCHAR AS grid_cell,  -- stored as a number (sql/005)
       count(*) AS n
FROM incidents
WHERE CAST(timezone('Europe/Stockholm', occurred_from) AS DATE) >= $start
  AND CAST(timezone('Europe/Stockholm', occurred_from) AS DATE) < $end
  AND ($categories IS NULL OR list_contains($categories, category))
GROUP BY grid_cell
ORDER BY grid_cell;
