-- The whole intervention register (edited by the security department: project text, not partner text), with
-- the area's name, for the intervention follow-up and the map overlay of the quarterly pack.
SELECT i.intervention_id,
       i.title,
       i.area_code,
       a.area_name,
       i.kind,
       i.responsible_partner,
       i.starts_on,
       i.ends_on,
       i.categories
FROM interventions AS i
LEFT JOIN areas AS a ON a.area_code = i.area_code
ORDER BY i.starts_on, i.intervention_id;
