"""
### EST quarterly analysis pack (kvartalsanalys)

On the first day of each quarter at 07:00 Europe/Stockholm this DAG renders the analysis pack for the quarter
that **just ended** (the run on 2026-04-01 renders 2026Q1): maps (rates, change, interventions), hot spots,
near repeats and the intervention follow-up for the quarterly analysis meeting, with static PNGs, the CSV tables
and an index page (`index.html`), into `out/quarterly/<quarter>/` in the home (`pipelines/quarterly_pack.py`).

Steps: `prepare_reference` → `aggregate` → `render_quarterly`, each in the one-slot pool `est_duckdb_writer`
because each opens the DuckDB warehouse.

**Backfill or re-render a quarter:** trigger with config `{"quarter": "2025Q4"}`.

The home is the `EST_HOME` of the running task. Code: `pipelines/jobs.py`; design: DESIGN.md sections 3 and 6.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task
from dateutil.relativedelta import relativedelta

from pipelines.airflow_local import DUCKDB_POOL, default_args
from pipelines.settings import TIMEZONE


@dag(
    dag_id="est_quarterly_pack",
    schedule=CronTriggerTimetable("0 7 1 1,4,7,10 *", timezone=TIMEZONE, interval=relativedelta(months=3)),
    start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    params={
        "quarter": Param(
            None,
            type=["null", "string"],
            pattern=r"^\d{4}Q[1-4]$",
            description="Quarter to render, e.g. 2026Q1. Empty: the quarter that ended before the run.",
        )
    },
    tags=["est", "report", "quarterly"],
    doc_md=__doc__,
)
def est_quarterly_pack():
    @task(pool=DUCKDB_POOL)
    def prepare_reference() -> None:
        from pipelines import airflow_local, jobs

        jobs.prepare_reference(airflow_local.run_home())

    @task(pool=DUCKDB_POOL)
    def aggregate() -> None:
        from pipelines import airflow_local, jobs

        jobs.aggregate(airflow_local.run_home())

    @task(pool=DUCKDB_POOL)
    def render_quarterly() -> list[str]:
        from pipelines import airflow_local, jobs

        home = airflow_local.run_home()
        files = jobs.render_quarterly(home, airflow_local.quarter_to_render(get_current_context()))
        return airflow_local.relative_names(home, files)

    prepare_reference() >> aggregate() >> render_quarterly()


est_quarterly_pack()
