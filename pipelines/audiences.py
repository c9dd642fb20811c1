"""Who sees what: every output declares its audience and gets exactly the detail that audience may see
(PRIVACY.md; DESIGN.md section 1, "Users"; issue 4 item 5).

| audience | what it may see |
| --- | --- |
| ``public`` | aggregates per DeSO area (or a merge) and category, primary and secondary suppression, no grid cells |
| ``weekly_recipients`` | the weekly report: aggregates only (it becomes a public record), same suppression as public |
| ``analysis_meeting`` | aggregates, plus grid-cell hot spots, with the same suppression on every cell |
| ``partner:<id>`` | that partner's own rows (no free text, pseudonyms re-keyed into ``export:<id>``) and shared aggregates |

No audience ever gets free text, exact coordinates, a personnummer or an analysis pseudonym. Thresholds are the
privacy module's constants: one place knows them (STYLE.md, practice 5).
"""

from __future__ import annotations

import hashlib
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from pipelines import privacy, warehouse
from pipelines.publish import write_atomic
from pipelines.settings import Home


@dataclass(frozen=True)
class Audience:
    name: str
    description: str
    own_rows: bool  # person-level rows of its own delivery (a partner), never anyone else's
    grid_cells: bool  # 250 m grid cells (hot spots) besides DeSO areas
    threshold: int  # primary suppression: 1..threshold-1 shown as "<threshold"
    sensitive_threshold: int  # for cells fed by social services, schools or home care
    secondary_suppression: bool
    free_text: bool = False  # never, for anyone: PRIVACY.md "Free text"
    pseudonym_domain: str | None = None  # the only pseudonyms it may see


_SHARED = dict(threshold=privacy.PRIMARY_THRESHOLD, sensitive_threshold=privacy.SENSITIVE_THRESHOLD,
               secondary_suppression=True)

AUDIENCES: dict[str, Audience] = {
    "public": Audience("public", "Anyone: open data, anything handed out.", own_rows=False, grid_cells=False,
                       **_SHARED),
    "weekly_recipients": Audience(
        "weekly_recipients", "Politicians and department heads: the weekly report, a public record once sent.",
        own_rows=False, grid_cells=False, **_SHARED),
    "analysis_meeting": Audience(
        "analysis_meeting", "The quarterly analysis meeting: maps, hot spots on grid cells, follow-up.",
        own_rows=False, grid_cells=True, **_SHARED),
}

# Which audience each output is for. A new output must be added here (tests/test_audit_outputs.py checks it).
OUTPUTS = {
    "weekly_report": "weekly_recipients",
    "quarterly_map": "analysis_meeting",
    "open_data": "public",
    "receipt": "partner",
    "partner_export": "partner",
}


def partner_audience(partner: str) -> Audience:
    from pipelines.contracts import load_contracts

    if partner not in load_contracts():
        raise ValueError(f"no partner {partner!r}: an audience 'partner:<id>' needs a contract in schemas/partners/")
    return Audience(f"partner:{partner}", f"The partner {partner}: its own rows and shared aggregates.",
                    own_rows=True, grid_cells=False, pseudonym_domain=export_domain(partner), **_SHARED)


# Other spellings used by callers (the weekly report passes audience="recipients").
ALIASES = {"recipients": "weekly_recipients"}


def audience(name: str) -> Audience:
    """The audience called ``name``: one of AUDIENCES (or an alias), or ``partner:<id>``."""
    name = ALIASES.get(name, name)
    if name.startswith("partner:"):
        return partner_audience(name.split(":", 1)[1])
    if name not in AUDIENCES:
        raise ValueError(f"unknown audience {name!r} (known: {', '.join(AUDIENCES)}, partner:<id>)")
    return AUDIENCES[name]


def export_domain(partner: str) -> str:
    """The partner's own pseudonym domain: its export can be joined with nothing else (PRIVACY.md)."""
    return f"export:{partner.replace('_', '-')}"


# --------------------------------------------------------------------------------------------------------------
# The partner export
# --------------------------------------------------------------------------------------------------------------

OWN_COLUMNS = ["record", "revision", "iso_week", "occurred_date", "category", "place_type", "area_code",
               "location_precision", "persons"]


