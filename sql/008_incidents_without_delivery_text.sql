-- The second half of sql/007: `incidents` names its delivery by number only.
ALTER TABLE incidents DROP COLUMN delivery_id;
ALTER TABLE incidents ALTER COLUMN delivery_number SET NOT NULL;
