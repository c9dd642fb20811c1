-- The cells behind the weekly report: counts per ISO week x area x category x partner for the report week and
-- its baseline weeks, with whether the partner is one whose cells need the stricter small-count rule.
-- Reads only the aggregate (`weekly_counts`) and reference tables, never `incidents`: no free text, pseudonym
-- or exact place can reach a report from here (PRIVACY.md, "Free text").
-- A partner missing from `partners` counts as sensitive: an unknown source gets the stricter rule, not the
-- looser one.
-- Parameters: $weeks VARCHAR[] ('YYYY-Www': the report week and the 8 weeks before it).
SELECT w.iso_week,
       w.area_code,
       w.category,
       w.partner,
       w.n,
       coalesce(p.sensitive, TRUE) AS sensitive
FROM weekly_counts AS w
LEFT JOIN partners AS p ON p.partner = w.partner
WHERE list_contains($weeks, w.iso_week)
ORDER BY w.iso_week, w.area_code, w.category, w.partner;