def _own_rows(con, partner: str, master: bytes) -> pd.DataFrame:
    rows = con.execute(
        "SELECT partner_record_id, revision, iso_week, CAST(timezone('Europe/Stockholm', occurred_from) AS DATE) "
        "AS occurred_date, category, place_type, area_code, location_precision, persons FROM incidents "
        "WHERE partner = ? ORDER BY iso_week, partner_record_id", [partner]).df()
    key = privacy.derive_key(master, export_domain(partner))
    # HMAC of the stored pseudonym under the partner's export key: the identifiers themselves are not stored,
    # and the analysis/record pseudonyms never leave. The same record gets the same export pseudonym each time.
    record = privacy.pseudonymise(rows["partner_record_id"].astype(object), key)
    persons = []
    for value in rows["persons"]:
        if value is None or not hasattr(value, "__len__") or len(value) == 0:
            persons.append("")
        else:
            persons.append(" ".join(key.hmac_hex(("person:" + p).encode()) for p in value))
    out = rows.drop(columns=["partner_record_id", "persons"]).assign(record=record, persons=persons)
    out["area_code"] = out["area_code"].fillna("unplaced")
    return out[OWN_COLUMNS]


def _shared_aggregates(con, partner: str) -> pd.DataFrame:
    """Counts per ISO week x area x category over all partners, suppressed. A cell is also hidden when the
    other partners' part (the total minus the partner's own, which it knows) is 1..threshold-1: otherwise the
    partner could subtract its own rows and learn a small count of the others."""
    cells = con.execute(
        "SELECT w.iso_week, w.area_code, w.category, sum(w.n) AS n, "
        "sum(CASE WHEN w.partner = ? THEN w.n ELSE 0 END) AS own, "
        "bool_or(coalesce(p.sensitive, TRUE)) AS sensitive "
        "FROM weekly_counts w LEFT JOIN partners p ON p.partner = w.partner GROUP BY ALL ORDER BY ALL",
        [partner]).df()
    thresholds = [privacy.threshold_for(bool(s)) for s in cells["sensitive"]]
    display = cells["n"].astype("int64").astype(str).to_numpy(dtype=object)
    for i, (n, own, t) in enumerate(zip(cells["n"], cells["own"], thresholds)):
        others = int(n) - int(own)
        if 0 < int(n) < t:
            display[i] = privacy.suppressed_label(t)
        elif 0 < others < t:
            display[i] = privacy.HIDDEN_LABEL
    return pd.DataFrame({"iso_week": cells["iso_week"], "area_code": cells["area_code"],
                         "category": cells["category"], "n": display})


def export_partner(home: Home, partner: str, master: bytes, at: datetime | None = None) -> list[Path]:
    """Write the partner's export (own rows, shared aggregates) under out/exports/<partner>/ and log it.

    Audience ``partner:<partner>``; an audit entry says what, for whom, when and from which data (delivery ids
    as a digest and a count)."""
    target = partner_audience(partner)
    at = at or datetime.now(timezone.utc)
    folder = home.out / "exports" / partner
    with closing(warehouse.connect(home)) as con:
        own = _own_rows(con, partner, master)
        shared = _shared_aggregates(con, partner)
        deliveries = sorted(r[0] for r in con.execute(
            "SELECT delivery_id FROM ingest_ledger WHERE partner = ? AND status = 'accepted'", [partner]).fetchall())
        stamp = at.strftime("%Y%m%d")
        paths = [
            write_atomic(folder / f"export_{partner}_{stamp}_egna_rader.csv",
                         privacy.neutralise_csv_cells(own).to_csv(index=False, lineterminator="\n")),
            write_atomic(folder / f"export_{partner}_{stamp}_gemensamt.csv",
                         privacy.neutralise_csv_cells(shared).to_csv(index=False, lineterminator="\n")),
        ]
        with warehouse.transaction(con):
            warehouse.audit(con, "export", ", ".join(p.name for p in paths), audience=target.name, at=at, detail={
                "partner": partner, "own_rows": len(own), "shared_cells": len(shared),
                "weeks": [own["iso_week"].min(), own["iso_week"].max()] if len(own) else [],
                "deliveries": len(deliveries),
                "deliveries_sha256": hashlib.sha256("\n".join(deliveries).encode()).hexdigest(),
                "pseudonym_domain": target.pseudonym_domain,
            })
    return paths
