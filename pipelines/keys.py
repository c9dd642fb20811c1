"""`est keys rotate`: re-key the retained person-level rows under a new pseudonym key, in one transaction.

Why rotation is a chain (PRIVACY.md, "Keys and pseudonyms": a key id next to each pseudonym so that rotation
is possible). A pseudonym is HMAC(domain key, canonical identifier), and HMAC is one-way: from a stored
pseudonym nobody, not even the key holder, gets the identifier back. The original identifiers are not stored
(that is the point), and the raw files they came from are deleted after the retention period
(pipelines/retention.py), so "re-ingest from raw files" cannot re-key the rows that matter most, the old ones.
What can be computed for every stored pseudonym p is HMAC(new domain key, p). So rotation

1. checks the old key: every row's ``key_id`` must be the old chain's (a wrong old key is refused: it would
   silently split every person into two);
2. replaces, in one transaction, each ``partner_record_id`` (domain "record") and each element of ``persons``
   (domain "analysis") by HMAC(new domain key, old pseudonym), sets ``key_id`` to the new chain's, and writes
   an audit entry (key ids and counts only);
3. from then on the secret holds the chain, current key first: ``<new hex>,<old hex>``. Ingest derives
   HMAC(new, HMAC(old, identifier)) (privacy.MasterKey, privacy.ChainedDomainKey), which is exactly what the
   rotated rows hold, so a new delivery of a retained record upserts onto its rotated row, and counts of
   distinct persons are unchanged.

What it buys: the stored pseudonyms can no longer be reversed with the old key alone (a leaked old secret, an old
backup of it): whoever wants to test a personnummer against the database now needs every key of the chain.
What it does not: the old key stays in the secret store as part of the chain (without it, new deliveries could
not be matched to retained rows). To drop a key completely, let the retention period pass and start a new
installation key; person-level values older than the period are gone by then anyway.

Pseudonyms are stored nowhere else: weekly_counts, quarantine, the ledger and the audit log hold none, and a
partner export is re-derived from the rows at export time (pipelines/audiences.py).
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from pipelines import privacy, warehouse
from pipelines.ingest import ANALYSIS_DOMAIN, RECORD_DOMAIN
from pipelines.settings import Home

NEW_KEY_ENV_VAR = "EST_PSEUDONYM_KEY_NEW"
AUDIT_ACTION = "keys_rotate"


class RotationRefused(RuntimeError):
    """The rotation cannot be done as asked; nothing was changed."""


@dataclass(frozen=True)
class Rotation:
    old_key_id: str
    new_key_id: str
    incidents: int
    persons: int


def chain_key_id(master: bytes) -> str:
    """The key id stored with pseudonyms made under ``master`` (the analysis domain's, as ingest stores)."""
    return privacy.derive_key(master, ANALYSIS_DOMAIN).key_id


def rotate(home: Home, old: bytes, new: bytes) -> Rotation:
    """Re-key every retained pseudonym from the chain ``old`` to ``new`` prepended to it, in one transaction.

    ``old`` is the current master key (a privacy.MasterKey, possibly a chain); ``new`` the new key's bytes.
    Returns what was done; raises RotationRefused (nothing changed) when the old key is not the one the rows
    were made with, or when the new key is one of the chain's.
    """
    previous = (bytes(old),) + tuple(getattr(old, "previous", ()))
    if any(privacy.hmac.compare_digest(bytes(new), k) for k in previous):
        raise RotationRefused("the new key is already in the chain: draw a new random key")
    if len(new) < privacy.MIN_KEY_BYTES:
        raise RotationRefused(f"the new key is shorter than {privacy.MIN_KEY_BYTES} bytes")
    chained = privacy.MasterKey(bytes(new), previous=previous)
    old_id, new_id = chain_key_id(old), chain_key_id(chained)
    record_key = privacy.derive_key(bytes(new), RECORD_DOMAIN)  # one more HMAC layer over the old pseudonym
    person_key = privacy.derive_key(bytes(new), ANALYSIS_DOMAIN)

    with closing(warehouse.connect(home)) as con, warehouse.transaction(con):
        ids = {row[0] for row in
               con.execute("SELECT DISTINCT key_id FROM incidents WHERE key_id IS NOT NULL").fetchall()}
        if ids - {old_id}:
            raise RotationRefused(
                f"rows carry key id(s) {sorted(ids - {old_id})} but the old key given has key id {old_id}: give "
                "the key (chain) the rows were made with; nothing was changed")
        rows = con.execute("SELECT partner, pseudonym_text(partner_record_id) AS partner_record_id, persons "
                           "FROM incidents").df()
        if len(rows):
            rows["new_record_id"] = privacy.pseudonymise(rows["partner_record_id"].astype(object), record_key)
            flat = rows["persons"].explode()
            flat = flat[flat.notna()]
            keyed = privacy.pseudonymise(flat.astype(object), person_key) if len(flat) else flat
            grouped = keyed.groupby(level=0).agg(list) if len(flat) else pd.Series(dtype=object)
            rows["new_persons"] = [
                None if persons is None or not hasattr(persons, "__len__") else list(grouped.get(i, []))
                for i, persons in zip(rows.index, rows["persons"])
            ]
            mapping = pa.table({
                "partner": pa.array(rows["partner"].astype(object), pa.string()),
                "old_id": pa.array(rows["partner_record_id"], pa.string()),
                "new_id": pa.array(rows["new_record_id"], pa.string()),
                "new_persons": pa.array(rows["new_persons"], pa.list_(pa.string())),
            })
            warehouse.OpenVocabularies(con).widen(con, {"key_id": [new_id]})  # key_id is an ENUM (warehouse.py)
            con.register("rotation_mapping", mapping)
            try:
                for statement in _statements(warehouse.sql_text("keys_rotate")):
                    con.execute(statement, {"new_key_id": new_id} if "$new_key_id" in statement else None)
            finally:
                con.unregister("rotation_mapping")
            after = con.execute("SELECT count(*) FROM incidents").fetchone()[0]
            if after != len(rows):
                raise RotationRefused(f"re-keying would change the number of incidents ({len(rows)} -> {after})")
        persons = int(con.execute("SELECT coalesce(sum(len(persons)), 0) FROM incidents").fetchone()[0])
        result = Rotation(old_id, new_id, len(rows), persons)
        warehouse.audit(con, AUDIT_ACTION, "incidents", detail={
            "old_key_id": old_id, "new_key_id": new_id, "incidents": result.incidents, "persons": persons,
            "domains": [RECORD_DOMAIN, ANALYSIS_DOMAIN]})
    return result


def _statements(text: str) -> list[str]:
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [part.strip() for part in body.split(";") if part.strip()]
