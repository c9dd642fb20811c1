"""Data completeness per partner and ISO week (issue 3, item 7; DESIGN.md section 6, "Data completeness").

`weekly_completeness(con, weeks)` runs sql/completeness_weekly.sql: for each partner and week, 'delivered',
'missing' or 'not_expected' (contract `expected_weekly: false`), the rows loaded for the week and the quarantine
share of the deliveries covering it. The weekly report uses it to state a missing partner instead of showing a
false drop.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from pipelines.warehouse import sql_text


def weekly_completeness(con: duckdb.DuckDBPyConnection, weeks: list[str]) -> pd.DataFrame:
    """Columns: partner, iso_week, status, deliveries, rows_loaded, rows_quarantined, quarantine_share."""
    return con.execute(sql_text("completeness_weekly"), {"weeks": list(weeks)}).df()


def missing_partners(con: duckdb.DuckDBPyConnection, iso_week: str) -> list[str]:
    """Partners expected every week that delivered nothing covering ``iso_week``."""
    frame = weekly_completeness(con, [iso_week])
    return sorted(frame.loc[frame["status"].eq("missing"), "partner"])
