"""`est quarantine list|show|release` and the completeness view (issue 3, items 6 and 7)."""

from __future__ import annotations

import shutil
from contextlib import closing

import pytest
from click.testing import CliRunner

from pipelines import completeness, jobs, warehouse
from pipelines import quarantine as q
from pipelines.cli import main
from pipelines.settings import Home

from test_ingest_helpers import INGEST_FIXTURES, KEY, fixture_contract, ingest, query

FIXTURE = "unknown_codes_and_duplicates.csv"


@pytest.fixture()
def home(tmp_path) -> Home:
    home = Home(tmp_path / "home").ensure()
    jobs.prepare_reference(home)
    inbox = home.partner_inbox("fixture_csv")
    inbox.mkdir(parents=True, exist_ok=True)
    shutil.copy(INGEST_FIXTURES / FIXTURE, inbox / FIXTURE)
    return home


def test_list_and_show_name_rows_and_reasons_never_values(home):
    receipt = ingest(home, fixture_contract(), home.partner_inbox("fixture_csv") / FIXTURE)
    runner = CliRunner()
    listed = runner.invoke(main, ["quarantine", "list", "--home", str(home.root)])
    assert listed.exit_code == 0, listed.output
    assert "category: unknown_value" in listed.output and "record_id: repeated_in_file" in listed.output
    assert receipt.delivery_id[:12] in listed.output
    shown = runner.invoke(main, ["quarantine", "show", "--home", str(home.root), receipt.delivery_id[:12]])
    assert shown.exit_code == 0 and "row 1\tcategory: unknown_value" in shown.output
    for value in ("Okänd kategori", "D-1", "D-3"):
        assert value not in listed.output + shown.output
    refused = runner.invoke(main, ["quarantine", "show", "--home", str(home.root), "0000000000"])
    assert refused.exit_code == 2


def test_release_after_a_contract_fix_loads_what_now_passes_in_one_audited_step(home):
    receipt = ingest(home, fixture_contract(), home.partner_inbox("fixture_csv") / FIXTURE)
    assert (receipt.rows_loaded, receipt.rows_quarantined) == (2, 2)
    fixed = fixture_contract(version=2, category_map={"Klotter": "graffiti", "Okänd kategori": "other"})
    with closing(warehouse.connect(home)) as con:
        detail = q.release(con, home, fixed, receipt.delivery_id[:12], KEY, jobs.placing_context(con, home))
    assert detail["released"] == 1 and detail["still_quarantined"] == 1  # the repeated id stays
    assert query(home, "SELECT rows_in, rows_loaded, rows_quarantined FROM ingest_ledger") == [(4, 3, 1)]
    assert query(home, "SELECT count(*) FROM incidents") == [(3,)]
    assert query(home, "SELECT source_row FROM quarantine WHERE released_at IS NULL") == [(4,)]
    assert query(home, "SELECT action FROM audit_log WHERE action = 'release'") == [("release",)]
    with closing(warehouse.connect(home)) as con:
        again = q.release(con, home, fixed, receipt.delivery_id, KEY, jobs.placing_context(con, home))
    assert again["released"] == 0 and query(home, "SELECT count(*) FROM incidents") == [(3,)]


def test_release_refuses_when_the_delivered_file_is_gone(home):
    path = home.partner_inbox("fixture_csv") / FIXTURE
    receipt = ingest(home, fixture_contract(), path)
    path.unlink()
    with closing(warehouse.connect(home)) as con, pytest.raises(q.ReleaseRefused, match="no longer in inbox"):
        q.release(con, home, fixture_contract(), receipt.delivery_id, KEY, jobs.placing_context(con, home))


def test_completeness_says_delivered_missing_or_not_expected_per_partner_and_week(home):
    from pipelines.contracts import contract_for

    ingest(home, contract_for("police_uk"), INGEST_FIXTURES.parent / "police_uk" / "2018-03-essex-head40.csv")
    ingest(home, fixture_contract(), home.partner_inbox("fixture_csv") / FIXTURE)  # 2026-W10, not a partner row
    with closing(warehouse.connect(home, read_only=True)) as con:
        frame = completeness.weekly_completeness(con, ["2018-W09", "2026-W10"])
        missing = completeness.missing_partners(con, "2026-W10")
    rows = {(r.partner, r.iso_week): r for r in frame.itertuples(index=False)}
    assert rows[("police_uk", "2018-W09")].status == "delivered"
    assert rows[("police_uk", "2018-W09")].rows_loaded == 40
    assert rows[("police_uk", "2026-W10")].status == "not_expected"  # expected_weekly: false
    assert rows[("housing", "2026-W10")].status == "missing"
    assert "housing" in missing and "police_uk" not in missing
    assert 0.0 <= rows[("police_uk", "2018-W09")].quarantine_share <= 1.0
