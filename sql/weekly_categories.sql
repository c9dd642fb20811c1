-- The project taxonomy's Swedish labels (schemas/taxonomy.yaml): reports print these, never a partner's own
-- category text.
SELECT category, label_sv
FROM categories
ORDER BY category;
