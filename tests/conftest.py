"""Fixtures shared by the test tiers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipelines.settings import Home

TEST_KEY = bytes.fromhex("00" * 16 + "ff" * 16)  # obviously fake; 32 bytes
GENERATED_LAST_WEEK = "2026-W10"
GENERATED_QUARTER = "2026Q1"
SEASON_LAST_WEEK = "2026-W47"  # the generator's planted truths (work/generator_truth.json) sit in these 26 weeks
PACK_QUARTER = "2026Q4"  # the season's quarterly pack: weeks W40-W53, data up to W47


def ingested_home(root: Path, weeks: int, last_week: str) -> Home:
    """Generated deliveries for `weeks` weeks through every stage up to the weekly counts (no Airflow)."""
    from pipelines import generate, jobs
    from pipelines.contracts import load_contracts

    home = Home(root).ensure()
    generate.generate(home, weeks=weeks, last_week=last_week)
    jobs.prepare_reference(home)
    for partner in load_contracts():
        jobs.ingest_inbox(home, partner, TEST_KEY)
    jobs.aggregate(home)
    return home


@pytest.fixture(scope="session")
def generated_home(tmp_path_factory) -> Home:
    """Four generated weeks with the last week's report and the quarter's map rendered."""
    from pipelines import jobs

    home = ingested_home(tmp_path_factory.mktemp("generated"), 4, GENERATED_LAST_WEEK)
    jobs.render_weekly(home, GENERATED_LAST_WEEK)
    jobs.render_quarterly(home, GENERATED_QUARTER)
    return home


@pytest.fixture(scope="session")
def generated_season(tmp_path_factory) -> Home:
    """26 generated weeks (2026-W22 to W47) ingested and aggregated, no reports: for the analysis tests."""
    return ingested_home(tmp_path_factory.mktemp("season"), 26, SEASON_LAST_WEEK)


@pytest.fixture(scope="session")
def season_pack(generated_season) -> tuple[list[Path], float]:
    """The season's quarterly pack for PACK_QUARTER, rendered once through the job the quarterly DAG runs, and
    the seconds it took: rendering it takes about half a minute here, and the pack tests and the browser test
    read the same files."""
    from pipelines import jobs

    started = time.perf_counter()
    files = jobs.render_quarterly(generated_season, PACK_QUARTER)
    return files, time.perf_counter() - started
