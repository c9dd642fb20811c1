"""
### EST ingest: one DAG per partner, `est_ingest_<partner>`

One DAG per data contract in `schemas/partners/` (adding a partner is adding a contract file, not code).
Each runs when its asset `est://inbox/<partner>` gets an event, which `est_watch_inbox` emits when the
partner's drop folder holds files not yet in the ingest ledger; it can also be triggered by hand.

Steps: `prepare_reference` (areas, partners, intervention register: placing needs the areas) → `ingest`
(ledger, decode, validate against the contract, quarantine, pseudonymise, place, load, one receipt per file)
→ `aggregate` (rebuild the weekly counts). All three write the DuckDB warehouse, so all run in the one-slot
pool `est_duckdb_writer`. A file already in the ledger is never applied twice, so a retry or a second run is
harmless (RELIABILITY.md).

The pseudonymisation key (hex text) is read inside the task from the Airflow Variable
`est_pseudonym_key_secret` (masked in logs because its name contains "secret"). No key, no run: the task fails
at once, without retries, with the error of `pipelines.privacy.load_key`. XCom holds
counts only, never receipts' text or the key (PRIVACY.md).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from pipelines.airflow_local import DUCKDB_POOL, default_args, inbox_asset, partner_ids
from pipelines.settings import TIMEZONE


def build_ingest_dag(partner: str):
    @dag(
        dag_id=f"est_ingest_{partner}",
        schedule=[inbox_asset(partner)],
        start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
        catchup=False,
        max_active_runs=1,
        default_args=default_args(),
        tags=["est", "ingest", partner],
        doc_md=f"{__doc__}\n\nThis DAG: partner **{partner}**, drop folder `inbox/{partner}/`.",
    )
    def ingest_partner():
        @task(pool=DUCKDB_POOL)
        def prepare_reference() -> None:
            from pipelines import airflow_local, jobs

            jobs.prepare_reference(airflow_local.run_home())

        @task(pool=DUCKDB_POOL)
        def ingest() -> dict[str, int]:
            from pipelines import airflow_local, jobs

            receipts = jobs.ingest_inbox(airflow_local.run_home(), partner, airflow_local.pseudonym_key())
            return airflow_local.summarise_receipts(receipts)

        @task(pool=DUCKDB_POOL)
        def aggregate() -> None:
            from pipelines import airflow_local, jobs

            jobs.aggregate(airflow_local.run_home())

        prepare_reference() >> ingest() >> aggregate()

    return ingest_partner()


for _partner in partner_ids():
    globals()[f"est_ingest_{_partner}"] = build_ingest_dag(_partner)
