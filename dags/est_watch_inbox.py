"""
### EST inbox watch: partner deliveries become asset events

Every 5 minutes this DAG looks in each partner's drop folder (`inbox/<partner>/` in the home) for files whose
content is not yet in the ingest ledger, and emits one event on the asset `est://inbox/<partner>` for each
partner that has any. Each asset schedules that partner's `est_ingest_<partner>` DAG, so a delivery starts its
ingest within minutes, and a partner with nothing new starts nothing.

Why a polling DAG rather than an `AssetWatcher`: in Airflow 3.3 the file triggers that an `AssetWatcher` can
use (`FileDeleteTrigger`, `DirectoryFileDeleteTrigger`) delete the file they found, and `FileTrigger` cannot
drive a watcher at all; a delivery must stay in the inbox until the ingest has recorded it. A trigger's path is
also fixed when the DAG is parsed, while the home is only known when a task runs. And the ledger, not a file's
presence, says what is new: a re-delivered identical file is not new, a changed one is.

The check opens the DuckDB warehouse (DuckDB refuses a reader while another process writes), so it runs in the
pool `est_duckdb_writer`. The events carry counts only, never file names (a partner's file name can carry a
personal value).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import AssetAlias, CronTriggerTimetable, dag, get_current_context, task

from pipelines.airflow_local import DUCKDB_POOL, default_args
from pipelines.settings import TIMEZONE

DELIVERIES = AssetAlias("est_partner_deliveries")


@dag(
    dag_id="est_watch_inbox",
    schedule=CronTriggerTimetable("*/5 * * * *", timezone=TIMEZONE),
    start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["est", "ingest"],
    doc_md=__doc__,
)
def est_watch_inbox():
    @task(pool=DUCKDB_POOL, outlets=[DELIVERIES])
    def find_deliveries() -> dict[str, int]:
        from pipelines import airflow_local

        return airflow_local.announce_deliveries(get_current_context()["outlet_events"][DELIVERIES])

    find_deliveries()


est_watch_inbox()
