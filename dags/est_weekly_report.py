"""
### EST weekly report (veckorapport)

Every Monday at 06:00 Europe/Stockholm this DAG renders the weekly situational report for the ISO week that
**just ended** (the run on Monday 2026-01-05 renders 2026-W01, Monday 29 December to Sunday 4 January).

Steps: `prepare_reference` (areas, categories, intervention register) → `aggregate` (weekly counts and
baselines) → `render_weekly` (HTML, PDF and CSV into `out/weekly/<week>/` in the home). Every step opens the
DuckDB warehouse, so each runs in the one-slot pool `est_duckdb_writer`.

**Backfill or re-render a week:** trigger with config `{"iso_week": "2026-W05"}`. Re-running a week gives the
same report (RELIABILITY.md).

The home is the `EST_HOME` of the running task. Code: `pipelines/jobs.py`; design: DESIGN.md sections 3 and 6.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

from pipelines.airflow_local import DUCKDB_POOL, default_args
from pipelines.settings import TIMEZONE


@dag(
    dag_id="est_weekly_report",
    schedule=CronTriggerTimetable("0 6 * * 1", timezone=TIMEZONE, interval=timedelta(weeks=1)),
    start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    params={
        "iso_week": Param(
            None,
            type=["null", "string"],
            pattern=r"^\d{4}-W\d{2}$",
            description="ISO week to render, e.g. 2026-W05. Empty: the week that ended before the run.",
        )
    },
    tags=["est", "report", "weekly"],
    doc_md=__doc__,
)
def est_weekly_report():
    @task(pool=DUCKDB_POOL)
    def prepare_reference() -> None:
        from pipelines import airflow_local, jobs

        jobs.prepare_reference(airflow_local.run_home())

    @task(pool=DUCKDB_POOL)
    def aggregate() -> None:
        from pipelines import airflow_local, jobs

        jobs.aggregate(airflow_local.run_home())

    @task(pool=DUCKDB_POOL)
    def render_weekly() -> list[str]:
        from pipelines import airflow_local, jobs

        home = airflow_local.run_home()
        files = jobs.render_weekly(home, airflow_local.week_to_render(get_current_context()))
        return airflow_local.relative_names(home, files)

    prepare_reference() >> aggregate() >> render_weekly()


est_weekly_report()
