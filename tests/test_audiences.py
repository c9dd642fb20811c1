"""Audiences and the partner export (PRIVACY.md "Keeping and deleting": a partner's export holds only that
partner's own rows and shared aggregates; every export writes an audit entry; issue 4 item 5)."""

from __future__ import annotations

import csv
import io
import json
from contextlib import closing

import pytest
from click.testing import CliRunner

from pipelines import audiences, jobs, privacy, warehouse
from pipelines.cli import main
from pipelines.publish import write_atomic
from tests.conftest import GENERATED_LAST_WEEK, TEST_KEY


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
    # Every kind of output under out/: the weekly report (in the fixture), a partner's view of it, the quarterly
    # pack (in the fixture), receipts (written by ingest) and two partners' exports, social_services' last.
    jobs.render_weekly(home, GENERATED_LAST_WEEK, audience="partner:social_services")
    audiences.export_partner(home, "housing", TEST_KEY)
    paths = audiences.export_partner(home, "social_services", TEST_KEY)
    return home, paths


def _read(path):
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_a_partner_export_holds_only_its_own_rows_and_no_analysis_pseudonym(exported):
    home, (own_path, shared_path) = exported
    own = _read(own_path)
    with closing(warehouse.connect(home, read_only=True)) as con:
        mine = con.execute("SELECT count(*) FROM incidents WHERE partner = 'social_services'").fetchone()[0]
        stored = {r[0] for r in con.execute("SELECT pseudonym_text(partner_record_id) FROM incidents").fetchall()}
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


# ---------------------------------------------------------------------------------------------------------------
# Every output declares its audience and gets exactly the detail that audience may see (issue 4 item 5)
# ---------------------------------------------------------------------------------------------------------------


def test_every_file_under_out_is_logged_for_its_declared_audience_with_no_more_detail(exported):
    home, _ = exported
    with closing(warehouse.connect(home, read_only=True)) as con:
        audiences_of, _ = audiences.output_audiences(con, home.out)
        grid_cells = {r[0] for r in con.execute("SELECT grid_cell::VARCHAR FROM incidents WHERE grid_cell IS NOT NULL")
                      .fetchall()}
    assert audiences.check_outputs(home, TEST_KEY) == []
    # Every file was judged, and every kind of output is there (the check is not vacuous).
    assert set(audiences_of) == set(audiences.published_files(home.out))
    kinds = {audiences.declared(f)[0] for f in audiences_of}
    assert kinds >= {"weekly_report", "weekly_partner_view", "quarterly_map", "quarterly_pack", "receipt",
                     "partner_export"}
    assert {"weekly_recipients", "analysis_meeting", "partner:social_services", "partner:housing"} \
        <= set(audiences_of.values())
    hot = (home.out / "quarterly" / "2026Q1" / "hotspots_2026Q1.csv").read_text(encoding="utf-8-sig")
    assert set(audiences.grid_cell_ids(hot)) & grid_cells, "the grid-cell check would not see a real cell id"


def _copy(exported, tmp_path):
    import shutil

    from pipelines.settings import Home

    home = Home(tmp_path / "home")
    shutil.copytree(exported[0].root, home.root)
    return home


def _log(home, relative, audience, action="publish"):
    with closing(warehouse.connect(home)) as con:
        warehouse.audit(con, action, relative, audience=audience, detail={"files": [relative]})


def _rules(home, master=TEST_KEY):
    return sorted({(p.path, p.rule) for p in audiences.check_outputs(home, master)})


def test_an_output_written_without_an_audit_entry_is_found(exported, tmp_path):
    home = _copy(exported, tmp_path)
    relative = f"weekly/{GENERATED_LAST_WEEK}/extra_{GENERATED_LAST_WEEK}.csv"
    write_atomic(home.out / relative, "Kategori;Antal\nKlotter;12\n")
    write_atomic(home.out / "misc" / "notes.csv", "a\n1\n")
    assert _rules(home) == [("misc/notes.csv", "undeclared"), (relative, "unlogged")]
    _log(home, relative, "weekly_recipients")  # logged for its audience: accepted
    assert _rules(home) == [("misc/notes.csv", "undeclared")]


