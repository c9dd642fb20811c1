-- Load validated, pseudonymised, placed rows from the staged relation `staged_incidents`.
-- A record already held is replaced only by the same or a higher revision: a late, older export never
-- overwrites a correction, and a re-export of the same revision (e.g. another row order) changes nothing.
INSERT INTO incidents BY NAME
SELECT * EXCLUDE (person),
       CASE WHEN person IS NULL THEN NULL ELSE [person] END AS persons
FROM staged_incidents
ON CONFLICT (partner, partner_record_id) DO UPDATE SET
    revision = excluded.revision,
    delivery_id = excluded.delivery_id,
    source_row = excluded.source_row,
    occurred_from = excluded.occurred_from,
    occurred_to = excluded.occurred_to,
    time_precision = excluded.time_precision,
    reported_at = excluded.reported_at,
    iso_week = excluded.iso_week,
    category = excluded.category,
    partner_category = excluded.partner_category,
    place_type = excluded.place_type,
    area_code = excluded.area_code,
    grid_cell = excluded.grid_cell,
    location_precision = excluded.location_precision,
    persons = excluded.persons,
    key_id = excluded.key_id,
    description = excluded.description
WHERE excluded.revision >= incidents.revision;
