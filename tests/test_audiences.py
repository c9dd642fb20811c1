"""Audiences and the partner export (PRIVACY.md "Keeping and deleting": a partner's export holds only that
partner's own rows and shared aggregates; every export writes an audit entry; issue 4 item 5)."""

from __future__ import annotations

import csv
import io
import json
from contextlib import closing

import pytest
from click.testing import CliRunner

from pipelines import audiences, privacy, warehouse
from pipelines.cli import main
from tests.conftest import TEST_KEY


def test_every_audience_gets_the_privacy_thresholds_and_no_free_text():
    for name in list(audiences.AUDIENCES) + ["partner:housing"]:
        target = audiences.audience(name)
        assert target.threshold == privacy.PRIMARY_THRESHOLD
        assert target.sensitive_threshold == privacy.SENSITIVE_THRESHOLD
        assert target.free_text is False and target.secondary_suppression
    assert [n for n, a in audiences.AUDIENCES.items() if a.grid_cells] == ["analysis_meeting"]
    assert not any(a.own_rows for a in audiences.AUDIENCES.values())
    assert audiences.audience("partner:housing").pseudonym_domain == "export:housing"
    assert audiences.audience("recipients") is audiences.AUDIENCES["weekly_recipients"]
    with pytest.raises(ValueError):
        audiences.audience("partner:nobody")
    with pytest.raises(ValueError):
        audiences.audience("everyone")
    assert set(audiences.OUTPUTS.values()) <= set(audiences.AUDIENCES) | {"partner"}


@pytest.fixture(scope="module")
def exported(generated_home, tmp_path_factory):
    import shutil

    from pipelines.settings import Home

    home = Home(tmp_path_factory.mktemp("export") / "home")  # a copy: the shared fixture stays as it was
    shutil.copytree(generated_home.root, home.root)
    paths = audiences.export_partner(home, "social_services", TEST_KEY)
    return home, paths


def _read(path):
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_a_partner_export_holds_only_its_own_rows_and_no_analysis_pseudonym(exported):
    home, (own_path, shared_path) = exported
    own = _read(own_path)
    with closing(warehouse.connect(home, read_only=True)) as con:
        mine = con.execute("SELECT count(*) FROM incidents WHERE partner = 'social_services'").fetchone()[0]
        stored = {r[0] for r in con.execute("SELECT partner_record_id FROM incidents").fetchall()}
        stored |= {r[0] for r in con.execute("SELECT unnest(persons) FROM incidents").fetchall()}
        descriptions = [r[0] for r in con.execute(
            "SELECT description FROM incidents WHERE partner = 'social_services' AND description IS NOT NULL "
            "AND length(description) > 20 LIMIT 20").fetchall()]
    assert len(own) == mine > 0
    assert set(own[0]) == set(audiences.OWN_COLUMNS)  # no description, no partner column, no grid cell
    text = own_path.read_text(encoding="utf-8") + shared_path.read_text(encoding="utf-8")
    assert not any(p in text for p in stored), "an analysis or record pseudonym left the warehouse"
    assert not any(d in text for d in descriptions), "free text in an export"
    assert all(len(r["record"]) == 64 for r in own)
    # The export domain is the partner's own: another partner's export key gives other pseudonyms.
    other = privacy.derive_key(TEST_KEY, audiences.export_domain("schools"))
    mine_key = privacy.derive_key(TEST_KEY, audiences.export_domain("social_services"))
    assert other.key_id != mine_key.key_id


def test_shared_aggregates_are_suppressed_including_the_others_part(exported):
    home, (_, shared_path) = exported
    shared = _read(shared_path)
    shown = [r["n"] for r in shared]
    assert all(s.isdigit() or s in ("<5", "<10", privacy.HIDDEN_LABEL) for s in shown)
    assert not any(s.isdigit() and 0 < int(s) < privacy.PRIMARY_THRESHOLD for s in shown)
    with closing(warehouse.connect(home, read_only=True)) as con:
        cells = con.execute(
            "SELECT iso_week, area_code, category, sum(n), sum(n) FILTER (partner = 'social_services') "
            "FROM weekly_counts GROUP BY ALL").fetchall()
    truth = {(w, a, c): (int(n), int(own or 0)) for w, a, c, n, own in cells}
    for row in shared:
        n, own = truth[(row["iso_week"], row["area_code"], row["category"])]
        if row["n"].isdigit():  # shown: neither the total nor the others' part is a small count
            assert int(row["n"]) == n and not 0 < n - own < privacy.PRIMARY_THRESHOLD


def test_every_export_writes_an_audit_entry(exported):
    home, paths = exported
    with closing(warehouse.connect(home, read_only=True)) as con:
        entries = con.execute("SELECT subject, audience, detail FROM audit_log WHERE action = 'export'").fetchall()
    assert entries and entries[-1][1] == "partner:social_services"
    assert all(p.name in entries[-1][0] for p in paths)
    detail = json.loads(entries[-1][2])
    assert detail["own_rows"] > 0 and detail["deliveries"] > 0 and detail["pseudonym_domain"] == "export:social-services"


def test_cli_export_needs_the_key(generated_home, monkeypatch):
    monkeypatch.delenv("EST_PSEUDONYM_KEY", raising=False)
    result = CliRunner().invoke(main, ["export", "--home", str(generated_home.root), "--partner", "housing"])
    assert result.exit_code == 2 and "key" in result.output
