"""Great Expectations stays the validator of record; large deliveries are checked by the same suite read in bulk.

These tests show both engines give the same reasons for the same rows (on every ingest fixture, on a slice of the
benchmark's generated files, and on rows broken on purpose in every way the suite knows), that the bulk reading
refuses an expectation it cannot read, and that ingest switches engines only above validate.GX_MAX_ROWS.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from pipelines import validate
from pipelines.canonical import STATUS_COLUMNS
from pipelines.contracts import load_contracts
from pipelines.ingest import _canonical
from pipelines.readers import DeliveryRefused, read_delivery
from pipelines.settings import Home
from tests.test_ingest_helpers import INGEST_FIXTURES, fixture_contract

RECEIVED = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


def _canonical_frames():
    contract = fixture_contract()
    for path in sorted(INGEST_FIXTURES.glob("*.csv*")):
        try:
            raw = read_delivery(path, contract)
        except DeliveryRefused:
            continue  # refused before any row is validated
        if raw.rows_in:
            yield path.name, _canonical(raw, contract, RECEIVED)


def _broken_on_purpose(frame: pd.DataFrame) -> pd.DataFrame:
    """Every rule broken somewhere, several rules on one row, and missing values the rules must skip."""
    broken = frame.copy()
    n = len(broken)
    rng = np.random.default_rng(3)
    for column in STATUS_COLUMNS:
        rows = rng.choice(n, size=max(1, n // 50), replace=False)
        broken.loc[broken.index[rows], column] = "not_a_date" if "occurred" in column else "unknown_value"
    swapped = rng.choice(n, size=max(1, n // 40), replace=False)
    broken.loc[broken.index[swapped], "latitude"] = 0.0
    broken.loc[broken.index[swapped[: len(swapped) // 2]], "sweref99_e"] = 6_500_000.0
    later = broken["occurred_from"] + pd.Timedelta(hours=2)
    before = rng.choice(n, size=max(1, n // 30), replace=False)
    broken.loc[broken.index[before], "occurred_to"] = broken["occurred_from"].iloc[before] - pd.Timedelta(hours=1)
    equal = rng.choice(n, size=max(1, n // 30), replace=False)
    broken.loc[broken.index[equal], "occurred_to"] = broken["occurred_from"].iloc[equal]  # or_equal: passes
    gone = rng.choice(n, size=max(1, n // 30), replace=False)
    broken.loc[broken.index[gone], "occurred_from"] = pd.NaT  # pair rule ignores the row
    broken.loc[broken.index[gone[:3]], "occurred_to"] = later.iloc[gone[:3]]
    return broken


@pytest.mark.parametrize("extent", [None, {"latitude": (49.0, 61.0), "longitude": (-8.0, 2.0)}])
def test_bulk_and_great_expectations_agree_on_every_ingest_fixture(extent):
    compared = 0
    for name, frame in _canonical_frames():
        for checked in (frame, _broken_on_purpose(frame)):
            expected = validate.gx_validate(checked, extent)
            assert validate.bulk_validate(checked, extent) == expected, name
            compared += len(checked)
    assert compared > 500


def test_bulk_and_great_expectations_agree_on_generated_bench_rows(tmp_path):
    from pipelines import generate

    home = Home(tmp_path / "home").ensure()
    files = generate.generate_bench(home, rows=40_000, seed=11)
    contracts = load_contracts()
    failing = 0
    for path in files:
        contract = contracts[path.parent.name]
        frame = _canonical(read_delivery(path, contract), contract, RECEIVED)
        checked = _broken_on_purpose(frame)
        expected = validate.gx_validate(checked, contract.extent)
        assert validate.bulk_validate(checked, contract.extent) == expected, path.name
        failing += len(expected)
    assert failing > 1_000  # the comparison covered many failing rows, not just clean ones


def test_bulk_reading_refuses_an_expectation_it_cannot_read(monkeypatch):
    rules = validate.suite_rules(())
    frame = next(frame for _, frame in _canonical_frames())
    extra = validate.Rule("ExpectColumnValuesToMatchRegex", {"reason": "odd"}, column="time_precision",
                          regex="^exact$")
    monkeypatch.setattr(validate, "suite_rules", lambda extent: (*rules, extra))
    with pytest.raises(NotImplementedError, match="ExpectColumnValuesToMatchRegex"):
        validate.bulk_validate(frame)


@pytest.mark.parametrize("extent", [(), (("latitude", 49.0, 61.0), ("longitude", -8.0, 2.0))])
def test_the_great_expectations_suite_is_exactly_the_rules_bulk_reads(extent):
    rules = validate.suite_rules(extent)
    expectations = validate.expectation_suite(extent).expectations
    assert len(expectations) == len(rules)
    for expectation, rule in zip(expectations, rules):
        assert type(expectation).__name__ == rule.kind
        assert expectation.meta == rule.meta
        for name, value in rule.kwargs.items():
            assert getattr(expectation, name) == value, (rule.kind, name)


def test_validate_uses_great_expectations_up_to_the_limit_and_bulk_above(monkeypatch):
    frame = _broken_on_purpose(next(frame for name, frame in _canonical_frames() if name.startswith("coordinates")))
    used: list[str] = []
    monkeypatch.setattr(validate, "gx_validate", lambda f, e=None: used.append("gx") or {})
    monkeypatch.setattr(validate, "bulk_validate", lambda f, e=None: used.append("bulk") or {})
    monkeypatch.setattr(validate, "GX_MAX_ROWS", len(frame))
    validate.validate(frame)
    monkeypatch.setattr(validate, "GX_MAX_ROWS", len(frame) - 1)
    validate.validate(frame)
    assert used == ["gx", "bulk"]


def test_bulk_reading_runs_in_a_fresh_process_where_great_expectations_never_ran():
    # A large delivery may be the first thing a worker validates: the suite must build without a prior GX run.
    import subprocess
    import sys

    code = (
        "from tests.test_validate_bulk import _canonical_frames, _broken_on_purpose\n"
        "from pipelines import validate\n"
        "name, frame = next(_canonical_frames())\n"
        "print(len(validate.bulk_validate(_broken_on_purpose(frame))))\n"
        "import sys\n"
        "print('great_expectations' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    *_, found, imported = done.stdout.strip().splitlines()
    assert int(found) > 0
    assert imported == "False"  # the bulk reading needs no Great Expectations import (3-4 s)


def test_great_expectations_in_several_threads_gives_each_frame_its_own_reasons():
    """Ingest prepares files in several threads (jobs.PREPARING_THREADS): validations running at once must not
    see each other's rows. Without validate's lock, frames got another frame's results here."""
    from concurrent.futures import ThreadPoolExecutor

    frames = [checked for _, frame in _canonical_frames() for checked in (frame, _broken_on_purpose(frame))]
    expected = [validate.bulk_validate(frame) for frame in frames]
    assert sum(map(len, expected)) > 50  # broken rows among them: a swap would show
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            assert list(pool.map(validate.gx_validate, frames)) == expected
