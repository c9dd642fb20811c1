-- Partners outside the municipality's weekly rhythm (e.g. a foreign or archive source such as police.uk) are
-- never "missing" from a weekly report: the contract's `expected_weekly:` (default true) is carried here, in a
-- table of its own beside `partners` (so `partners` keeps its columns). A partner without a row is expected.
-- Use: LEFT JOIN partner_expectations USING (partner) ... WHERE coalesce(expected_weekly, true)
CREATE TABLE partner_expectations (
    partner         VARCHAR PRIMARY KEY,
    expected_weekly BOOLEAN NOT NULL DEFAULT true
);
