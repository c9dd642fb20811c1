"""
### EST ingest: one DAG per partner, `est_ingest_<partner>`

One DAG per data contract in `schemas/partners/` (adding a partner is adding a contract file, not code).
Each runs when its asset `est://inbox/<partner>` gets an event, which `est_watch_inbox` emits when the
partner's drop folder holds files not yet in the ingest ledger; it can also be triggered by hand.

Steps: `ingest` (the reference data first: areas, partners, intervention register, installed again only when
a source changed, as placing needs the areas; then ledger, decode, validate against the contract, quarantine,
pseudonymise, place, load, one receipt per file) → `aggregate` (rebuild the weekly counts). Both write the
DuckDB warehouse, so both run in the one-slot pool `est_duckdb_writer`. The reference step is not a task of
its own: it is a fingerprint check when nothing changed, and each task costs a process under a scheduler. A
file already in the ledger is never applied twice, so a retry or a second run is harmless (RELIABILITY.md).

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
        def ingest() -> dict[str, int]:
            from pipelines import airflow_local, jobs

            home, key = airflow_local.run_home(), airflow_local.pseudonym_key()
            jobs.prepare_reference(home)
            receipts = jobs.ingest_inbox(home, partner, key)
            return airflow_local.summarise_receipts(receipts)

        @task(pool=DUCKDB_POOL)
        def aggregate() -> None:
            from pipelines import airflow_local, jobs

            jobs.aggregate(airflow_local.run_home())

        ingest() >> aggregate()

    return ingest_partner()


for _partner in partner_ids():
    globals()[f"est_ingest_{_partner}"] = build_ingest_dag(_partner)
