"""Placing free text by a gazetteer of district names (schemas/gazetteer_<municipality>.yaml).

The polisen.se feed gives only the municipality's centre; the district is in the text ("Bråk i Vivalla").
Where the text names exactly one district of the gazetteer, the event is placed in that district's
representative area with location_precision 'gazetteer' (the district, not a point). Matching is in bulk
(one regular expression over the column), on whole words, longest name first ("Nya Hjärsta" before
"Hjärsta", "Sörbyängen" before "Sörby"). Text naming two different districts is left unplaced by the
gazetteer: it cannot say which.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pandas as pd
import yaml

from pipelines.settings import SCHEMAS_DIR


@lru_cache(maxsize=4)
def load_gazetteer(name: str) -> dict[str, str]:
    """{place name: representative area code} from schemas/<name>."""
    path = Path(name) if Path(name).is_absolute() else SCHEMAS_DIR / name
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {str(place): str(codes[0]) for place, codes in (raw.get("places") or {}).items()}


def match_areas(text: pd.Series, places: dict[str, str]) -> pd.Series:
    """The area code of the one district each text names, else NA (no name, or names of two districts)."""
    names = sorted(places, key=len, reverse=True)
    pattern = r"(?<!\w)(" + "|".join(re.escape(n) for n in names) + r")(?!\w)"
    text = text.astype("string").fillna("")
    found = text.str.extractall(pattern)[0].map(places)
    if found.empty:
        return pd.Series(pd.NA, index=text.index, dtype="string")
    per_row = found.groupby(level=0).agg(lambda codes: codes.iloc[0] if codes.nunique() == 1 else pd.NA)
    return per_row.reindex(text.index).astype("string")
