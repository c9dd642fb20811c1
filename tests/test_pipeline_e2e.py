"""End-to-end tier without Airflow: generated deliveries through every stage into a temporary home.

The same jobs run under Airflow in tests/test_dags.py; here they run directly so each invariant is quick to
check: row accounting per file, nothing applied twice, nothing personal in any output.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from contextlib import closing

import pytest
from click.testing import CliRunner

from pipelines import jobs, warehouse
from pipelines.cli import main
from pipelines.contracts import load_contracts
from pipelines.settings import Home

from conftest import TEST_KEY


def database_fingerprint(home: Home) -> str:
    """A hash of every table's sorted rows: equal fingerprints mean an identical warehouse."""
    digest = hashlib.new("sha256")
    with closing(warehouse.connect(home, read_only=True)) as con:
        for table in ("incidents", "quarantine", "ingest_ledger", "weekly_counts", "areas", "interventions"):
            rows = con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            digest.update(repr(rows).encode())
    return digest.hexdigest()


@pytest.fixture()
def loaded_home(generated_home) -> Home:
    return generated_home


def ledger(home: Home) -> list[tuple]:
    with closing(warehouse.connect(home, read_only=True)) as con:
        return con.execute(
            "SELECT partner, file_name, status, rows_in, rows_loaded, rows_quarantined FROM ingest_ledger ORDER BY ALL"
        ).fetchall()


def test_every_delivered_file_is_in_the_ledger_and_every_row_accounted_for(loaded_home):
    delivered = sorted(p.name for p in loaded_home.inbox.glob("*/*") if p.is_file())
    rows = ledger(loaded_home)
    assert sorted(r[1] for r in rows) == delivered
    for partner, file_name, status, rows_in, loaded, quarantined in rows:
        assert status in ("accepted", "empty"), (file_name, status)
        assert rows_in == loaded + quarantined, file_name
    with closing(warehouse.connect(loaded_home, read_only=True)) as con:
        per_delivery = dict(con.execute(
            "SELECT delivery_id, count(*) FROM quarantine GROUP BY ALL").fetchall())
        for delivery_id, quarantined in con.execute(
            "SELECT delivery_id, rows_quarantined FROM ingest_ledger").fetchall():
            assert per_delivery.get(delivery_id, 0) == quarantined
        loaded = con.execute("SELECT sum(rows_loaded) FROM ingest_ledger").fetchone()[0]
        stored = con.execute("SELECT count(*) FROM incidents").fetchone()[0]
        counted = con.execute("SELECT sum(n) FROM weekly_counts").fetchone()[0]
    # The police re-send about 1% of cases the week after as Version 2: those replace, not add.
    import pandas as pd

    revised = sum(
        int(pd.read_csv(path, dtype=str)["Version"].astype(int).gt(1).sum())
        for path in loaded_home.partner_inbox("police_cases").glob("*.csv")
    )
    assert stored == counted
    assert loaded - stored == revised
    assert sum(r[5] for r in rows) > 0, "the generator plants bad rows: quarantine must not be empty"


def test_the_same_files_again_change_nothing(loaded_home, tmp_path):
    before = database_fingerprint(loaded_home)
    for partner in load_contracts():
        assert jobs.ingest_inbox(loaded_home, partner, TEST_KEY) == []  # all already in the ledger
    # The same bytes under another name are recognised by content and not applied again.
    original = sorted(loaded_home.partner_inbox("housing").glob("*"))[0]
    renamed = tmp_path / f"renamed_{original.name}"
    shutil.copy(original, renamed)
    [receipt] = jobs.ingest_files(loaded_home, "housing", [renamed], TEST_KEY)
    assert receipt.status == "duplicate" and original.name in receipt.reason
    jobs.aggregate(loaded_home)
    assert database_fingerprint(loaded_home) == before


def test_est_run_takes_every_partner_in_one_pass_with_the_same_result(generated_home, tmp_path, monkeypatch):
    """`est run` ingests all partners' files in one pass (jobs.ingest_deliveries: one connection, the next
    partner's first file prepared while the last one loads); the DAGs take one partner at a time. The same
    deliveries must give the same warehouse either way."""
    from pipelines import generate

    from conftest import GENERATED_LAST_WEEK

    home = Home(tmp_path / "home").ensure()
    generate.generate(home, weeks=4, last_week=GENERATED_LAST_WEEK)  # the files generated_home was made from
    monkeypatch.setenv("EST_PSEUDONYM_KEY", TEST_KEY.hex())
    result = CliRunner().invoke(main, ["run", "--home", str(home.root), "--week", GENERATED_LAST_WEEK])
    assert result.exit_code == 0, result.output
    assert all(f"{partner}:" in result.output for partner in load_contracts() if any(home.partner_inbox(partner).glob("*")))
    tables = ("incidents", "quarantine", "weekly_counts")

    def rows(target: Home):
        with closing(warehouse.connect(target, read_only=True)) as con:
            return {table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in tables}

    ours, theirs = rows(home), rows(generated_home)
    assert len(ours["incidents"]) > 1000
    for table in tables:
        assert ours[table] == theirs[table], table


