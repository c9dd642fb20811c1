"""Retention (gallring, PRIVACY.md "Keeping and deleting"): raw files and person-level values older than the
period go, aggregates stay, every deletion is in the audit log, and a second run changes nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
from contextlib import closing
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from pipelines import jobs, retention, warehouse
from pipelines.cli import main
from pipelines.settings import Home
from tests.conftest import ingested_home

LAST_WEEK = "2026-W10"  # two weeks: 2026-02-23 to 2026-03-08
SPLIT = datetime(2026, 3, 2, tzinfo=timezone.utc)  # the Monday of the last week


@pytest.fixture(scope="module")
def source_home(tmp_path_factory) -> Home:
    return ingested_home(tmp_path_factory.mktemp("retention"), 2, LAST_WEEK)


@pytest.fixture()
def home(source_home, tmp_path) -> Home:
    shutil.copytree(source_home.root, tmp_path / "home")
    return Home(tmp_path / "home")


def _state(home: Home) -> str:
    digest = hashlib.sha256()
    with closing(warehouse.connect(home, read_only=True)) as con:
        for table in ("incidents", "quarantine", "weekly_counts", "audit_log", "ingest_ledger"):
            rows = con.execute(f"SELECT * FROM {table}").fetchall()
            digest.update(repr(sorted(map(repr, rows))).encode())
    return digest.hexdigest()


def _query(home: Home, sql: str, params=None):
    with closing(warehouse.connect(home, read_only=True)) as con:
        return con.execute(sql, params or []).fetchall()


def test_person_level_values_before_the_cutoff_go_and_aggregates_stay(home):
    counts_before = _query(home, "SELECT * FROM weekly_counts ORDER BY ALL")
    old_with_values = _query(home, "SELECT count(*) FROM incidents WHERE occurred_from < ? AND "
                                   "(persons IS NOT NULL OR description IS NOT NULL)", [SPLIT])[0][0]
    new_with_values = _query(home, "SELECT count(*) FROM incidents WHERE occurred_from >= ? AND "
                                   "(persons IS NOT NULL OR description IS NOT NULL)", [SPLIT])[0][0]
    assert old_with_values and new_with_values
    incidents_before = _query(home, "SELECT count(*) FROM incidents")[0][0]

    result = retention.run_retention(home, now=SPLIT + timedelta(days=400), days=400)
    assert result.incidents_cleared == old_with_values
    assert _query(home, "SELECT count(*) FROM incidents WHERE occurred_from < ? AND "
                        "(persons IS NOT NULL OR description IS NOT NULL)", [SPLIT])[0][0] == 0
    assert _query(home, "SELECT count(*) FROM incidents WHERE occurred_from >= ? AND "
                        "(persons IS NOT NULL OR description IS NOT NULL)", [SPLIT])[0][0] == new_with_values
    assert _query(home, "SELECT count(*) FROM incidents")[0][0] == incidents_before
    jobs.aggregate(home)
    assert _query(home, "SELECT * FROM weekly_counts ORDER BY ALL") == counts_before

    entries = _query(home, "SELECT action, detail FROM audit_log WHERE action = 'gallring'")
    assert len(entries) == 1
    detail = json.loads(entries[0][1])
    assert detail["incidents_cleared"] == old_with_values and detail["retention_days"] == 400


def test_a_second_run_changes_nothing_and_logs_nothing(home):
    now = SPLIT + timedelta(days=400)
    retention.run_retention(home, now=now, days=400)
    before = _state(home)
    again = retention.run_retention(home, now=now, days=400)
    assert not again.anything
    assert _state(home) == before


def test_raw_files_and_quarantine_rows_past_the_period_are_deleted_and_logged(home):
    files = [p for p in home.inbox.rglob("*") if p.is_file()]
    quarantined = _query(home, "SELECT count(*) FROM quarantine")[0][0]
    assert files and quarantined
    result = retention.run_retention(home, now=datetime.now(timezone.utc) + timedelta(days=500), days=400)
    assert result.files_deleted == len(files) and result.quarantine_deleted == quarantined
    assert not [p for p in home.inbox.rglob("*") if p.is_file()]
    assert _query(home, "SELECT count(*) FROM quarantine")[0][0] == 0
    detail = json.loads(_query(home, "SELECT detail FROM audit_log WHERE action = 'gallring'")[0][0])
    assert detail["files_deleted"] == len(files) and detail["quarantine_deleted"] == quarantined
    assert _query(home, "SELECT count(*) FROM weekly_counts")[0][0] > 0


def test_recent_data_is_kept(home):
    files = sorted(p for p in home.inbox.rglob("*") if p.is_file())
    before = _state(home)
    result = retention.run_retention(home)  # now, default period: everything is recent
    assert not result.anything
    assert sorted(p for p in home.inbox.rglob("*") if p.is_file()) == files
    assert _state(home) == before


@pytest.mark.parametrize("value", ["abc", "30", "-1"])
def test_a_bad_or_too_short_period_is_refused(monkeypatch, value, tmp_path):
    monkeypatch.setenv(retention.RETENTION_ENV_VAR, value)
    with pytest.raises(ValueError):
        retention.retention_days()
    result = CliRunner().invoke(main, ["retention", "--home", str(tmp_path / "h")])
    assert result.exit_code == 2


def test_cli_retention_runs(home):
    result = CliRunner().invoke(main, ["retention", "--home", str(home.root)])
    assert result.exit_code == 0, result.output
    assert "0 files deleted" in result.output


def test_writers_leave_part_filled_row_groups_and_compaction_merges_them(tmp_path):
    """Each delivery is its own transaction and leaves a part-filled row group; writers do not merge them when
    they close (that rewrote nearly the whole table each time), `warehouse.compact` does, after retention."""
    home = Home(tmp_path / "home")
    groups = "SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('deliveries')"
    with closing(warehouse.connect(home)) as con:
        con.execute("CREATE TABLE deliveries (row_number BIGINT, value VARCHAR)")
        for _ in range(4):  # 130,000 rows: one full row group of 122,880 and a part-filled one, four times
            with warehouse.transaction(con):
                con.execute("INSERT INTO deliveries SELECT range, 'v' || (range % 1000) FROM range(130000)")
    with closing(warehouse.connect(home)) as con:
        con.execute("UPDATE deliveries SET value = NULL WHERE row_number = 5")
        con.execute("CHECKPOINT")
        assert con.execute(groups).fetchone()[0] == 8  # a writer's checkpoint keeps them as they are
        con.execute("UPDATE deliveries SET value = NULL WHERE row_number = 6")
        warehouse.compact(con)
        assert con.execute(groups).fetchone()[0] < 8
        con.execute("DELETE FROM deliveries WHERE row_number % 2 = 0")
        warehouse.compact(con)
        assert con.execute(groups).fetchone()[0] == 4  # 260,000 rows left, in half the row groups
        assert con.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 260_000
