"""The loader's Arrow table (ingest.staged_table) holds exactly what the SQL it replaced computed per row."""

import duckdb
import numpy as np
import pandas as pd

from pipelines import ingest, privacy


def _staged(rows: int = 2_000) -> pd.DataFrame:
    key = privacy.derive_key(b"k" * 32, ingest.RECORD_DOMAIN)
    person_key = privacy.derive_key(b"k" * 32, ingest.ANALYSIS_DOMAIN)
    ids = pd.Series([f"A-{i:06d}" for i in range(rows)], dtype=object)
    persons = pd.Series([None if i % 3 else f"19900101{i % 97:04d}" for i in range(rows)], dtype=object)
    frame = pd.DataFrame({column: [None] * rows for column in ingest.INCIDENT_COLUMNS})
    frame["partner"] = "school"
    frame["partner_record_id"] = privacy.pseudonymise(ids, key)
    frame["person"] = privacy.pseudonymise(persons, person_key)
    frame["category"] = np.where(np.arange(rows) % 2 == 0, "theft", "vandalism")
    frame["iso_week"] = "2026-W47"
    return frame


def test_record_keys_persons_and_dictionary_columns_match_what_sql_computed_per_row():
    staged = _staged()
    table = ingest.staged_table(staged, 7)
    con = duckdb.connect()
    con.register("t", table)
    wrong_keys = con.execute("SELECT count(*) FROM t WHERE record_key <> partner_record_id[1]").fetchone()[0]
    assert wrong_keys == 0
    # The four numbers are the whole pseudonym: read back as text (sql/006's pseudonym_text) they are the HMAC.
    texts = con.execute("SELECT printf('%016x%016x%016x%016x', partner_record_id[1], partner_record_id[2], "
                        "partner_record_id[3], partner_record_id[4]) FROM t").fetchall()
    assert [t for (t,) in texts] == staged["partner_record_id"].tolist()
    persons = con.execute("SELECT persons FROM t").fetchall()
    expected = [(None,) if p is None else ([p],) for p in staged["person"]]
    assert persons == expected
    assert con.execute("SELECT list(category ORDER BY partner_record_id) FROM t").fetchone()[0] == \
        staged.sort_values("partner_record_id")["category"].tolist()  # numbers sort as their hex does
    assert table["record_key"].null_count == 0
    assert set(table["delivery_number"].to_pylist()) == {7}  # the delivery's number in every row (sql/007)


def test_a_record_without_a_pseudonym_is_refused_not_stored_with_a_made_up_key():
    staged = _staged(10)
    staged.loc[3, "partner_record_id"] = None
    try:
        ingest.staged_table(staged, 7)
    except ValueError as error:
        assert "pseudonym" in str(error)
    else:
        raise AssertionError("a staged row without a record pseudonym was accepted")


def test_a_file_whose_every_row_is_quarantined_stages_an_empty_table():
    table = ingest.staged_table(_staged(5).iloc[0:0], 7)
    assert table.num_rows == 0 and "record_key" in table.column_names and "persons" in table.column_names
