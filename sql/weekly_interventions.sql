-- "What is being done": interventions from the register (edited by the security department, not partner
-- text) active at some point in the period: started on or before its last day and not ended before its first.
-- Parameters: $first DATE, $last DATE (inclusive).
SELECT i.intervention_id,
       i.title,
       i.area_code,
       a.area_name,
       i.kind,
       i.responsible_partner,
       p.partner_name AS responsible_name,
       i.starts_on,
       i.ends_on,
       i.categories
FROM interventions AS i
LEFT JOIN areas AS a ON a.area_code = i.area_code
LEFT JOIN partners AS p ON p.partner = i.responsible_partner
WHERE i.starts_on <= $last
  AND (i.ends_on IS NULL OR i.ends_on >= $first)
ORDER BY i.starts_on, i.intervention_id;
