-- Counts per ISO week x area x category x partner, rebuilt whole so a rerun gives the same table.
-- Counting rule: one row per partner record (its latest revision); the same incident reported by two
-- partners is two partner records and counted once per partner (DESIGN.md: partners are counted apart).
-- The cells are kept in the stored codes of `incidents` (sql/009: the view `weekly_counts` gives them as text,
-- with 'unplaced' for a NULL area code): writing 3.6 M cells as text cost three times as much.
CREATE OR REPLACE TABLE weekly_counts_coded AS
SELECT iso_week, area_code, category, partner, count(*) AS n
FROM incidents
GROUP BY ALL;
