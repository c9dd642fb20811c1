-- Incidents per 250 m grid cell and local day in a date range, for the near-repeat (Knox) test of the quarterly
-- pack (pipelines/quarterly_pack.py). The warehouse keeps no exact place: only the cell id (PRIVACY.md), so
-- the test runs on cell centres. Read for the analysis meeting; nothing here is published as a count.
-- Parameters: $start DATE (inclusive), $end DATE (exclusive).
SELECT grid_cell::VARCHAR AS grid_cell,  -- stored as a number (sql/005)
       CAST(timezone('Europe/Stockholm', occurred_from) AS DATE) AS day,
       count(*) AS n
FROM incidents
WHERE grid_cell IS NOT NULL
  AND CAST(timezone('Europe/Stockholm', occurred_from) AS DATE) >= $start
  AND CAST(timezone('Europe/Stockholm', occurred_from) AS DATE) < $end
GROUP BY grid_cell, day
ORDER BY grid_cell, day;
