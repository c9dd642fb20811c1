-- Counts per ISO week x area x category x partner, rebuilt whole so a rerun gives the same table.
-- Counting rule: one row per partner record (its latest revision); the same incident reported by two
-- partners is two partner records and counted once per partner (DESIGN.md: partners are counted apart).
DELETE FROM weekly_counts;
INSERT INTO weekly_counts
SELECT iso_week,
       coalesce(area_code, 'unplaced') AS area_code,
       category,
       partner,
       count(*) AS n
FROM incidents
GROUP BY ALL;
