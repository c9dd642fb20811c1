-- A period-snapshot delivery (contract `deliveries: period_snapshot`, schemas/CONTRACTS.md) is the partner's
-- whole extract for its period [$period_from, $period_to] (local occurrence dates of its rows): records of
-- the same partner in that period that the new delivery does not hold (loaded or quarantined) are withdrawn,
-- i.e. deleted; the count goes to the audit log. Records outside the period are never touched.
-- Parameters: $partner, $period_from DATE, $period_to DATE, $delivery_number; relation `delivered_ids`(partner_record_id).
DELETE FROM incidents
WHERE partner = $partner
  AND delivery_number <> $delivery_number
  AND CAST(timezone('Europe/Stockholm', occurred_from) AS DATE) BETWEEN $period_from AND $period_to
  AND partner_record_id NOT IN (SELECT pseudonym_key(partner_record_id) FROM delivered_ids);  -- text: sql/006
