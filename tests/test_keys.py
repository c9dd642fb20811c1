"""Keys (PRIVACY.md "Keys and pseudonyms"; issue 4 item 1): `est keys rotate` re-keys retained rows in one
transaction, and a missing or short key stops every entry point before anything is written. Keys are fake."""

from __future__ import annotations

import shutil
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines import jobs, keys, privacy, warehouse
from pipelines.cli import main
from pipelines.settings import Home
from tests.conftest import TEST_KEY, ingested_home

NEW_KEY = bytes.fromhex("ab" * 32)
OLD_HEX = TEST_KEY.hex()


@pytest.fixture(scope="module")
def source_home(tmp_path_factory) -> Home:
    return ingested_home(tmp_path_factory.mktemp("keys"), 2, "2026-W10")


@pytest.fixture()
def home(source_home, tmp_path) -> Home:
    shutil.copytree(source_home.root, tmp_path / "home")
    return Home(tmp_path / "home")


def _rows(home: Home, sql: str, params=None):
    with closing(warehouse.connect(home, read_only=True)) as con:
        return con.execute(sql, params or []).fetchall()


COUNTS = ("SELECT partner, count(*), count(DISTINCT partner_record_id), "
          "count(DISTINCT p) FROM (SELECT partner, partner_record_id, unnest(coalesce(persons, [NULL])) AS p "
          "FROM incidents) GROUP BY partner ORDER BY partner")


def test_rotation_changes_key_id_and_pseudonyms_but_no_count(home):
    before_ids = {r[0] for r in _rows(home, "SELECT DISTINCT key_id FROM incidents")}
    assert before_ids == {keys.chain_key_id(TEST_KEY)}
    counts = _rows(home, COUNTS)
    weekly = _rows(home, "SELECT * FROM weekly_counts ORDER BY ALL")
    old_ids = {r[0] for r in _rows(home, "SELECT pseudonym_text(partner_record_id) FROM incidents")}

    result = keys.rotate(home, privacy.load_key(value=OLD_HEX), NEW_KEY)
    chain = privacy.load_key(value=f"{NEW_KEY.hex()},{OLD_HEX}")
    assert {r[0] for r in _rows(home, "SELECT DISTINCT key_id FROM incidents")} == {keys.chain_key_id(chain)}
    assert result.new_key_id != result.old_key_id
    assert _rows(home, COUNTS) == counts
    assert not old_ids & {r[0] for r in _rows(home, "SELECT pseudonym_text(partner_record_id) FROM incidents")}
    jobs.aggregate(home)
    assert _rows(home, "SELECT * FROM weekly_counts ORDER BY ALL") == weekly
    audit = _rows(home, "SELECT detail FROM audit_log WHERE action = 'keys_rotate'")
    assert len(audit) == 1 and OLD_HEX not in audit[0][0] and NEW_KEY.hex() not in audit[0][0]


def test_a_new_delivery_after_rotation_upserts_onto_the_rotated_rows(home):
    keys.rotate(home, privacy.load_key(value=OLD_HEX), NEW_KEY)
    chain = privacy.load_key(value=f"{NEW_KEY.hex()},{OLD_HEX}")
    before = _rows(home, COUNTS)
    import csv
    import io

    delivered = sorted(home.partner_inbox("social_services").glob("*.csv"))[-1]
    rows = list(csv.reader(io.StringIO(delivered.read_text(encoding="utf-8"))))
    column = rows[0].index("description")
    for row in rows[1:]:
        if len(row) == len(rows[0]):
            row[column] = (row[column] + " Rättad.").strip()
    again = delivered.with_name("again_" + delivered.name)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    again.write_text(buffer.getvalue(), encoding="utf-8")  # the same records re-exported, corrected
    receipts = jobs.ingest_files(home, "social_services", [again], chain)
    assert receipts[0].status == "accepted" and receipts[0].rows_loaded > 0
    assert _rows(home, COUNTS) == before  # upserted, not added: same records, same persons
    assert {r[0] for r in _rows(home, "SELECT DISTINCT key_id FROM incidents")} == {keys.chain_key_id(chain)}
    assert _rows(home, "SELECT count(*) FROM incidents WHERE description LIKE '%Rättad.%'")[0][0] > 0


def test_a_failure_mid_way_leaves_everything_unchanged(home, monkeypatch):
    before = _rows(home, "SELECT * FROM incidents ORDER BY ALL")
    audit_before = _rows(home, "SELECT count(*) FROM audit_log")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(keys.warehouse, "audit", broken)  # after the rows were rewritten, before the commit
    with pytest.raises(OSError):
        keys.rotate(home, privacy.load_key(value=OLD_HEX), NEW_KEY)
    assert _rows(home, "SELECT * FROM incidents ORDER BY ALL") == before
    assert _rows(home, "SELECT count(*) FROM audit_log") == audit_before


def test_the_wrong_old_key_is_refused(home):
    before = _rows(home, "SELECT * FROM incidents ORDER BY ALL")
    with pytest.raises(keys.RotationRefused):
        keys.rotate(home, privacy.load_key(value="cd" * 32), NEW_KEY)
    with pytest.raises(keys.RotationRefused):
        keys.rotate(home, privacy.load_key(value=OLD_HEX), TEST_KEY)
    assert _rows(home, "SELECT * FROM incidents ORDER BY ALL") == before


