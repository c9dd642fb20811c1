-- The project taxonomy's labels in both report languages (schemas/taxonomy.yaml): the weekly report prints
-- these, never a partner's own category text.
SELECT category, label_sv, label_en
FROM categories
ORDER BY category;
