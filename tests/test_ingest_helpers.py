"""Helpers (no tests) for the tests/test_ingest_*.py tier: a prepared home, one-file ingest, fingerprints."""

from __future__ import annotations

import hashlib
from contextlib import closing
from pathlib import Path

import yaml

from pipelines import warehouse
from pipelines.contracts import Contract, load_contract_file, parse_contract
from pipelines.ingest import ingest_file
from pipelines.jobs import placing_context
from pipelines.settings import Home

FIXTURES = Path(__file__).parent / "fixtures"
INGEST_FIXTURES = FIXTURES / "ingest"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
KEY = bytes.fromhex("00" * 16 + "ff" * 16)  # obviously fake


def fixture_contract(**overrides) -> Contract:
    """The fixture partner's contract (tests/fixtures/ingest/fixture_csv.yaml), optionally changed."""
    path = INGEST_FIXTURES / "fixture_csv.yaml"
    if not overrides:
        return load_contract_file(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw.update(overrides)
    return parse_contract(raw, path)


def contract_with(path: Path, **overrides) -> Contract:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in overrides.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    return parse_contract(raw, path)


def ingest(home: Home, contract: Contract, path: Path):
    with closing(warehouse.connect(home)) as con:
        return ingest_file(con, home, contract, path, KEY, placing_context(con, home))


def query(home: Home, sql: str, params=None):
    with closing(warehouse.connect(home, read_only=True)) as con:
        return con.execute(sql, params or []).fetchall()


def fingerprint(home: Home, tables=("incidents", "weekly_counts")) -> str:
    digest = hashlib.sha256()
    with closing(warehouse.connect(home, read_only=True)) as con:
        for table in tables:
            digest.update(repr(con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()).encode())
    return digest.hexdigest()