def test_cli_keys_rotate(home, monkeypatch):
    monkeypatch.setenv("EST_PSEUDONYM_KEY", OLD_HEX)
    monkeypatch.setenv(keys.NEW_KEY_ENV_VAR, NEW_KEY.hex())
    result = CliRunner().invoke(main, ["keys", "rotate", "--home", str(home.root)])
    assert result.exit_code == 0, result.output
    assert OLD_HEX not in result.output and NEW_KEY.hex() not in result.output
    monkeypatch.setenv(keys.NEW_KEY_ENV_VAR, "ab" * 8)
    short = CliRunner().invoke(main, ["keys", "rotate", "--home", str(home.root)])
    assert short.exit_code == 2 and "too short" in short.output


# --------------------------------------------------------------------------------------------------------------
# No key, no run: every entry point stops before anything is written
# --------------------------------------------------------------------------------------------------------------

BAD_KEYS = [None, "", "ab" * 16, "not hex at all", "ab" * 32 + "," + "cd" * 8]


def _written(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_cli_ingest_and_run_refuse_a_missing_or_short_key_and_write_nothing(tmp_path, monkeypatch, bad):
    if bad is None:
        monkeypatch.delenv("EST_PSEUDONYM_KEY", raising=False)
    else:
        monkeypatch.setenv("EST_PSEUDONYM_KEY", bad)
    delivery = tmp_path / "delivery.csv"
    delivery.write_text("record_id,occurred_at\nX-1,2026-03-01 10:00\n", encoding="utf-8")
    home = tmp_path / "home"
    runner = CliRunner()
    for args in (["ingest", "--home", str(home), "--partner", "social_services", str(delivery)],
                 ["run", "--home", str(home), "--week", "2026-W10"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert "key" in result.output and (bad is None or bad not in result.output or bad == "")
        assert _written(home) == [], args


@pytest.mark.parametrize("bad", ["ab" * 16, "zz" * 32])
def test_demo_refuses_a_bad_key_before_generating_anything(tmp_path, monkeypatch, bad):
    from pipelines import demo

    monkeypatch.setenv("EST_PSEUDONYM_KEY", bad)
    home = Home(tmp_path / "home").ensure()
    with pytest.raises(privacy.PseudonymKeyError):
        demo.run_demo(home, weeks=1, echo=lambda _: None)
    assert _written(home.root) == []


@pytest.mark.parametrize("bad", ["", "ab" * 16])
def test_the_airflow_task_key_fails_without_retry_on_a_missing_or_short_key(monkeypatch, bad):
    pytest.importorskip("airflow.sdk")
    from airflow.sdk.exceptions import AirflowFailException

    from pipelines import airflow_local

    monkeypatch.setenv(airflow_local.KEY_VARIABLE_ENV, bad)
    if not bad:
        monkeypatch.delenv(airflow_local.KEY_VARIABLE_ENV)
    with pytest.raises(AirflowFailException) as raised:
        airflow_local.pseudonym_key()
    assert "key" in str(raised.value) and (not bad or bad not in str(raised.value))


def test_every_key_of_a_rotated_chain_is_masked_in_task_logs_in_every_spelling(monkeypatch):
    """After `est keys rotate` the secret is "<new hex>,<old hex>". Airflow masks the variable's value as a whole
    only, so pseudonym_key registers each key of the chain (and its derived domain keys) in every spelling: a log
    line holding just the old key, in any form `est audit-outputs` looks for, comes out masked."""
    pytest.importorskip("airflow.sdk")
    import base64

    from airflow.sdk._shared.secrets_masker import redact

    from pipelines import airflow_local, audit_outputs

    new, old = bytes.fromhex("c3" * 32), bytes(range(101, 133))  # fake keys used by no other test
    monkeypatch.setenv(airflow_local.KEY_VARIABLE_ENV, f"{new.hex()},{old.hex().upper()}")
    master = airflow_local.pseudonym_key()
    assert bytes(master) == new and master.previous == (old,)
    analysis = privacy.derive_key(old, "analysis").key
    spellings = {
        "text as written": old.hex().upper(), "hex": old.hex(), "repr": repr(old), "repr body": repr(old)[2:-1],
        "base64": base64.b64encode(old).decode(), "base64url": base64.urlsafe_b64encode(old).decode().rstrip("="),
        "base64 inside a longer text": base64.b64encode(b"x" + old + b"yz").decode(),
        "base64url inside a longer text": base64.urlsafe_b64encode(b"xy" + old).decode(),
        "derived analysis key": analysis.hex(), "derived analysis key, base64": base64.b64encode(analysis).decode(),
    }
    for name, spelling in spellings.items():
        line = str(redact(f"task said: {spelling} (done)"))
        assert "***" in line, name
        # What is left of the line betrays no key: the output audit, which knows every key of the chain, is clean.
        needles = audit_outputs.key_needles(master)
        assert not any(n.decode("latin-1") in line for n in needles if n.isascii()), name
    assert old.hex() not in " ".join(str(redact(f)) for f in airflow_local.key_forms(f"{new.hex()},{old.hex()}"))


def test_key_forms_of_a_chain_cover_each_key_and_are_never_short():
    from pipelines import airflow_local

    new, old = "c3" * 32, bytes(range(101, 133)).hex()
    forms = airflow_local.key_forms(f" {new} , {old}\n")
    assert f"{new} , {old}" in forms and new in forms and old in forms and old.upper() in forms
    assert repr(bytes.fromhex(old)) in forms and repr(bytes.fromhex(new)) in forms
    assert min(len(f) for f in forms) >= 20  # Airflow's masker ignores secrets under 5 characters
    assert airflow_local.key_forms("") == [] and airflow_local.key_forms("not-hex-text") == ["not-hex-text"]
