-- Key rotation (pipelines/keys.py): replace each incident's pseudonyms by HMAC(new key, old pseudonym), computed
-- in Python and registered as `rotation_mapping` (partner, old_id, new_id, new_persons). The record's
-- pseudonym, and so its record_key (sql/003_incidents_without_art_index.sql), changes, so the rows are moved
-- (delete and insert) inside the caller's transaction.
-- Parameters: $new_key_id VARCHAR.
CREATE TEMP TABLE rotated AS
SELECT i.* REPLACE (pseudonym_key(m.new_id) AS partner_record_id, m.new_persons AS persons, $new_key_id AS key_id,
                    ('0x' || left(m.new_id, 16))::UBIGINT AS record_key)
FROM incidents AS i
JOIN rotation_mapping AS m ON m.partner = i.partner AND pseudonym_key(m.old_id) = i.partner_record_id;
DELETE FROM incidents;
INSERT INTO incidents SELECT * FROM rotated;
DROP TABLE rotated;
