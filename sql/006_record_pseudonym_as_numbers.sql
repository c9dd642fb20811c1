-- `incidents.partner_record_id`, the record's keyed pseudonym (HMAC-SHA-256, 32 bytes), as the four 64-bit
-- numbers it is (UBIGINT[4], big-endian order), not as 64 hex characters. The value is the same, whole HMAC;
-- only the storage changes. Text was the loader's most expensive column: measured here (2 cores, 3 M bench rows
-- in 11 files), inserting took 3.77 s with it as VARCHAR against 3.03 s as UBIGINT[4], and the file is smaller.
-- Readers that show, compare or re-key the pseudonym as text use pseudonym_text(); pseudonym_key() turns text
-- (e.g. a pseudonym computed in Python) back. record_key (sql/003) is the first of the four numbers.
CREATE MACRO pseudonym_text(p) AS printf('%016x%016x%016x%016x', p[1], p[2], p[3], p[4]);
CREATE MACRO pseudonym_key(t) AS [('0x' || substr(t, 1, 16))::UBIGINT, ('0x' || substr(t, 17, 16))::UBIGINT,
                                  ('0x' || substr(t, 33, 16))::UBIGINT, ('0x' || substr(t, 49, 16))::UBIGINT
                                 ]::UBIGINT[4];
ALTER TABLE incidents ALTER COLUMN partner_record_id TYPE UBIGINT[4] USING pseudonym_key(partner_record_id);
