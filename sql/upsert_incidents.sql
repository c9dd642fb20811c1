-- Load validated, pseudonymised, placed rows from the staged relation `staged_incidents`.
-- A record already held is replaced only by the same or a higher revision: a late, older export never
-- overwrites a correction, and a re-export of the same revision with the same content (e.g. another row
-- order, or a renamed copy) changes nothing, not even delivery_id or source_row. The same revision with other
-- content (a feed such as polisen.se revises records without a revision number) replaces: the later wins.
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
WHERE excluded.revision > incidents.revision
   OR (excluded.revision = incidents.revision
       AND (excluded.occurred_from, excluded.occurred_to, excluded.time_precision, excluded.reported_at,
            excluded.iso_week, excluded.category, excluded.partner_category, excluded.place_type,
            excluded.area_code, excluded.grid_cell, excluded.location_precision, excluded.persons,
            excluded.key_id, excluded.description)
           IS DISTINCT FROM
           (incidents.occurred_from, incidents.occurred_to, incidents.time_precision, incidents.reported_at,
            incidents.iso_week, incidents.category, incidents.partner_category, incidents.place_type,
            incidents.area_code, incidents.grid_cell, incidents.location_precision, incidents.persons,
            incidents.key_id, incidents.description));
