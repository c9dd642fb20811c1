INSERT INTO ingest_ledger (
    delivery_id, delivery_number, partner, file_name, received_at, status, rows_in, rows_loaded, rows_quarantined,
    rows_unplaced, encoding, contract_version, reason, period_from, period_to
) VALUES ($delivery_id, $delivery_number, $partner, $file_name, $received_at, $status, $rows_in, $rows_loaded,
          $rows_quarantined, $rows_unplaced, $encoding, $contract_version, $reason, $period_from, $period_to);