def test_grid_cells_in_an_output_for_the_public_or_the_recipients_are_found(exported, tmp_path):
    home = _copy(exported, tmp_path)
    hot = (home.out / "quarterly" / "2026Q1" / "hotspots_2026Q1.csv").read_text(encoding="utf-8-sig")
    cell = audiences.grid_cell_ids(hot)[0]
    table = f"Ruta;Antal\n{cell};12\n"
    for relative, target in [("open_data/brott_2026Q1.csv", "public"),
                             (f"weekly/{GENERATED_LAST_WEEK}/rutor_{GENERATED_LAST_WEEK}.csv", "weekly_recipients"),
                             ("quarterly/2026Q1/rutor_2026Q1.csv", "analysis_meeting")]:
        write_atomic(home.out / relative, table)
        _log(home, relative, target)
    assert _rules(home) == [("open_data/brott_2026Q1.csv", "grid_cell"),  # the analysis meeting may see cells
                            (f"weekly/{GENERATED_LAST_WEEK}/rutor_{GENERATED_LAST_WEEK}.csv", "grid_cell")]


def test_an_output_logged_for_another_audience_is_found(exported, tmp_path):
    home = _copy(exported, tmp_path)
    weekly = f"weekly/{GENERATED_LAST_WEEK}/veckorapport_{GENERATED_LAST_WEEK}_kategorier.csv"
    _log(home, weekly, "analysis_meeting")
    export = next(p for p in audiences.published_files(home.out) if p.startswith("exports/housing/"))
    _log(home, export, "partner:schools", action="export")
    assert _rules(home) == [(export, "wrong_audience"), (weekly, "wrong_audience")]


def test_pseudonyms_free_text_and_other_partners_rows_in_outputs_are_found(exported, tmp_path):
    home = _copy(exported, tmp_path)
    with closing(warehouse.connect(home, read_only=True)) as con:
        record = con.execute("SELECT pseudonym_text(partner_record_id) FROM incidents LIMIT 1").fetchone()[0]
        person = con.execute("SELECT persons[1] FROM incidents WHERE len(persons) > 0 LIMIT 1").fetchone()[0]
        text = con.execute("SELECT description FROM incidents WHERE length(description) > 30 LIMIT 1").fetchone()[0]
    karta = home.out / "quarterly" / "2026Q1" / "karta_2026Q1.csv"
    karta.write_text(karta.read_text(encoding="utf-8") + f"x;{record}\n", encoding="utf-8")
    report = home.out / "weekly" / GENERATED_LAST_WEEK / f"veckorapport_{GENERATED_LAST_WEEK}.html"
    report.write_text(report.read_text(encoding="utf-8").replace(
        "</body>", f"<p>{person.upper()}</p><p>{text.replace('&', '&amp;')}</p></body>"), encoding="utf-8")
    # social_services' export gets one of housing's rows (its export pseudonym: a row that is not its own).
    own = next(home.out.glob("exports/social_services/*_egna_rader.csv"))
    theirs = next(home.out.glob("exports/housing/*_egna_rader.csv")).read_text(encoding="utf-8").splitlines()
    own.write_text(own.read_text(encoding="utf-8") + theirs[1] + "\n", encoding="utf-8")
    shared = next(home.out.glob("exports/housing/*_gemensamt.csv"))
    shared.write_text(shared.read_text(encoding="utf-8").replace("n\n", "n,partner\n", 1), encoding="utf-8")
    assert _rules(home) == [
        (shared.relative_to(home.out).as_posix(), "columns"),
        (own.relative_to(home.out).as_posix(), "other_rows"),
        ("quarterly/2026Q1/karta_2026Q1.csv", "pseudonym"),
        (report.relative_to(home.out).as_posix(), "free_text"),
        (report.relative_to(home.out).as_posix(), "pseudonym"),
    ]
    findings = " ".join(str(p) for p in audiences.check_outputs(home, TEST_KEY))
    assert record not in findings and person not in findings and text not in findings


def test_the_audit_log_refuses_a_publication_without_a_known_audience(exported, tmp_path):
    home = _copy(exported, tmp_path)
    with closing(warehouse.connect(home)) as con:
        for target in (None, "", "everyone", "partner:nobody"):
            with pytest.raises(ValueError):
                warehouse.audit(con, "publish", "weekly/x.html", audience=target)
        warehouse.audit(con, "retention", "incidents")  # other actions need no audience
        warehouse.audit(con, "publish", "weekly/x.html", audience="recipients")  # an alias is known
