"""Fixtures shared by the test tiers."""

from __future__ import annotations

import pytest

from pipelines.settings import Home

TEST_KEY = bytes.fromhex("00" * 16 + "ff" * 16)  # obviously fake; 32 bytes
GENERATED_LAST_WEEK = "2026-W10"
GENERATED_QUARTER = "2026Q1"


@pytest.fixture(scope="session")
def generated_home(tmp_path_factory) -> Home:
    """Four generated weeks through every stage (no Airflow), with the week's report and the quarter's map."""
    from pipelines import generate, jobs
    from pipelines.contracts import load_contracts

    home = Home(tmp_path_factory.mktemp("generated")).ensure()
    generate.generate(home, weeks=4, last_week=GENERATED_LAST_WEEK)
    jobs.prepare_reference(home)
    for partner in load_contracts():
        jobs.ingest_inbox(home, partner, TEST_KEY)
    jobs.aggregate(home)
    jobs.render_weekly(home, GENERATED_LAST_WEEK)
    jobs.render_quarterly(home, GENERATED_QUARTER)
    return home


SEASON_LAST_WEEK = "2026-W47"  # the generator's planted truths (work/generator_truth.json) sit in these 26 weeks


@pytest.fixture(scope="session")
def generated_season(tmp_path_factory) -> Home:
    """26 generated weeks (2026-W22 to W47) ingested and aggregated, no reports: for the analysis tests."""
    from pipelines import generate, jobs
    from pipelines.contracts import load_contracts

    home = Home(tmp_path_factory.mktemp("season")).ensure()
    generate.generate(home, weeks=26, last_week=SEASON_LAST_WEEK)
    jobs.prepare_reference(home)
    for partner in load_contracts():
        jobs.ingest_inbox(home, partner, TEST_KEY)
    jobs.aggregate(home)
    return home