def test_no_key_no_run(tmp_path, monkeypatch):
    monkeypatch.delenv("EST_PSEUDONYM_KEY", raising=False)
    home = tmp_path / "home"
    inbox_file = tmp_path / "delivery.csv"
    inbox_file.write_text("record_id,occurred_at,category\n1,2026-03-02 10:00,graffiti\n")
    result = CliRunner().invoke(main, ["ingest", "--home", str(home), "--partner", "guards", str(inbox_file)])
    assert result.exit_code == 2
    assert "EST_PSEUDONYM_KEY" in result.output
    assert not (home / "est.duckdb").exists()  # stopped before anything was written


def test_refused_file_exits_2_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EST_PSEUDONYM_KEY", TEST_KEY.hex())
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"this is not a workbook")
    result = CliRunner().invoke(main, ["ingest", "--home", str(tmp_path / "h"), "--partner", "schools", str(broken)])
    assert result.exit_code == 2, result.output
    assert "broken.xlsx" in result.output


PERSONNUMMER_FORMS = re.compile(r"(?<!\d)(\d{6}|\d{8})[-+–\s]?\d{4}(?!\d)")


def test_no_personnummer_from_the_inputs_in_any_output(loaded_home):
    """Every personnummer written into the generated inputs is searched for in every output file."""
    from pipelines.privacy import canonical_personnummer
    import pandas as pd

    found_in_inputs: set[str] = set()
    for path in loaded_home.inbox.glob("*/*.csv"):
        text = path.read_bytes().decode("utf-8", errors="replace") + path.read_bytes().decode("cp1252", errors="replace")
        found_in_inputs.update(m.group(0) for m in PERSONNUMMER_FORMS.finditer(text))
    canonical, status = canonical_personnummer(pd.Series(sorted(found_in_inputs)))
    numbers = {c for c in canonical if isinstance(c, str)}
    assert len(numbers) > 10, "the generator must plant personnummer in the social services files"
    needles = numbers | {n[2:] for n in numbers}  # 12- and 10-digit forms
    outputs = [p for p in loaded_home.out.rglob("*") if p.is_file()]
    assert {p.suffix for p in outputs} >= {".html", ".csv", ".json"}, "receipts, reports and their tables"
    assert any("veckorapport" in p.name for p in outputs) and any("karta" in p.name for p in outputs)
    for path in outputs:
        # Separators removed, so 850709-9805 and 8507099805 are both found.
        text = re.sub(r"[-+–\s]", "", path.read_text(encoding="utf-8", errors="replace"))
        for needle in needles:
            assert needle not in text, f"{path.name} holds a personnummer"


def test_receipts_say_what_was_quarantined_by_row_without_values(loaded_home):
    receipts = [json.loads(p.read_text()) for p in loaded_home.receipts.glob("*/*.json")]
    assert receipts
    with_problems = [r for r in receipts if r["rows_quarantined"]]
    assert with_problems
    for receipt in with_problems:
        assert sum(item["count"] for item in receipt["quarantine"]) >= receipt["rows_quarantined"]
        for item in receipt["quarantine"]:
            assert item["rows"] and all(isinstance(r, int) for r in item["rows"])
            assert item["advice"]


def test_stored_incidents_hold_pseudonyms_not_identifiers(loaded_home):
    with closing(warehouse.connect(loaded_home, read_only=True)) as con:
        ids = [r[0] for r in con.execute("SELECT pseudonym_text(partner_record_id) FROM incidents").fetchall()]
        persons = [r[0] for r in con.execute(
            "SELECT unnest(persons) FROM incidents WHERE persons IS NOT NULL").fetchall()]
    assert all(re.fullmatch(r"[0-9a-f]{64}", i) for i in ids)
    assert persons and all(re.fullmatch(r"[0-9a-f]{64}", p) for p in persons)


def test_a_partner_outside_the_weekly_rhythm_is_never_reported_missing(loaded_home):
    """police.uk has a contract (expected_weekly: false) but delivered nothing here: the report must not list it."""
    from bs4 import BeautifulSoup

    from conftest import GENERATED_LAST_WEEK
    from pipelines.contracts import load_contracts

    police_uk = load_contracts()["police_uk"]
    page = loaded_home.out / "weekly" / GENERATED_LAST_WEEK / f"veckorapport_{GENERATED_LAST_WEEK}.html"
    text = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser").get_text(" ")
    assert police_uk.name not in text
    assert load_contracts()["housing"].name in text  # an expected partner is listed


@pytest.mark.parametrize("args", [["report", "weekly", "--week", "2025-W53"], ["report", "weekly", "--week", "47"],
                                  ["report", "quarterly", "--quarter", "2026Q5"]])
def test_a_period_that_does_not_exist_is_refused(tmp_path, args):
    """2025 has no ISO week 53 (2026 has): the CLI applies the DAGs' own period check."""
    result = CliRunner().invoke(main, [*args[:2], "--home", str(tmp_path), *args[2:]])
    assert result.exit_code == 2, result.output
    assert "refused" in result.output
