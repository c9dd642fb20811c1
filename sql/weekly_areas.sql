-- The published areas without their geometry: code, name (SCB's RegSO name or the municipality's district),
-- population for rates per 1,000 inhabitants, and whether the boundary is a generated stand-in.
SELECT area_code, area_name, population, is_stand_in
FROM areas
ORDER BY area_code;
