-- Retention (gallring, PRIVACY.md "Keeping and deleting"): person-level values of incidents that occurred
-- before $cutoff are removed; the incident rows stay, because `weekly_counts` (the aggregate every published
-- number comes from) is rebuilt from them, and aggregates are kept.
-- Parameters: $cutoff TIMESTAMPTZ.
UPDATE incidents
SET persons = NULL,
    description = NULL
WHERE occurred_from < $cutoff
  AND (persons IS NOT NULL OR description IS NOT NULL);
