-- Counts per ISO week x area x category x partner, rebuilt whole so a rerun gives the same table.
-- Counting rule: one row per partner record (its latest revision); the same incident reported by two
-- partners is two partner records and counted once per partner (DESIGN.md: partners are counted apart).
DELETE FROM weekly_counts;
-- Grouped on the stored ENUM codes first, then turned into text: 'unplaced' is no area code, so coalescing
-- before grouping made every row text (measured here at 10 M rows: 0.35-0.40 s against 0.47-0.69 s).
INSERT INTO weekly_counts
SELECT iso_week,
       coalesce(area_code::VARCHAR, 'unplaced') AS area_code,
       category,
       partner,
       n
FROM (SELECT iso_week, area_code, category, partner, count(*) AS n
      FROM incidents
      GROUP BY ALL);
