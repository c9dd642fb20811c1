"""
### EST retention (gallring)

Every night at 03:30 Europe/Stockholm this DAG deletes what is older than the retention period
(`EST_RETENTION_DAYS`, default 395 days): raw delivered files in the inbox, the person-level values of old
incidents (pseudonyms and scrubbed free text) and old quarantine rows. Aggregates (`weekly_counts`) stay. Every
deletion is written to the audit log as `gallring`, with counts. Running it again deletes nothing more.

The step opens the DuckDB warehouse for writing, so it runs in the one-slot pool `est_duckdb_writer`.
Code: `pipelines/retention.py`; rule: PRIVACY.md, "Keeping and deleting".
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronTriggerTimetable, dag, task

from pipelines.airflow_local import DUCKDB_POOL, default_args
from pipelines.settings import TIMEZONE


@dag(
    dag_id="est_retention",
    schedule=CronTriggerTimetable("30 3 * * *", timezone=TIMEZONE),
    start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["est", "privacy", "retention"],
    doc_md=__doc__,
)
def est_retention():
    @task(pool=DUCKDB_POOL)
    def delete_expired() -> dict[str, int]:
        from pipelines import airflow_local, retention

        result = retention.run_retention(airflow_local.run_home())
        # Counts only: safe for XCom and logs.
        return {"files_deleted": result.files_deleted, "incidents_cleared": result.incidents_cleared,
                "quarantine_deleted": result.quarantine_deleted}

    delete_expired()


est_retention()
