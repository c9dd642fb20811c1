"""Realistic partner deliveries for Örebro kommun, generated: the demo's input and the tests' known truth.

``generate(home)`` writes one file per partner and ISO week into ``inbox/<partner>/``, each in that partner's
own native format (DESIGN.md section 5): the polisen.se events JSON, the police case export (CSV, SWEREF 99
TM), the housing company's Windows-1252 semicolon CSV with decimal commas and property ids, the schools'
Excel incident and near-miss (tillbud) report, and the delivery template (``schemas/delivery_template.md``)
from social services, home care and the security guards, with valid personnummer and Swedish free text that
carries the personal details a scrubber must remove. It also writes the municipality's reference files: the
address register and the intervention register.

Why generated and not real: real partner rows are personal data under secrecy (PRIVACY.md); the real files
the project has (polisen.se events, SCB's DeSO codes and populations) set the formats, vocabularies and
volumes the generator imitates.

The truth the analysis must find later is planted on purpose and written to ``work/generator_truth.json``:
spatial hot spots, weekday/hour/season patterns, one unusual week, one intervention with a known effect,
and the rows that are deliberately broken (so quarantine has something real to show). Every row is also
listed, with its true area, in ``work/generator_rows.parquet`` so that end-to-end tests can check placing.

Determinism: everything comes from ``numpy.random.default_rng([seed, stream])`` streams, one per component,
so the same call writes byte-identical files (Excel's zip entries and document times are fixed too).
Vectorised: rows are drawn as Poisson counts on a (week x area x category) grid and expanded with
``numpy.repeat``; only the final text formatting touches single rows.

``generate_bench(home, rows)`` writes a few large files in three partners' formats for the load benchmark.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import shapely
import yaml

from pipelines import geography, settings
from pipelines.settings import Home

__all__ = [
    "DEFAULT_LAST_WEEK",
    "DEFAULT_SEED",
    "PARTNERS",
    "TEMPLATE_COLUMNS",
    "GeneratedSet",
    "generate",
    "generate_bench",
    "iso_weeks",
    "luhn_check_digit",
]

DEFAULT_LAST_WEEK = "2026-W47"
DEFAULT_SEED = 20261127
TZ = settings.TIMEZONE

#: Partner ids: contract file names in schemas/partners/ and drop folders inbox/<partner>/.
PARTNERS = ("police_events", "police_cases", "housing", "schools", "social_services", "home_care", "guards")

#: The delivery template's columns (schemas/delivery_template.csv, documented in delivery_template.md).
TEMPLATE_COLUMNS = (
    "record_id", "occurred_at", "occurred_to", "category", "place_type", "latitude", "longitude",
    "sweref99_n", "sweref99_e", "address", "area_code", "description", "person_id",
)

#: Taxonomy codes in the order of schemas/taxonomy.yaml (a test checks they agree).
CATEGORIES = (
    "property_damage", "littering", "graffiti", "threat_violence_staff", "drug_dealing", "robbery", "assault",
    "arson_fire", "youth_disturbance", "illegal_motor_traffic", "unsafe_place", "burglary", "theft",
    "vehicle_fire", "weapons", "shooting_explosion", "public_order", "other",
)
CAT = {code: i for i, code in enumerate(CATEGORIES)}
PLACE_TYPES = (
    "street", "park", "school", "stairwell", "parking", "shop", "public_transport", "residence", "square",
    "sports_ground", "other",
)
PT = {code: i for i, code in enumerate(PLACE_TYPES)}

# --------------------------------------------------------------------------------------------------------
# The planted truth (DESIGN.md section 6: what the quarterly analysis must find)
# --------------------------------------------------------------------------------------------------------

#: Spatial hot spots: a centre inside a central DeSO where a share of that area's incidents of the listed
#: categories is concentrated (normal scatter, HOT_SPOT_SD_M), on top of a raised rate there.
HOT_SPOTS = (
    ("1880C1590", "Vivalla centrum",
     ("drug_dealing", "youth_disturbance", "property_damage", "arson_fire", "robbery", "vehicle_fire")),
    ("1880C1490", "Varberga torg", ("drug_dealing", "youth_disturbance", "robbery", "assault", "property_damage")),
    ("1880C1350", "Järntorget", ("assault", "public_order", "theft", "robbery", "drug_dealing")),
)
HOT_SPOT_SHARE = 0.6
HOT_SPOT_SD_M = 60.0
HOT_SPOT_RATE = 1.6
HOT_SPOT_NEAREST_ADDRESSES = 12

#: One unusual week: a burst of vehicle fires in one area, week N-8.
UNUSUAL = {"area_code": "1880C1080", "category": "vehicle_fire", "weeks_before_last": 8, "multiplier": 4.0}
#: Vehicle fires are concentrated where the burst happens, so that its baseline is not near zero.
UNUSUAL_AREA_BASE_BOOST = 9.0

#: The intervention with a known effect (the others in the register have none).
INTERVENTION = {
    "id": "INS-2026-014",
    "title": "Trygghetsvandringar och förbättrad belysning i Baronbackarna",
    "area_code": "1880C1540",
    "kind": "situational_prevention",
    "responsible_partner": "housing",
    "weeks_before_last": 12,
    "categories": ["property_damage", "unsafe_place"],
    "multiplier": 0.6,
}
INTERVENTION_AREA_BASE_BOOST = 2.8
COMPARISON_AREAS = ("1880C1050", "1880C1530", "1880C1570", "1880C1630")

VULNERABLE = ("1880C1570", "1880C1590", "1880C1600", "1880C1630", "1880C1390", "1880C1490", "1880C1530",
              "1880C1540", "1880C1050", "1880C1080")
CITY = ("1880C1290", "1880C1350", "1880C1360")
SUBURB_CATEGORIES = ("property_damage", "graffiti", "youth_disturbance", "drug_dealing", "arson_fire",
                     "vehicle_fire", "shooting_explosion", "unsafe_place", "littering", "robbery", "weapons",
                     "illegal_motor_traffic", "threat_violence_staff")
CITY_CATEGORIES = ("assault", "public_order", "theft", "robbery", "drug_dealing", "graffiti", "weapons",
                   "littering")

#: Season: (amplitude, ISO week of the peak). Summer for outdoor disorder, the dark season for burglary and
#: places felt unsafe.
SEASON = {
    "youth_disturbance": (0.35, 28), "littering": (0.30, 28), "illegal_motor_traffic": (0.40, 26),
    "public_order": (0.15, 28), "assault": (0.10, 28), "graffiti": (0.10, 30), "drug_dealing": (0.10, 30),
    "burglary": (0.30, 50), "unsafe_place": (0.30, 50), "vehicle_fire": (0.15, 45), "robbery": (0.10, 50),
}
#: School holidays in Örebro (ISO weeks): summer, autumn (höstlov), Christmas, winter (sportlov).
SCHOOL_HOLIDAYS = {**{w: 0.15 for w in range(26, 33)}, 44: 0.4, 52: 0.15, 1: 0.15, 8: 0.4}

# --------------------------------------------------------------------------------------------------------
# Time patterns: 7 x 24 weights (Monday first), built from an hour curve and a weekday curve
# --------------------------------------------------------------------------------------------------------

_H_NIGHT = [3.0, 2.8, 2.4, 1.6, 0.8, 0.4, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.9, 1.0, 1.1, 1.2, 1.3, 1.5, 1.7,
            2.0, 2.3, 2.6, 2.9]
_H_EVENING = [1.6, 1.2, 0.9, 0.6, 0.4, 0.3, 0.3, 0.4, 0.5, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.3, 1.5, 1.8, 2.2, 2.5,
              2.7, 2.6, 2.3, 2.0]
_H_DAY = [0.15, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.8, 1.2, 1.5, 1.7, 1.8, 1.8, 1.8, 1.8, 1.8, 1.7, 1.5, 1.2, 0.9,
          0.7, 0.5, 0.35, 0.25]
_H_SCHOOL = [0, 0, 0, 0, 0, 0, 0.05, 0.6, 1.5, 1.8, 2.0, 2.0, 2.2, 1.8, 1.6, 1.2, 0.6, 0.2, 0.1, 0.1, 0.05,
             0.05, 0, 0]
_H_HOMECARE = [0.05, 0.05, 0.05, 0.05, 0.05, 0.1, 0.5, 1.5, 1.8, 1.6, 1.4, 1.5, 1.4, 1.2, 1.2, 1.3, 1.4, 1.5,
               1.4, 1.3, 1.2, 1.0, 0.6, 0.2]
_H_PATROL = [2.0, 2.0, 1.8, 1.5, 1.2, 0.8, 0.3, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.1, 0.3, 0.8,
             1.3, 1.7, 1.9, 2.1, 2.2, 2.2]
_H_MORNING = [0, 0, 0, 0, 0, 0, 1.0, 2.0, 1.5, 0.3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
_D_NIGHT = [0.8, 0.8, 0.85, 0.95, 1.25, 1.6, 1.35]
_D_EVENING = [0.9, 0.9, 0.95, 1.0, 1.2, 1.3, 1.05]
_D_DAY = [1.1, 1.1, 1.1, 1.1, 1.05, 0.8, 0.65]
_D_SCHOOL = [1.0, 1.0, 1.0, 1.0, 0.9, 0.02, 0.02]
_D_SCHOOL_AFTER = [0.8, 0.8, 0.8, 0.9, 1.2, 1.6, 1.4]
_D_FLAT = [1.0] * 7


def _profile(hours: list[float], days: list[float], night_carry: bool = False) -> np.ndarray:
    """168 probabilities (slot = day * 24 + hour). With night_carry the small hours (0-4) belong to the
    previous evening's weekday: Saturday 01:00 is 'Friday night'."""
    h = np.asarray(hours, dtype=float)
    d = np.asarray(days, dtype=float)
    weights = np.empty((7, 24))
    for day in range(7):
        for hour in range(24):
            weekday = (day - 1) % 7 if (night_carry and hour < 5) else day
            weights[day, hour] = h[hour] * d[weekday]
    weights = weights.ravel()
    return weights / weights.sum()


PROFILES = {
    "night": _profile(_H_NIGHT, _D_NIGHT, night_carry=True),
    "evening": _profile(_H_EVENING, _D_EVENING, night_carry=True),
    "day": _profile(_H_DAY, _D_DAY),
    "school": _profile(_H_SCHOOL, _D_SCHOOL),
    "school_after": _profile(_H_EVENING, _D_SCHOOL_AFTER, night_carry=True),
    "homecare": _profile(_H_HOMECARE, _D_FLAT),
    "patrol": _profile(_H_PATROL, [0.9, 0.9, 0.9, 1.0, 1.3, 1.4, 1.0], night_carry=True),
    "morning": _profile(_H_MORNING, _D_FLAT),
}
_CATEGORY_PROFILE = {
    **{c: "night" for c in ("assault", "public_order", "robbery", "shooting_explosion", "weapons")},
    **{c: "evening" for c in ("property_damage", "graffiti", "youth_disturbance", "drug_dealing", "arson_fire",
                              "vehicle_fire", "illegal_motor_traffic", "unsafe_place")},
    **{c: "day" for c in ("theft", "littering", "threat_violence_staff", "burglary", "other")},
}

#: Where each category tends to happen (canonical place types), before a partner's own words.
PLACE_BY_CATEGORY = {
    "property_damage": {"street": .2, "park": .1, "school": .1, "stairwell": .2, "parking": .15, "shop": .05,
                        "public_transport": .1, "residence": .05, "other": .05},
    "littering": {"street": .3, "park": .3, "stairwell": .1, "parking": .1, "square": .1, "other": .1},
    "graffiti": {"street": .3, "school": .15, "stairwell": .15, "public_transport": .2, "park": .1, "other": .1},
    "threat_violence_staff": {"residence": .4, "school": .2, "street": .15, "shop": .1, "other": .15},
    "drug_dealing": {"street": .3, "park": .25, "square": .2, "stairwell": .1, "parking": .1, "school": .05},
    "robbery": {"street": .5, "shop": .25, "public_transport": .1, "park": .1, "square": .05},
    "assault": {"street": .35, "residence": .25, "square": .15, "park": .1, "shop": .05, "public_transport": .05,
                "other": .05},
    "arson_fire": {"residence": .3, "other": .3, "school": .1, "park": .1, "stairwell": .1, "street": .1},
    "youth_disturbance": {"square": .25, "street": .2, "stairwell": .2, "park": .15, "public_transport": .1,
                          "school": .1},
    "illegal_motor_traffic": {"street": .6, "park": .3, "school": .1},
    "unsafe_place": {"stairwell": .3, "street": .2, "park": .2, "parking": .15, "public_transport": .1,
                     "square": .05},
    "burglary": {"residence": .75, "shop": .15, "school": .05, "other": .05},
    "theft": {"shop": .35, "street": .2, "parking": .2, "residence": .15, "public_transport": .1},
    "vehicle_fire": {"parking": .7, "street": .3},
    "weapons": {"street": .5, "square": .2, "public_transport": .15, "other": .15},
    "shooting_explosion": {"street": .5, "residence": .3, "square": .2},
    "public_order": {"street": .4, "square": .3, "public_transport": .15, "park": .15},
    "other": {"other": .4, "street": .3, "residence": .3},
}

# --------------------------------------------------------------------------------------------------------
# Partners: volumes, category mix and their own words
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    partner: str
    mean: float  # expected rows per week (before season and effects)
    lo: int  # accepted weekly total (rows), see _draw_counts
    hi: int
    shares: dict[str, float]
    coverage: str  # how the partner's rows spread over areas (see _Context.coverage)
    profile: Callable[[str], str] = lambda category: _CATEGORY_PROFILE[category]


def _school_profile(category: str) -> str:
    after = ("property_damage", "graffiti", "arson_fire", "burglary", "youth_disturbance", "illegal_motor_traffic")
    return "school_after" if category in after else "school"


SPECS = {
    "police_cases": _Spec("police_cases", 300, 250, 350, {
        "theft": .24, "burglary": .07, "assault": .15, "property_damage": .14, "graffiti": .04,
        "drug_dealing": .08, "robbery": .025, "arson_fire": .015, "vehicle_fire": .02, "weapons": .025,
        "shooting_explosion": .005, "public_order": .05, "threat_violence_staff": .02,
        "illegal_motor_traffic": .01, "other": .09}, "population"),
    "housing": _Spec("housing", 55, 40, 70, {
        "property_damage": .24, "graffiti": .14, "littering": .14, "arson_fire": .05, "youth_disturbance": .12,
        "unsafe_place": .12, "burglary": .06, "vehicle_fire": .03, "drug_dealing": .03,
        "threat_violence_staff": .02, "illegal_motor_traffic": .02, "other": .03}, "rental"),
    "schools": _Spec("schools", 17, 10, 25, {
        "threat_violence_staff": .2, "property_damage": .18, "graffiti": .12, "arson_fire": .08,
        "drug_dealing": .06, "assault": .14, "theft": .07, "burglary": .03, "unsafe_place": .06,
        "illegal_motor_traffic": .03, "youth_disturbance": .03}, "schools", _school_profile),
    "social_services": _Spec("social_services", 10, 5, 15, {
        "youth_disturbance": .25, "drug_dealing": .15, "unsafe_place": .15, "threat_violence_staff": .1,
        "assault": .1, "property_damage": .08, "robbery": .05, "weapons": .04, "public_order": .05,
        "other": .03}, "social"),
    "home_care": _Spec("home_care", 6.5, 3, 10, {
        "threat_violence_staff": .3, "unsafe_place": .25, "littering": .1, "youth_disturbance": .1,
        "property_damage": .08, "drug_dealing": .07, "graffiti": .05, "burglary": .05}, "population",
        lambda category: "homecare"),
    "guards": _Spec("guards", 45, 30, 60, {
        "youth_disturbance": .22, "property_damage": .16, "littering": .1, "graffiti": .1, "unsafe_place": .1,
        "drug_dealing": .08, "public_order": .08, "illegal_motor_traffic": .06, "vehicle_fire": .03,
        "arson_fire": .03, "threat_violence_staff": .03, "other": .01}, "town", lambda category: "patrol"),
}
POLICE_EVENTS_RANGE = (15, 30)

#: Police case export: offence codes (brottskoder) the generated export uses, per taxonomy code, as
#: (code, name, weight). Written in the style of the police's four-digit codes; the contract's category_map
#: documents each one. The leading zeros are real: an identifier column must stay text.
OFFENCES = {
    "assault": [("0375", "Misshandel, utomhus, mot man, obekant", 4),
                ("0379", "Misshandel, utomhus, mot kvinna, obekant", 2), ("0386", "Misshandel, inomhus, obekant", 2),
                ("0393", "Grov misshandel, utomhus", 1), ("0401", "Olaga hot mot person", 3)],
    "threat_violence_staff": [("1702", "Våld eller hot mot tjänsteman", 1)],
    "theft": [("0824", "Stöld av cykel", 3), ("0857", "Snatteri i butik", 4),
              ("0846", "Stöld ur eller från motorfordon", 2), ("0840", "Stöld av motorfordon", 1),
              ("0801", "Stöld, övrig", 2)],
    "burglary": [("0806", "Inbrott i lägenhet", 3), ("0807", "Inbrott i villa eller radhus", 2),
                 ("0810", "Inbrott i källare eller vind", 3), ("0812", "Inbrott i butik", 1)],
    "robbery": [("9810", "Rån mot person utomhus", 3), ("9815", "Rån mot butik", 1)],
    "property_damage": [("1201", "Skadegörelse, övrig", 4), ("1203", "Skadegörelse på motorfordon", 2),
                        ("1207", "Skadegörelse på skola eller offentlig byggnad", 1)],
    "graffiti": [("1208", "Klotter", 1)],
    "arson_fire": [("1301", "Mordbrand", 1), ("1209", "Skadegörelse genom brand", 3)],
    "vehicle_fire": [("1211", "Brand i motorfordon (skadegörelse genom brand)", 1)],
    "drug_dealing": [("5010", "Narkotikabrott, överlåtelse", 2), ("5011", "Narkotikabrott, innehav", 3)],
    "weapons": [("5203", "Brott mot vapenlagen", 1), ("5221", "Brott mot knivlagen", 2)],
    "shooting_explosion": [("0305", "Försök till mord, skjutvapen (skottlossning)", 2),
                           ("1302", "Allmänfarlig ödeläggelse genom sprängning", 1)],
    "public_order": [("1607", "Förargelseväckande beteende", 2), ("8301", "Brott mot ordningslagen", 2)],
    "illegal_motor_traffic": [("7003", "Brott mot terrängkörningslagen", 1)],
    "other": [("0902", "Bedrägeri", 3), ("4005", "Olovlig körning", 2), ("0441", "Ofredande", 2)],
}
POLICE_PLACE_LABELS = {
    "street": ["Gata/väg"], "park": ["Park/grönområde"], "school": ["Skola"], "stairwell": ["Trapphus"],
    "parking": ["Parkering/garage"], "shop": ["Butik"], "public_transport": ["Kollektivtrafik"],
    "residence": ["Bostad"], "square": ["Torg"], "sports_ground": ["Idrottsanläggning"], "other": ["Annan plats"],
}

HOUSING_LABELS = {
    "property_damage": ["Skadegörelse"], "graffiti": ["Klotter"], "littering": ["Nedskräpning"],
    "arson_fire": ["Brand i soprum", "Brand"], "youth_disturbance": ["Störande ungdomar"],
    "unsafe_place": ["Otrygg miljö – trapphus", "Otrygg miljö – belysning"],
    "burglary": ["Inbrott i källarförråd"], "vehicle_fire": ["Bilbrand"],
    "drug_dealing": ["Misstänkt narkotikahandel"], "threat_violence_staff": ["Hot mot personal"],
    "illegal_motor_traffic": ["Mopedåkning på gångväg"], "other": ["Störning från lägenhet"],
}
HOUSING_PLACE_LABELS = {
    "stairwell": ["Trapphus", "Entré"], "residence": ["Lägenhet", "Källare/förråd", "Tvättstuga"],
    "parking": ["Parkering", "Garage"], "park": ["Gård/lekplats", "Grönyta"], "street": ["Gångväg"],
    "square": ["Gård/lekplats"], "school": ["Övrigt"], "shop": ["Lokal"], "public_transport": ["Gångväg"],
    "sports_ground": ["Grönyta"], "other": ["Soprum/miljöstuga", "Övrigt"],
}
SCHOOL_LABELS = {
    "threat_violence_staff": ["Hot mot personal", "Hot mot personal", "Våld mot personal"],
    "property_damage": ["Skadegörelse"], "graffiti": ["Klotter"], "arson_fire": ["Brand/brandlarm"],
    "drug_dealing": ["Narkotika på skolgården"], "assault": ["Våld mellan elever"], "theft": ["Stöld"],
    "burglary": ["Inbrott"], "unsafe_place": ["Obehöriga på skolområdet"],
    "illegal_motor_traffic": ["Mopedåkning på skolgården"], "youth_disturbance": ["Störande ungdomar kvällstid"],
}
SCHOOL_PLACE_LABELS = {
    "school": ["Skolgård", "Korridor", "Klassrum", "Matsal", "Toalett", "Entré"],
    "sports_ground": ["Idrottshall"], "street": ["Utanför skolområdet"], "parking": ["Parkering"],
    "park": ["Skolgård"], "stairwell": ["Entré"], "square": ["Skolgård"], "residence": ["Övrigt"],
    "shop": ["Övrigt"], "public_transport": ["Utanför skolområdet"], "other": ["Övrigt"],
}
#: The delivery template's Swedish place-type labels (delivery_template.md lists them).
TEMPLATE_PLACE_LABELS = {
    "street": "Gata/väg", "park": "Park", "school": "Skola", "stairwell": "Trapphus", "parking": "Parkering",
    "shop": "Butik", "public_transport": "Kollektivtrafik", "residence": "Bostad", "square": "Torg",
    "sports_ground": "Idrottsplats", "other": "Övrigt",
}
#: Share of template rows where the partner writes the taxonomy code instead of the Swedish label.
TEMPLATE_CODE_SHARE = {"social_services": 0.2, "home_care": 0.1, "guards": 0.3}

# Deliberately unknown category values (not in any contract's category_map: they must end in quarantine).
UNKNOWN_CATEGORY = {"housing": "Vattenskada", "schools": "Kränkande behandling"}
BAD_ROW_SHARE = 0.01

#: Schools: (name, DeSO code, rate weight). Real Örebro school names; the area is where the stand-in puts them.
SCHOOLS = (
    ("Vivallaskolan", "1880C1590", 3.0), ("Oxhagsskolan", "1880C1530", 2.2),
    ("Brickebackens skola", "1880C1080", 2.0), ("Baronbackarnas skola", "1880C1540", 1.8),
    ("Mellringeskolan", "1880C1340", 1.2), ("Adolfsbergsskolan", "1880C1040", 0.8), ("Almbyskolan", "1880C1100", 1.0),
    ("Olaus Petri skola", "1880C1350", 1.0), ("Engelbrektsskolan", "1880C1290", 1.0),
    ("Karolinska skolan", "1880C1360", 1.4), ("Risbergska skolan", "1880C1220", 1.4),
    ("Rudbecksskolan", "1880C1240", 1.2), ("Tullängsskolan", "1880C1410", 1.3),
    ("Västra Engelbrektsskolan", "1880C1420", 0.9), ("Hovstaskolan", "1880C1680", 0.6),
    ("Glanshammars skola", "1880A0080", 0.4), ("Garphyttans skola", "1880A0070", 0.4),
    ("Lillåns skola", "1880C1660", 0.8),
    ("Lundbyskolan", "1880C1640", 0.9), ("Rostaskolan", "1880C1300", 1.0), ("Hagaskolan", "1880C1580", 0.9),
    ("Sörbyskolan", "1880C1120", 0.7),
)

#: Real polisen.se event types in Örebro kommun, 2022-10 to 2026-08, with their counts in
#: ../shared/data/polisen-events (the generator draws types with these frequencies).
POLICE_EVENT_TYPES = (
    ("Trafikolycka", 302), ("Stöld", 108), ("Rattfylleri", 103), ("Misshandel", 96), ("Brand", 67),
    ("Övrigt", 55), ("Trafikbrott", 51), ("Försvunnen person", 46), ("Trafikolycka, personskada", 41),
    ("Narkotikabrott", 33), ("Rån", 30), ("Arbetsplatsolycka", 29), ("Trafikolycka, singel", 29),
    ("Stöld/inbrott", 29), ("Fylleri/LOB", 22), ("Skadegörelse", 18), ("Olaga hot", 16), ("Knivlagen", 16),
    ("Våld/hot mot tjänsteman", 14), ("Olovlig körning", 14), ("Sammanfattning natt", 13),
    ("Mord/dråp, försök", 12), ("Trafikkontroll", 10), ("Misshandel, grov", 10), ("Trafikolycka, vilt", 9),
    ("Trafikolycka, smitning från", 9), ("Olaga intrång", 8), ("Farligt föremål, misstänkt", 8),
    ("Motorfordon, stöld", 8), ("Häleri", 8), ("Trafikhinder", 8), ("Mord/dråp", 7), ("Åldringsbrott", 6),
    ("Vapenlagen", 6), ("Stöld, försök", 5), ("Vållande till kroppsskada", 4), ("Bedrägeri", 4),
    ("Information", 4), ("Rån, försök", 3), ("Motorfordon, anträffat stulet", 3), ("Hemfridsbrott", 3),
    ("Ofredande/förargelse", 3), ("Inbrott", 3), ("Efterlyst person", 3), ("Djur", 2), ("Skottlossning", 2),
    ("Smällar", 2), ("Explosion", 1), ("Bråk", 1),
)
POLICE_EVENT_GPS = "59.275263,15.213411"  # the API's point for Örebro kommun (its centre), as in the real data
COUNTY_NAME, COUNTY_GPS = "Örebro län", "59.535036,15.006573"
MONTHS_SV = ("januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti", "september", "oktober",
             "november", "december")

# --------------------------------------------------------------------------------------------------------
# Words for the generated free text (Swedish), and the personal details hidden in it
# --------------------------------------------------------------------------------------------------------

FIRST_NAMES = ("Anna", "Maria", "Erik", "Lars", "Karl", "Johan", "Sara", "Emma", "Mohammed", "Ahmed", "Fatima",
               "Amina", "Ali", "Hassan", "Elin", "Lina", "Omar", "Yusuf", "Leila", "Ida", "Oscar", "Lucas",
               "Elias", "Noah", "Hanna", "Maja", "Abdi", "Hodan", "Mehmet", "Zeynep", "Nour", "Kristina")
LAST_NAMES = ("Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson", "Persson",
              "Svensson", "Gustafsson", "Pettersson", "Jonsson", "Lindqvist", "Hussein", "Mohamed", "Ali",
              "Abdi", "Yilmaz", "Nguyen", "Berg", "Lindberg", "Hassan", "Jama", "Öberg")
GENERIC_STREET_STEMS = (
    "Björk", "Tall", "Gran", "Ek", "Lind", "Lönn", "Asp", "Hassel", "Rönn", "Al", "Sälg", "Hägg", "Syren",
    "Blåbärs", "Lingon", "Hjortron", "Smultron", "Klöver", "Vitsippe", "Blåsippe", "Prästkrage", "Kastanj",
    "Fläder", "Körsbärs", "Äppel", "Plommon", "Päron", "Ljung", "Kärr", "Sjö", "Bäck", "Ängs", "Åker",
    "Skogs", "Bergs", "Dal", "Hag", "Vång", "Torp", "Gärdes", "Tegel", "Smed", "Skol", "Kyrko", "Prost",
    "Kvarn", "Mjölnar", "Sågverks", "Järnvägs", "Stations", "Post", "Hantverkar", "Snickar", "Murar",
    "Garvar", "Skomakar", "Bagar", "Krukmakar", "Vävar", "Spinnar", "Dalkarls", "Bergslags", "Kilsbergs",
    "Svartå", "Hjälmar", "Rosen", "Tulpan", "Nejlike", "Lilje", "Vallmo", "Mås", "Trast", "Lärk", "Svan",
    "Tran", "Orre", "Tjäder", "Hök", "Falk", "Uggle", "Stare", "Finken", "Domherre", "Sädes", "Havre",
    "Råg", "Korn", "Vete", "Humle", "Linne", "Mossa", "Sten", "Flint", "Kvarts", "Granit", "Silver",
)
STREET_SUFFIXES = ("vägen", "gatan", "stigen", "gränd", "backen", "allén", "vägen", "gatan", "vägen")
#: The main street of each RegSO (shared by its DeSO, split into number ranges).
MAIN_STREETS = {
    "Adolfsberg": "Adolfsbergsvägen", "Almby-Ormesta": "Almbyvägen", "Baronbackarna": "Baronbackarnas gata",
    "Brickebacken": "Brickebacksvägen", "Brickeberg-Norra Bro": "Brickebergsvägen",
    "Brunnsgärdet-Lindhult-Nasta": "Brunnsgärdesvägen", "Ekeby-Almby-Hidingsta-Stora Mellösa": "Ekebyvägen",
    "Eklunda-Sörby": "Eklundavägen", "Ervalla-Ölmbrotorp": "Ervallavägen",
    "Garphyttan-Närkes Kil": "Garphyttevägen",
    "Glanshammar": "Glanshammarsvägen", "Hagaby-Ringstorp": "Hagabyvägen", "Holmen-Hjärsta": "Hjärstagatan",
    "Hovsta": "Hovstavägen", "Ladugårdsängen": "Ladugårdsängsvägen", "Latorp-Täby-Vintrosa": "Latorpsvägen",
    "Lillån": "Lillåvägen", "Lundby": "Lundbyvägen", "Marieberg-Mosås": "Mariebergsvägen",
    "Markbacken-Västra Mark": "Markbacksvägen", "Mellringe-Björkhaga": "Mellringevägen",
    "Nya Hjärsta-Nyponlunden": "Nyponvägen", "Näsby-Norra Ormesta": "Näsbyvägen", "Rosta-Örnsro": "Rostagatan",
    "Rynninge-Grenadjärstaden": "Rynningevägen", "Sörbyängen": "Sörbyvägen", "Tybble": "Tybblevägen",
    "Varberga-Oxhagen": "Varbergagatan", "Vivalla": "Vivallagatan", "Västhaga-Solhaga": "Västhagagatan",
    "Örebro city": "Drottninggatan", "Örebro norr-CV": "Tullängsvägen", "Örebro söder": "Rudbecksgatan",
    "Örebro väster": "Västra Nobelgatan", "Örebro öster": "Östra Bangatan", "Östernärke": "Östernärkevägen",
}
CITY_STREETS = ("Storgatan", "Kungsgatan", "Järntorgsgatan", "Engelbrektsgatan", "Köpmangatan", "Nygatan",
                "Olaigatan", "Fabriksgatan", "Klostergatan", "Vasagatan", "Trädgårdsgatan", "Ågatan")
CITY_QUARTERS = ("Bagaren", "Skomakaren", "Hattmakaren", "Krukmakaren", "Nikolai", "Olai", "Järntorget",
                 "Gesällen", "Mästaren", "Kopparslagaren", "Tunnbindaren", "Klockaren", "Kolmätaren")
#: Everyday names of districts (for free text); default: the first part of the RegSO name.
DISTRICT_NAMES = {
    "Örebro city": "centrala Örebro", "Örebro söder": "Söder", "Örebro väster": "Väster",
    "Örebro öster": "Öster", "Örebro norr-CV": "Norr", "Holmen-Hjärsta": "Hjärsta",
    "Nya Hjärsta-Nyponlunden": "Nya Hjärsta", "Garphyttan-Närkes Kil": "Garphyttan",
    "Ekeby-Almby-Hidingsta-Stora Mellösa": "Stora Mellösa", "Ervalla-Ölmbrotorp": "Ervalla",
}
DISTRICT_BY_CODE = {"1880C1530": "Oxhagen", "1880C1390": "Varberga", "1880C1490": "Varberga",
                    "1880C1520": "Björkhaga"}

# Free-text templates: {plats} a place in the area, {omr} the district, {adress} an address there,
# {antal} a number of people, {ak} a school year.
TEXTS: dict[str, dict[str, tuple[str, ...]]] = {
    "housing": {
        "property_damage": ("Krossad ruta i entrédörr på {adress}.", "Sönderslagen belysning i trapphuset.",
                            "Skadegörelse på postboxar, {adress}.",
                            "Sparkat sönder dörr till cykelrum – glasmästare beställd."),
        "graffiti": ("Klotter på fasad och garageportar.", "Klotter i trapphus, sanering beställd – enligt offert.",
                     "Tags på lekstugan på gården vid {adress}."),
        "littering": ("Nedskräpning vid miljöstugan, grovsopor ställda utanför.",
                      "Mycket skräp och glas på gården efter helgen.",
                      "Sprutor och skräp i buskaget vid parkeringen."),
        "arson_fire": ("Brand i soprum, räddningstjänsten på plats.", "Anlagd brand i papperskorg vid entrén.",
                       "Brand i barnvagn i trapphus på {adress}, rökskador."),
        "youth_disturbance": ("Grupp ungdomar ({antal} st) samlas i trapphuset kvällstid, boende känner sig otrygga.",
                              "Ungdomar spelar hög musik och kastar saker från balkong.",
                              "Störande ungdomar i tvättstugan, hyresgäst ringde jouren."),
        "unsafe_place": ("Trasig belysning på gångväg mellan husen – upplevs otryggt.",
                         "Boende upplever trapphuset som otryggt, okända personer sover där.",
                         "Mörkt vid garageinfarten, flera lampor ur funktion."),
        "burglary": ("Inbrott i källarförråd, flera förråd uppbrutna.", "Uppbrutet cykelrum, cyklar stulna."),
        "vehicle_fire": ("Bil i brand på parkeringen, räddningstjänst och polis på plats.",
                         "Utbränd bil på p-platsen vid {adress}."),
        "drug_dealing": ("Misstänkt langning vid entrén kvällstid, boende oroliga.",
                         "Boende rapporterar narkotikaförsäljning i trapphuset."),
        "threat_violence_staff": ("Bovärd hotad i samband med besiktning.",
                                  "Fastighetsskötare utsatt för hot av okänd man på gården."),
        "illegal_motor_traffic": ("Mopeder kör på gångvägen mellan husen.",
                                  "Crossmotorcyklar på gräsmattan vid lekplatsen."),
        "other": ("Störning från lägenhet, hög musik nattetid.", "Upphittad cykel i entrén."),
    },
    "schools": {
        "threat_violence_staff": ("Elev i åk {ak} hotade lärare verbalt i korridoren.",
                                  "Vårdnadshavare uppträdde hotfullt mot rektor i entrén.",
                                  "Elev sparkade personal i samband med konflikt på rasten."),
        "property_damage": ("Sönderslagna fönster i matsalen, upptäckt på morgonen.",
                            "Toalettdörr sparkad sönder."),
        "graffiti": ("Klotter på fasaden mot skolgården.", "Klotter på toaletterna, vaktmästare meddelad."),
        "arson_fire": ("Brandlarm utlöst av rökning på toaletten.", "Anlagd brand i papperskorg på skolgården."),
        "drug_dealing": ("Misstänkt försäljning av narkotika vid skolans baksida.",
                         "Elever uppger att det langas cannabis vid busshållplatsen intill skolan."),
        "assault": ("Slagsmål mellan två elever i åk {ak} på skolgården.",
                    "Elev slagen av äldre elever efter skoldagens slut."),
        "theft": ("Stöld av mobiltelefon ur omklädningsrum.", "Dator stulen ur klassrum."),
        "burglary": ("Inbrott i skolans kök under natten.", "Inbrott i slöjdsalen, verktyg stulna."),
        "unsafe_place": ("Okända vuxna uppehåller sig på skolgården under skoltid.",
                         "Elever upplever gångtunneln till skolan som otrygg."),
        "illegal_motor_traffic": ("Mopedåkning på skolgården under rasten.",),
        "youth_disturbance": ("Ungdomar samlas på skolgården kvällstid, skräp och glas på morgonen.",),
    },
    "social_services": {
        "youth_disturbance": ("Fältgruppen mötte en grupp om ca {antal} ungdomar vid {plats}, "
                              "oro för att yngre rekryteras.",
                              "Störande ungdomar vid {plats} sent på kvällen, några kända av socialtjänsten."),
        "drug_dealing": ("Orosanmälan: misstänkt narkotikaförsäljning vid {plats}, minderåriga inblandade.",
                         "Uppgift om langning i trappuppgång på {adress}."),
        "unsafe_place": ("Föräldrar uttrycker oro för {plats} kvällstid.",
                         "Mörk gångtunnel vid {plats} upplevs otrygg av unga."),
        "threat_violence_staff": ("Handläggare hotad vid hembesök på {adress}.", "Hot mot personal i receptionen."),
        "assault": ("Ungdom misshandlad vid {plats}, polisanmälan gjord.",
                    "Uppgift om att en flicka blivit slagen vid {plats}."),
        "property_damage": ("Skadegörelse på fritidsgården i {omr}.",),
        "robbery": ("Ungdomsrån vid {plats}, två pojkar 15 år rånade på mobil.",),
        "weapons": ("Uppgift om att ungdomar bär kniv vid {plats}.",),
        "public_order": ("Bråk vid {plats} efter en fest.",),
        "other": ("Samverkansmöte med skola och polis om läget i {omr}.",),
    },
    "home_care": {
        "threat_violence_staff": ("Personal hotad av anhörig vid besök hos brukare.",
                                  "Hund släppt lös mot personal vid besök, besöket avbrutet."),
        "unsafe_place": ("Personal upplever entrén på {adress} som otrygg kvällstid.",
                         "Trasig belysning i trapphus, personal känner sig otrygg vid kvällsbesök."),
        "littering": ("Sprutor i trappuppgången vid {adress}.",),
        "youth_disturbance": ("Ungdomar i trapphuset blockerade dörren när personal skulle in.",),
        "property_damage": ("Hemtjänstens bil fick punkterade däck på parkeringen.",
                            "Ruta krossad på tjänstebil."),
        "drug_dealing": ("Misstänkt narkotikaförsäljning i porten, personal passerar dagligen.",),
        "graffiti": ("Klotter med hotfullt innehåll på dörren till brukarens lägenhet.",),
        "burglary": ("Inbrott i brukares förråd.",),
    },
    "guards": {
        "youth_disturbance": ("Ungdomsgrupp ca {antal} pers vid {plats}, lugnt efter kontakt.",
                              "Ungdomar kastade smällare vid {plats}."),
        "property_damage": ("Krossad busskurskiva vid {plats}.",
                            "Skadegörelse på papperskorgar och bänkar vid {plats}."),
        "littering": ("Mycket skräp vid {plats}, meddelat park och gata.",),
        "graffiti": ("Nytt klotter vid {plats}, fotograferat.",),
        "unsafe_place": ("Släckt gatubelysning vid {plats}, felanmält.",
                         "Personer sover i cykelgaraget vid {plats}."),
        "drug_dealing": ("Misstänkt narkotikaförsäljning vid {plats}, överlämnat till polis.",),
        "public_order": ("Berusade personer bråkade vid {plats}, polis tillkallad.",),
        "illegal_motor_traffic": ("Moped körde på gång- och cykelväg vid {plats}.",
                                  "EPA-traktor i hög fart på gångvägen vid {plats}."),
        "vehicle_fire": ("Bilbrand på parkering vid {plats}, räddningstjänst på plats.",),
        "arson_fire": ("Brand i container vid {plats}.",),
        "threat_violence_staff": ("Väktare hotad vid ingripande vid {plats}.",),
        "other": ("Rondering {omr}, inget att anmärka.",),
    },
}
PLACE_PHRASES = ("{omr} centrum", "lekplatsen i {omr}", "busshållplatsen i {omr}", "gångtunneln i {omr}",
                 "parkeringen i {omr}", "fritidsgården i {omr}")
#: Personal details added to free text, per partner: (share of rows, templates).
SENSITIVE = {
    "housing": (0.15, (" Hyresgäst {namn}, tel {tel}.", " Anmält av boende i lgh {lgh}, {namn}.")),
    "schools": (0.25, (" Elev: {namn}.", " Berörd personal {namn} nås på {tel}.", " Elevens personnummer {pnr}.")),
    "social_services": (0.4, (" Gäller {pnr}.", " Mamma {namn} nås på {tel}.",
                              " Pojke {pnr} ({namn}) sågs på platsen.", " Adress {adress}.",
                              " Kontakt via {email}.")),
    "home_care": (0.35, (" Brukare {namn}, {pnr}.", " Ring samordnare {namn} {tel}.", " Brukaren bor på {adress}.")),
    "guards": (0.15, (" Fordon {plate} lämnade platsen.", " Anmälare {namn} {tel}.")),
}

# --------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------


def _rng(seed: int, stream: str) -> np.random.Generator:
    """An independent, reproducible stream per component: changing one partner never moves another's rows."""
    return np.random.default_rng([int(seed), zlib.crc32(stream.encode("utf-8"))])


def _monday(iso_week: str) -> date:
    match = re.fullmatch(r"(\d{4})-W(\d{2})", iso_week)
    if not match:
        raise ValueError(f"not an ISO week 'YYYY-Www': {iso_week!r}")
    return date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1)


def _iso(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def iso_weeks(weeks: int, last_week: str) -> list[str]:
    """The ``weeks`` ISO weeks ending with ``last_week``, oldest first."""
    last = _monday(last_week)
    return [_iso(last - timedelta(weeks=k)) for k in range(weeks - 1, -1, -1)]


def _epoch(day: date) -> int:
    """Seconds since the epoch of local midnight of ``day``, as if it were UTC (the naive wall clock)."""
    return int((datetime(day.year, day.month, day.day) - datetime(1970, 1, 1)).total_seconds())


def _localise(wall: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Wall-clock seconds (Europe/Stockholm, naive) to UTC seconds.

    The autumn hour that happens twice is taken as summer or winter time at random (both happen); a spring
    time that does not exist is moved an hour on, as a clock would.
    """
    index = pd.DatetimeIndex(np.asarray(wall, dtype="int64").astype("datetime64[s]"))
    ambiguous = rng.random(len(index)) < 0.5
    aware = index.tz_localize(TZ, ambiguous=ambiguous, nonexistent=pd.Timedelta(hours=1))
    return aware.as_unit("s").asi8.astype("int64")


def _wall(utc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UTC seconds to (wall-clock seconds in Europe/Stockholm, UTC offset in seconds)."""
    utc = np.asarray(utc, dtype="int64")
    index = pd.DatetimeIndex(utc.astype("datetime64[s]")).tz_localize("UTC").tz_convert(TZ)
    wall = index.tz_localize(None).as_unit("s").asi8.astype("int64")
    return wall, wall - utc


def _fmt(wall: np.ndarray, fmt: str, missing: np.ndarray | None = None) -> pa.Array:
    """Format wall-clock seconds with strftime in bulk (Arrow's C++ formatter), '' where ``missing``."""
    text = pc.strftime(pa.array(np.asarray(wall, dtype="int64"), pa.timestamp("s")), format=fmt)
    if missing is not None and np.any(missing):
        text = pc.if_else(pa.array(np.asarray(missing, dtype=bool)), "", text)
    return text


def _fmt_minutes(wall: np.ndarray) -> pa.Array:
    """'YYYY-MM-DD HH:MM' of wall-clock seconds, fast for millions of rows: each distinct day and minute of
    the day is formatted once and the text is assembled with Arrow takes (no per-row formatting)."""
    wall = np.asarray(wall, dtype="int64")
    days = wall // 86400
    first = int(days.min()) if wall.size else 0
    day_text = pc.strftime(pa.array((first + np.arange(int(days.max() - first) + 1 if wall.size else 1)) * 86400,
                                    pa.timestamp("s")), format="%Y-%m-%d")
    minute_text = pa.array([f"{h:02d}:{m:02d}" for h in range(24) for m in range(60)])
    return pc.binary_join_element_wise(day_text.take(pa.array(days - first)),
                                       minute_text.take(pa.array((wall % 86400) // 60)), " ")


def _pick(rng: np.random.Generator, options: list | tuple, size: int, p: Any = None) -> np.ndarray:
    if p is not None:
        p = np.asarray(p, dtype=float)
        p = p / p.sum()
    return np.asarray(options, dtype=object)[rng.choice(len(options), size=size, p=p)]


def luhn_check_digit(nine: np.ndarray) -> np.ndarray:
    """The personnummer check digit: Luhn over the 9 digits before it (shape (n, 9) -> (n,))."""
    digits = np.asarray(nine, dtype="int64")
    products = digits * np.array([2, 1, 2, 1, 2, 1, 2, 1, 2])
    total = (products // 10 + products % 10).sum(axis=1)
    return (10 - total % 10) % 10


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    values = np.asarray(values, dtype="int64")
    return (values[:, None] // 10 ** np.arange(width - 1, -1, -1)) % 10


@dataclass
class _Persons:
    """Valid personnummer/samordningsnummer: birth date, serial and check digit, kept apart for formatting."""

    year: np.ndarray
    month: np.ndarray
    day: np.ndarray  # +60 for a samordningsnummer
    serial: np.ndarray  # 3 digits
    check: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int, born_from: date, born_to: date,
             samordning_share: float) -> "_Persons":
        span = (born_to - born_from).days
        births = np.datetime64(born_from) + rng.integers(0, span, n).astype("timedelta64[D]")
        ymd = pd.DatetimeIndex(births.astype("datetime64[s]"))
        year, month, day = ymd.year.to_numpy(), ymd.month.to_numpy(), ymd.day.to_numpy()
        day = np.where(rng.random(n) < samordning_share, day + 60, day)
        serial = rng.integers(0, 1000, n)
        nine = np.column_stack([_digits(year % 100, 2), _digits(month, 2), _digits(day, 2), _digits(serial, 3)])
        return cls(year, month, day, serial, luhn_check_digit(nine))

    def render(self, index: np.ndarray, forms: np.ndarray, today: date) -> list[str]:
        """Write persons ``index`` in the written forms ``forms`` (0-5); 10-digit forms use '+' at 100+."""
        out = []
        for i, form in zip(np.asarray(index).tolist(), np.asarray(forms).tolist()):
            y, m, d, s, c = (int(self.year[i]), int(self.month[i]), int(self.day[i]), int(self.serial[i]),
                             int(self.check[i]))
            short = f"{y % 100:02d}{m:02d}{d:02d}"
            tail = f"{s:03d}{c}"
            century_sep = "+" if today.year - y >= 100 else "-"
            if form == 0:
                out.append(f"{short}{century_sep}{tail}")
            elif form == 1:
                out.append(f"{y:04d}{m:02d}{d:02d}{tail}")
            elif form == 2:
                out.append(f"{short}{tail}" if century_sep == "-" else f"{short}+{tail}")
            elif form == 3:
                out.append(f"{short}\u2013{tail}" if century_sep == "-" else f"{short}+{tail}")
            elif form == 4:
                out.append(f"{y:04d}{m:02d}{d:02d}-{tail}")
            else:
                out.append(f"{short} {tail}" if century_sep == "-" else f"{short}+{tail}")
        return out


def _phone(rng: np.random.Generator) -> str:
    kind = rng.integers(0, 4)
    a, b, c, d = rng.integers(0, 10, 3), rng.integers(0, 10, 2), rng.integers(0, 10, 2), rng.integers(0, 10)
    prefix = ("070", "072", "073", "076")[rng.integers(0, 4)]
    abc, bb, cc = "".join(map(str, a)), "".join(map(str, b)), "".join(map(str, c))
    if kind == 0:
        return f"{prefix}-{abc} {bb} {cc}"
    if kind == 1:
        return f"+46 {prefix[1:]} {abc} {bb} {cc}"
    if kind == 2:
        return f"{prefix}{abc}{bb}{cc}"
    return f"019-{bb} {cc} {d}{abc[:1]}"


def _plate(rng: np.random.Generator) -> str:
    letters = "ABCDEFGHJKLMNOPRSTUWXYZ"
    head = "".join(letters[i] for i in rng.integers(0, len(letters), 3))
    last = str(rng.integers(0, 10)) if rng.random() < 0.6 else letters[rng.integers(0, len(letters))]
    tail = f"{rng.integers(0, 100):02d}{last}"
    return f"{head} {tail}"


def _ascii(text: str) -> str:
    return text.lower().translate(str.maketrans("åäöé", "aaoe"))


def _slug(text: str) -> str:
    """polisen.se's URL slug of an event type or place: 'Stöld/inbrott' -> 'stoldinbrott'."""
    return re.sub(r"\s+", "-", _ascii(text).replace("/", "").replace(",", "").strip())


def _atomic_write(path: Path, data: bytes, work: Path) -> Path:
    """Write to a temporary file in work/ and move it into place: a crash never leaves half a delivery."""
    path.parent.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / f".{path.name}.{os.getpid()}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _csv_bytes(columns: dict[str, Any], delimiter: str, eol: str = "\n") -> bytes:
    """CSV text (UTF-8) as spreadsheet and business-system exports write it: quotes only where a value needs
    them (Python's csv module, QUOTE_MINIMAL). For the weekly files, which are small."""
    import csv

    names = list(columns)
    values = [v.to_pylist() if isinstance(v, (pa.Array, pa.ChunkedArray)) else list(v) for v in columns.values()]
    sink = io.StringIO()
    writer = csv.writer(sink, delimiter=delimiter, lineterminator=eol, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(names)
    writer.writerows(zip(*values))
    return sink.getvalue().encode("utf-8")


def _csv_bytes_bulk(columns: dict[str, Any], delimiter: str, eol: str = "\n") -> bytes:
    """CSV text (UTF-8) of whole Arrow columns, written by Arrow's C++ writer (the benchmark's large files)."""
    table = pa.table({name: (values if isinstance(values, (pa.Array, pa.ChunkedArray))
                             else pa.array(values, pa.string())) for name, values in columns.items()})
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(delimiter=delimiter, eol=eol, quoting_style="needed",
                                                    quoting_header="none"))
    return sink.getvalue()


def _encode(utf8: bytes, encoding: str) -> bytes:
    if encoding == "utf-8":
        return utf8
    if encoding == "utf-8-sig":
        return b"\xef\xbb\xbf" + utf8
    return utf8.decode("utf-8").encode(encoding)


# --------------------------------------------------------------------------------------------------------
# The context: weeks, areas, address register, hot spots, effects
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Context:
    seed: int
    weeks: list[str]
    mondays: list[date]
    areas: Any  # GeoDataFrame, sorted by code
    codes: np.ndarray
    names: np.ndarray
    register: pd.DataFrame  # address, e, n, area, street, fastighet
    area_addresses: list[np.ndarray]  # register row numbers per area
    hot_area: np.ndarray  # hot spot index per area, -1
    hot_points: np.ndarray  # (H, 2) e, n
    hot_cats: np.ndarray  # (H, C) bool
    hot_addresses: list[np.ndarray]
    affinity: np.ndarray  # (A, C)
    season: np.ndarray  # (W, C)
    effect: np.ndarray  # (W, A, C)
    school_area: np.ndarray
    school_address: np.ndarray  # register row per school
    unusual_week: int
    intervention_week: int
    export_utc: np.ndarray  # per week: when the week's file is exported (the Monday after, 06:00 local)
    persons: dict[str, _Persons] = field(default_factory=dict)

    def area_index(self, code: str) -> int:
        return int(np.flatnonzero(self.codes == code)[0])

    def district(self, area: int) -> str:
        code = str(self.codes[area])
        if code in DISTRICT_BY_CODE:
            return DISTRICT_BY_CODE[code]
        name = str(self.names[area]).strip()
        return DISTRICT_NAMES.get(name, re.split(r"[-]", name)[0])

    def coverage(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(unit -> area, unit weight) of a partner's rows: areas by population, or schools."""
        if kind == "schools":
            return self.school_area, np.array([s[2] for s in SCHOOLS])
        population = self.areas["population"].fillna(0).to_numpy(dtype=float)
        kind_letter = np.array([c[4] for c in self.codes])
        vulnerable = np.isin(self.codes, VULNERABLE)
        city = np.isin(self.codes, CITY)
        factor = np.where(kind_letter == "A", 0.35, np.where(kind_letter == "B", 0.6, 1.0))
        if kind == "rental":  # the housing company: rental estates in the town, most in the vulnerable areas
            factor = np.where(kind_letter == "C", 1.0, 0.08) * np.where(vulnerable, 3.0, np.where(city, 0.6, 1.0))
        elif kind == "social":
            factor = factor * np.where(vulnerable, 2.0, 1.0)
        elif kind == "town":  # municipal guards patrol the town, not the countryside
            factor = np.where(kind_letter == "C", 1.0, 0.04) * np.where(vulnerable | city, 1.8, 1.0)
        return np.arange(len(self.codes)), population * factor


def _build_register(areas: Any, rng: np.random.Generator) -> pd.DataFrame:
    """The municipality's address register: a few thousand street addresses, each inside its area."""
    codes = areas["area_code"].astype(str).to_numpy()
    names = areas["area_name"].astype(str).str.strip().to_numpy()
    population = areas["population"].fillna(0).to_numpy(dtype=float)
    stems = list(GENERIC_STREET_STEMS)
    generic = [f"{stem}{suffix}" for suffix in dict.fromkeys(STREET_SUFFIXES) for stem in stems]
    order = rng.permutation(len(generic))
    generic = [generic[i] for i in order]
    used: set[str] = set(MAIN_STREETS.values()) | set(CITY_STREETS)
    generic = [g for g in generic if g not in used]
    next_generic = 0
    main_next_number: dict[str, int] = {}
    city_streets = list(CITY_STREETS)
    rows: list[tuple[str, str, int, str, int]] = []  # street, number text, area, trakt, block
    for a, code in enumerate(codes):
        n_addr = max(15, int(round(population[a] / 38)))
        trakt = DISTRICT_BY_CODE.get(code) or re.split(r"[- ]", names[a])[0]
        if names[a].startswith("Örebro "):  # town-centre blocks are named quarters (kvarter)
            trakt = CITY_QUARTERS[a % len(CITY_QUARTERS)]
        streets: list[tuple[str, int]] = []
        main = MAIN_STREETS.get(names[a])
        remaining = n_addr
        if main:
            k = max(6, n_addr // 4)
            start = main_next_number.get(main, 1)
            streets.append((main, start))
            main_next_number[main] = start + k
            remaining -= k
            counts = [k]
        else:
            counts = []
        if names[a] == "Örebro city":
            for _ in range(3):
                k = max(8, n_addr // 8)
                streets.append((city_streets.pop(0), 1))
                counts.append(k)
                remaining -= k
        while remaining > 0:
            k = int(min(remaining, rng.integers(12, 45)))
            streets.append((generic[next_generic], 1))
            next_generic += 1
            counts.append(k)
            remaining -= k
        for block, ((street, start), k) in enumerate(zip(streets, counts), start=1):
            for number in range(start, start + k):
                letter = "A" if rng.random() < 0.04 else ""
                rows.append((street, f"{number}{letter}", a, trakt, block))
    frame = pd.DataFrame(rows, columns=["street", "number", "area", "trakt", "block"])
    frame["address"] = frame["street"] + " " + frame["number"]
    frame["fastighet"] = (frame["trakt"] + " " + frame["block"].astype(str) + ":"
                          + (frame.groupby(["trakt", "block"]).cumcount() // 3 + 1).astype(str))
    e, n = _points(areas, frame["area"].to_numpy(), rng, np.round)
    frame["e"], frame["n"] = e, n
    return frame


def _points(areas: Any, area_idx: np.ndarray, rng: np.random.Generator,
            quantise: Callable[[np.ndarray], np.ndarray] | None = None,
            start: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Points inside the given areas that stay inside after ``quantise`` (the precision a file carries).

    ``start`` gives proposed points (hot-spot scatter); those that fall outside their area are redrawn
    uniformly inside it, so every point's true area is the one its row was drawn for.
    """
    area_idx = np.asarray(area_idx, dtype="int64")
    codes = areas["area_code"].astype(str).to_numpy()
    geometries = areas.geometry.to_numpy()
    if start is None:
        e, n = geography.random_points_in_areas(areas, codes[area_idx], rng)
    else:
        e, n = np.array(start[0], dtype=float), np.array(start[1], dtype=float)
    for _ in range(50):
        eq, nq = (quantise(e), quantise(n)) if quantise else (e, n)
        bad = np.zeros(len(e), dtype=bool)
        for a in np.unique(area_idx):
            rows = np.flatnonzero(area_idx == a)
            bad[rows] = ~shapely.contains_xy(geometries[a], eq[rows], nq[rows])
        if not bad.any():
            return eq, nq
        e[bad], n[bad] = geography.random_points_in_areas(areas, codes[area_idx[bad]], rng)
    raise RuntimeError("could not place points inside their areas")


def _context(weeks: int, last_week: str, seed: int) -> _Context:
    week_list = iso_weeks(weeks, last_week)
    mondays = [_monday(w) for w in week_list]
    areas = geography.build_areas().sort_values("area_code", ignore_index=True)
    codes = areas["area_code"].astype(str).to_numpy()
    names = areas["area_name"].astype(str).str.strip().to_numpy()
    for code in (*VULNERABLE, *CITY, UNUSUAL["area_code"], INTERVENTION["area_code"], *(h[0] for h in HOT_SPOTS)):
        if code not in codes:
            raise ValueError(f"area {code} is not one of the municipality's areas")
    register = _build_register(areas, _rng(seed, "register"))
    area_addresses = [np.flatnonzero(register["area"].to_numpy() == a) for a in range(len(codes))]

    A, C, W = len(codes), len(CATEGORIES), len(week_list)
    kind_letter = np.array([c[4] for c in codes])
    affinity = np.ones((A, C))
    vulnerable = np.isin(codes, VULNERABLE)
    city = np.isin(codes, CITY)
    suburb_cats = [CAT[c] for c in SUBURB_CATEGORIES]
    city_cats = [CAT[c] for c in CITY_CATEGORIES]
    affinity[np.ix_(vulnerable, suburb_cats)] *= 3.0
    affinity[np.ix_(city, city_cats)] *= 4.0
    rural = kind_letter != "C"
    affinity[np.ix_(rural, [CAT["burglary"], CAT["theft"]])] *= 1.8

    hot_area = np.full(A, -1)
    hot_points = np.zeros((len(HOT_SPOTS), 2))
    hot_cats = np.zeros((len(HOT_SPOTS), C), dtype=bool)
    hot_addresses = []
    reg_e, reg_n = register["e"].to_numpy(), register["n"].to_numpy()
    for h, (code, _label, cats) in enumerate(HOT_SPOTS):
        a = int(np.flatnonzero(codes == code)[0])
        hot_area[a] = h
        point = areas.geometry.iloc[a].point_on_surface()
        hot_points[h] = (round(point.x), round(point.y))
        idx = [CAT[c] for c in cats]
        hot_cats[h, idx] = True
        affinity[a, idx] *= HOT_SPOT_RATE
        own = area_addresses[a]
        distance = np.hypot(reg_e[own] - hot_points[h, 0], reg_n[own] - hot_points[h, 1])
        hot_addresses.append(own[np.argsort(distance, kind="stable")[:HOT_SPOT_NEAREST_ADDRESSES]])
    affinity[int(np.flatnonzero(codes == UNUSUAL["area_code"])[0]), CAT[UNUSUAL["category"]]] *= UNUSUAL_AREA_BASE_BOOST
    intervention_area = int(np.flatnonzero(codes == INTERVENTION["area_code"])[0])
    for cat in INTERVENTION["categories"]:
        affinity[intervention_area, CAT[cat]] *= INTERVENTION_AREA_BASE_BOOST

    week_numbers = np.array([m.isocalendar()[1] for m in mondays], dtype=float)
    season = np.ones((W, C))
    for cat, (amplitude, peak) in SEASON.items():
        season[:, CAT[cat]] = 1 + amplitude * np.cos(2 * np.pi * (week_numbers - peak) / 52.18)

    effect = np.ones((W, A, C))
    unusual_week = W - 1 - UNUSUAL["weeks_before_last"]
    intervention_week = W - 1 - INTERVENTION["weeks_before_last"]
    if unusual_week >= 0:
        unusual_area = int(np.flatnonzero(codes == UNUSUAL["area_code"])[0])
        effect[unusual_week, unusual_area, CAT[UNUSUAL["category"]]] *= UNUSUAL["multiplier"]
    for cat in INTERVENTION["categories"]:
        effect[max(intervention_week, 0):, intervention_area, CAT[cat]] *= INTERVENTION["multiplier"]

    school_area = np.array([int(np.flatnonzero(codes == s[1])[0]) for s in SCHOOLS])
    school_rng = _rng(seed, "schools-addresses")
    school_address = np.array([int(school_rng.choice(area_addresses[a])) for a in school_area])

    export_wall = np.array([_epoch(m + timedelta(days=7)) + 6 * 3600 for m in mondays])
    export_utc = _localise(export_wall, _rng(seed, "export"))
    return _Context(seed, week_list, mondays, areas, codes, names, register, area_addresses, hot_area, hot_points,
                    hot_cats, hot_addresses, affinity, season, effect, school_area, school_address, unusual_week,
                    intervention_week, export_utc)


# --------------------------------------------------------------------------------------------------------
# Drawing rows: counts on the (week x unit x category) grid, then times and places
# --------------------------------------------------------------------------------------------------------


def _rates(ctx: _Context, spec: _Spec) -> tuple[np.ndarray, np.ndarray]:
    """Expected rows (W, U, C) of a partner and the unit -> area map."""
    unit_area, unit_weight = ctx.coverage(spec.coverage)
    share = np.array([spec.shares.get(c, 0.0) for c in CATEGORIES])
    share = share / share.sum()
    weights = unit_weight[:, None] * ctx.affinity[unit_area]
    weights = weights / np.where(weights.sum(axis=0, keepdims=True) > 0, weights.sum(axis=0, keepdims=True), 1)
    holiday = np.ones(len(ctx.weeks))
    if spec.partner == "schools":
        holiday = np.array([SCHOOL_HOLIDAYS.get(m.isocalendar()[1], 1.0) for m in ctx.mondays])
    lam = (spec.mean * share[None, None, :] * weights[None, :, :] * ctx.season[:, None, :]
           * holiday[:, None, None] * ctx.effect[:, unit_area, :])
    return lam, unit_area


def _draw_counts(lam: np.ndarray, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson counts per cell, redrawn per week until the week's total is in [lo, hi] (a partner's usual
    volume: an export far outside it would be a broken export, not a busy week)."""
    counts = np.empty(lam.shape, dtype="int64")
    for w in range(lam.shape[0]):
        for _ in range(2000):
            k = rng.poisson(lam[w])
            if lo[w] <= k.sum() <= hi[w]:
                break
        counts[w] = k
    return counts


def _draw_times(ctx: _Context, week: np.ndarray, profile_names: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """UTC seconds of each row's start: a weekday/hour slot from the row's profile, in its ISO week."""
    slot = np.zeros(len(week), dtype="int64")
    for name in sorted(set(profile_names.tolist())):
        rows = np.flatnonzero(profile_names == name)
        slot[rows] = rng.choice(168, size=rows.size, p=PROFILES[name])
    monday = np.array([_epoch(m) for m in ctx.mondays], dtype="int64")
    wall = (monday[week] + (slot // 24) * 86400 + (slot % 24) * 3600 + rng.integers(0, 60, len(week)) * 60
            + rng.integers(0, 60, len(week)))
    return _localise(wall, rng)


def _draw_places(rng: np.random.Generator, categories: np.ndarray,
                 labels: dict[str, list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """(canonical place type, the partner's own label) per row."""
    place = np.empty(len(categories), dtype=object)
    label = np.empty(len(categories), dtype=object)
    for c in np.unique(categories):
        rows = np.flatnonzero(categories == c)
        dist = PLACE_BY_CATEGORY[CATEGORIES[c]]
        chosen = _pick(rng, list(dist), rows.size, list(dist.values()))
        place[rows] = chosen
        for kind in np.unique(chosen):
            sub = rows[chosen == kind]
            options = labels.get(kind) or labels["other"]
            label[sub] = _pick(rng, options, sub.size)
    return place, label


@dataclass
class _Rows:
    """A partner's rows before formatting (numpy columns, one entry per row)."""

    partner: str
    week: np.ndarray
    area: np.ndarray
    unit: np.ndarray
    cat: np.ndarray
    start: np.ndarray  # UTC seconds
    hot: np.ndarray  # hot spot index or -1

    def __len__(self) -> int:
        return len(self.week)

    def take(self, order: np.ndarray) -> "_Rows":
        return _Rows(self.partner, *(getattr(self, f)[order] for f in ("week", "area", "unit", "cat", "start", "hot")))


def _simulate(ctx: _Context, spec: _Spec, rng: np.random.Generator) -> tuple[_Rows, np.ndarray]:
    lam, unit_area = _rates(ctx, spec)
    W = len(ctx.weeks)
    lo = np.full(W, spec.lo)
    hi = np.full(W, spec.hi)
    if spec.partner == "schools":
        holiday = np.array([SCHOOL_HOLIDAYS.get(m.isocalendar()[1], 1.0) < 1 for m in ctx.mondays])
        lo[holiday] = 0
    counts = _draw_counts(lam, lo, hi, rng)
    flat = np.repeat(np.arange(counts.size), counts.ravel())
    week, unit, cat = np.unravel_index(flat, counts.shape)
    area = unit_area[unit]
    profiles = np.array([spec.profile(CATEGORIES[c]) for c in range(len(CATEGORIES))], dtype=object)[cat]
    start = _draw_times(ctx, week, profiles, rng)
    h = ctx.hot_area[area]
    hot = np.where((h >= 0) & ctx.hot_cats[np.maximum(h, 0), cat] & (rng.random(len(area)) < HOT_SPOT_SHARE), h, -1)
    rows = _Rows(spec.partner, week, area, unit, cat, start, hot).take(np.argsort(start, kind="stable"))
    return rows, counts.sum(axis=(1, 2))


def _point_locations(ctx: _Context, rows: _Rows, rng: np.random.Generator,
                     quantise: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """SWEREF 99 TM points: around the hot spot for hot rows, uniform in the area otherwise."""
    e, n = geography.random_points_in_areas(ctx.areas, ctx.codes[rows.area], rng)
    hot = rows.hot >= 0
    e[hot] = ctx.hot_points[rows.hot[hot], 0] + rng.normal(0, HOT_SPOT_SD_M, hot.sum())
    n[hot] = ctx.hot_points[rows.hot[hot], 1] + rng.normal(0, HOT_SPOT_SD_M, hot.sum())
    return _points(ctx.areas, rows.area, rng, quantise, start=(e, n))


def _address_locations(ctx: _Context, rows: _Rows, rng: np.random.Generator) -> np.ndarray:
    """Register row per row: one of the addresses nearest the hot spot for hot rows, else any in the area."""
    out = np.empty(len(rows), dtype="int64")
    u = rng.random(len(rows))
    for a in np.unique(rows.area):
        sel = np.flatnonzero(rows.area == a)
        own = ctx.area_addresses[a]
        out[sel] = own[(u[sel] * len(own)).astype("int64")]
    for h, near in enumerate(ctx.hot_addresses):
        sel = np.flatnonzero(rows.hot == h)
        out[sel] = near[(u[sel] * len(near)).astype("int64")]
    return out


# --------------------------------------------------------------------------------------------------------
# Free text
# --------------------------------------------------------------------------------------------------------


def _texts(ctx: _Context, partner: str, rows: _Rows, address: np.ndarray | None, rng: np.random.Generator,
           persons: _Persons | None = None) -> tuple[list[str], list[dict]]:
    """Swedish free text per row, some with personal details (what the scrubber must remove).

    Returns the texts and, per row that got a detail, which kinds it holds (for the truth file).
    """
    templates = TEXTS[partner]
    share, extras = SENSITIVE[partner]
    today = ctx.mondays[-1] + timedelta(days=7)
    out: list[str] = []
    details: list[dict] = []
    register_address = ctx.register["address"].to_numpy()
    pick = rng.random((len(rows), 6))
    phrase = rng.integers(0, len(PLACE_PHRASES), len(rows))
    for i in range(len(rows)):
        cat = CATEGORIES[rows.cat[i]]
        options = templates.get(cat) or templates.get("other") or ("",)
        template = options[int(pick[i, 0] * len(options))]
        omr = ctx.district(int(rows.area[i]))
        plats = HOT_SPOTS[rows.hot[i]][1] if rows.hot[i] >= 0 else PLACE_PHRASES[phrase[i]].format(omr=omr)
        adress = register_address[address[i]] if address is not None else \
            register_address[ctx.area_addresses[rows.area[i]][int(pick[i, 1] * len(ctx.area_addresses[rows.area[i]]))]]
        values = {"plats": plats, "omr": omr, "adress": adress, "antal": 4 + int(pick[i, 2] * 20),
                  "ak": 4 + int(pick[i, 3] * 6)}
        text = template.format(**values)
        if pick[i, 4] < share:
            extra = extras[int(pick[i, 5] * len(extras))]
            first = FIRST_NAMES[rng.integers(0, len(FIRST_NAMES))]
            last = LAST_NAMES[rng.integers(0, len(LAST_NAMES))]
            domain = ("gmail.com", "hotmail.com", "telia.com")[rng.integers(0, 3)]
            fill = {"namn": f"{first} {last}", "tel": _phone(rng), "lgh": f"{rng.integers(1001, 1404)}",
                    "adress": values["adress"], "plate": _plate(rng),
                    "email": f"{_ascii(first)}.{_ascii(last)}@{domain}"}
            if "{pnr}" in extra:
                pool = persons or ctx.persons["text"]
                fill["pnr"] = pool.render(np.array([rng.integers(0, len(pool.year))]),
                                          np.array([rng.integers(0, 6)]), today)[0]
            text += extra.format(**fill)
            kinds = ("namn", "tel", "pnr", "adress", "plate", "email", "lgh")
            details.append({"row": i, "kinds": sorted(k for k in kinds if "{" + k + "}" in extra)})
        out.append(text)
    return out, details


# --------------------------------------------------------------------------------------------------------
# Partner writers
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Written:
    files: list[Path] = field(default_factory=list)
    rows_per_week: dict[str, int] = field(default_factory=dict)
    bad_rows: list[dict] = field(default_factory=list)
    unmatched_addresses: list[dict] = field(default_factory=list)
    sensitive: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    truth_rows: list[pd.DataFrame] = field(default_factory=list)


def _truth_frame(ctx: _Context, partner: str, files: np.ndarray, row_in_file: np.ndarray, record_id: Any,
                 rows: _Rows, category_text: Any, precision: str) -> pd.DataFrame:
    return pd.DataFrame({
        "partner": partner, "file": files, "source_row": row_in_file.astype("int64"),
        "record_id": pd.array(np.asarray(record_id, dtype=object), dtype="str"),
        "iso_week": np.asarray(ctx.weeks, dtype=object)[rows.week], "area_code": ctx.codes[rows.area],
        "category": np.asarray(CATEGORIES, dtype=object)[rows.cat],
        "partner_category": pd.array(np.asarray(category_text, dtype=object), dtype="str"),
        "hot_spot": rows.hot.astype("int64"), "precision": precision,
    })


def _record_numbers(years: np.ndarray, rng: np.random.Generator, low: int, high: int, base: int) -> np.ndarray:
    """Running case numbers per year with gaps (other cases in the same system), in row order."""
    steps = rng.integers(low, high, len(years))
    out = np.empty(len(years), dtype="int64")
    for year in np.unique(years):
        sel = np.flatnonzero(years == year)
        out[sel] = base + np.cumsum(steps[sel])
    return out


def _week_split(rows: _Rows, n_weeks: int) -> list[np.ndarray]:
    return [np.flatnonzero(rows.week == w) for w in range(n_weeks)]


def _reported(ctx: _Context, rows: _Rows, after: np.ndarray, rng: np.random.Generator, median_h: float,
              sigma: float) -> np.ndarray:
    """When the partner recorded it: after the event, before the week's export."""
    delay = np.exp(rng.normal(np.log(median_h * 3600), sigma, len(rows))).astype("int64")
    return np.minimum(after + 60 + delay, ctx.export_utc[rows.week] - 60 - rng.integers(0, 3600, len(rows)))


def _write_police_cases(ctx: _Context, home: Home, rng: np.random.Generator) -> _Written:
    spec = SPECS["police_cases"]
    rows, _ = _simulate(ctx, spec, rng)
    out = _Written()
    cats = [CATEGORIES[c] for c in rows.cat]
    code = np.empty(len(rows), dtype=object)
    name = np.empty(len(rows), dtype=object)
    u = rng.random(len(rows))
    for cat in set(cats):
        sel = np.flatnonzero(np.asarray(cats) == cat)
        table = OFFENCES[cat]
        p = np.array([w for _, _, w in table], dtype=float)
        choice = np.searchsorted(np.cumsum(p / p.sum()), u[sel], side="right").clip(0, len(table) - 1)
        code[sel] = [table[k][0] for k in choice]
        name[sel] = [table[k][1] for k in choice]
    _, place_label = _draw_places(rng, rows.cat, POLICE_PLACE_LABELS)
    e, n = _point_locations(ctx, rows, rng, np.round)
    interval_share = {"burglary": 0.6, "theft": 0.3, "property_damage": 0.4, "graffiti": 0.5}
    has_to = rng.random(len(rows)) < np.array([interval_share.get(c, 0.0) for c in cats])
    end = rows.start + rng.integers(3600, 10 * 3600, len(rows))
    end = np.where(has_to, np.minimum(end, ctx.export_utc[rows.week] - 7200), rows.start)
    reported = _reported(ctx, rows, end, rng, 1.5, 1.2)
    order = np.lexsort((rows.start, reported))
    rows, code, name, place_label, e, n, has_to, end, reported = (
        rows.take(order), code[order], name[order], place_label[order], e[order], n[order], has_to[order],
        end[order], reported[order])
    rep_wall, _ = _wall(reported)
    years = pd.DatetimeIndex(rep_wall.astype("datetime64[s]")).year.to_numpy()
    numbers = _record_numbers(years, rng, 20, 140, 1000)
    record = np.array([f"5000-K{k}-{y % 100:02d}" for k, y in zip(numbers, years)], dtype=object)
    start_wall, _ = _wall(rows.start)
    end_wall, _ = _wall(end)

    # About 1% of cases are revised the following week: reclassified within the same category where the
    # category has more than one offence code, else the end of the interval is corrected. Same Diarienummer,
    # Version 2: the later delivery must replace the earlier one (upsert by record id and revision).
    revise = (rng.random(len(rows)) < 0.01) & (rows.week < len(ctx.weeks) - 1)
    revisions = []
    columns = {
        "Diarienummer": record, "Version": np.full(len(rows), "1", dtype=object),
        "Anmäld": _fmt(rep_wall, "%Y-%m-%d %H:%M"), "Brott från": _fmt(start_wall, "%Y-%m-%d %H:%M"),
        "Brott till": _fmt(end_wall, "%Y-%m-%d %H:%M", ~has_to), "Brottskod": code, "Brottsbenämning": name,
        "Kommun": np.full(len(rows), settings.MUNICIPALITY_NAME, dtype=object), "Platstyp": place_label,
        "Koordinat N": n.astype("int64").astype(str), "Koordinat E": e.astype("int64").astype(str),
    }
    table = pa.table({k: (v if isinstance(v, pa.Array) else pa.array(v, pa.string())) for k, v in columns.items()})
    truth_files = np.empty(len(rows), dtype=object)
    truth_source_row = np.zeros(len(rows), dtype="int64")
    carried: pa.Table | None = None
    for w, sel in enumerate(_week_split(rows, len(ctx.weeks))):
        path = home.partner_inbox("police_cases") / f"police_cases_{ctx.weeks[w]}.csv"
        part = table.take(pa.array(sel, pa.int64()))
        truth_files[sel] = path.name
        truth_source_row[sel] = np.arange(1, len(sel) + 1)
        if carried is not None and carried.num_rows:
            part = pa.concat_tables([part, carried])
        data = _csv_bytes({k: part[k] for k in part.column_names}, ",")
        out.files.append(_atomic_write(path, data, home.work))
        out.rows_per_week[ctx.weeks[w]] = part.num_rows
        rev_rows = sel[revise[sel]]
        carried = None
        if rev_rows.size:
            rev = table.take(pa.array(rev_rows, pa.int64())).to_pydict()
            for j, i in enumerate(rev_rows):
                cat = CATEGORIES[rows.cat[i]]
                alternatives = [t for t in OFFENCES[cat] if t[0] != rev["Brottskod"][j]]
                rev["Version"][j] = "2"
                if alternatives:
                    new = alternatives[int(rng.integers(0, len(alternatives)))]
                    change = f"Brottskod {rev['Brottskod'][j]} -> {new[0]}"
                    rev["Brottskod"][j], rev["Brottsbenämning"][j] = new[0], new[1]
                else:
                    corrected = _fmt(np.array([end_wall[i] + 3600]), "%Y-%m-%d %H:%M")[0].as_py()
                    change = f"Brott till -> {corrected}"
                    rev["Brott till"][j] = corrected
                revisions.append({"record_id": rev["Diarienummer"][j], "first_file": path.name,
                                  "revised_in": f"police_cases_{ctx.weeks[w + 1]}.csv", "change": change})
            carried = pa.table({k: pa.array(v, pa.string()) for k, v in rev.items()})
    out.extra["revisions"] = revisions
    out.truth_rows.append(_truth_frame(ctx, "police_cases", truth_files, truth_source_row, record, rows, code, "point"))
    return out


def _cost_text(values: np.ndarray) -> list[str]:
    """Swedish money: non-breaking space as thousands separator, decimal comma ('1 234,50')."""
    out = []
    for v in values.tolist():
        if v <= 0:
            out.append("")
            continue
        whole, cents = divmod(int(round(v * 100)), 100)
        out.append(f"{whole:,}".replace(",", "\u00a0") + f",{cents:02d}")
    return out


def _address_variants(addresses: np.ndarray, rng: np.random.Generator, share_missing: float,
                      share_cosmetic: float) -> tuple[np.ndarray, np.ndarray]:
    """Addresses as partners type them: some with a different case or spacing (the register still matches),
    some not in the register at all (an apartment or entrance suffix, a typo, a number that doesn't exist)."""
    out = addresses.astype(object).copy()
    u = rng.random(len(out))
    missing = u < share_missing
    cosmetic = (u >= share_missing) & (u < share_missing + share_cosmetic)
    kinds = rng.integers(0, 4, len(out))
    for i in np.flatnonzero(missing):
        street, _, number = out[i].rpartition(" ")
        kind = kinds[i]
        if kind == 0:
            out[i] = f"{out[i]} lgh {rng.integers(1001, 1304)}"
        elif kind == 1:
            out[i] = f"{out[i]} B" if not number[-1:].isalpha() else f"{street} {number[:-1]} {number[-1]}"
        elif kind == 2:
            out[i] = f"{street} {int(re.sub(r'[^0-9]', '', number)) + 300}"
        else:
            out[i] = f"{street[:-3]}{street[-2:]} {number}" if len(street) > 6 else f"{street}s {number}"
    for i in np.flatnonzero(cosmetic):
        out[i] = out[i].upper() if kinds[i] % 2 else out[i].replace(" ", "  ", 1)
    return out, missing


def _bad_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    """Problem kind per row: '' or blank_category / unknown_category / bad_date, on about BAD_ROW_SHARE of the
    rows and at least one of each kind, so that quarantine always has something real to show."""
    kinds = np.full(n, "", dtype=object)
    k = min(n, max(3, int(round(n * BAD_ROW_SHARE))))
    sel = np.sort(rng.choice(n, size=k, replace=False))
    kinds[sel] = np.array(["blank_category", "unknown_category", "bad_date"], dtype=object)[np.arange(k) % 3]
    return kinds


def _register_keys(ctx: _Context) -> set:
    return set(geography.normalise_address(ctx.register["address"]).dropna().tolist())


def _write_housing(ctx: _Context, home: Home, rng: np.random.Generator) -> _Written:
    spec = SPECS["housing"]
    rows, _ = _simulate(ctx, spec, rng)
    out = _Written()
    address = _address_locations(ctx, rows, rng)
    category = np.array([_pick(rng, HOUSING_LABELS[CATEGORIES[c]], 1)[0] for c in rows.cat], dtype=object)
    _, place_label = _draw_places(rng, rows.cat, HOUSING_PLACE_LABELS)
    reported = _reported(ctx, rows, rows.start, rng, 6.0, 1.0)
    order = np.lexsort((rows.start, reported))
    rows, address, category, place_label, reported = (rows.take(order), address[order], category[order],
                                                      place_label[order], reported[order])
    rep_wall, _ = _wall(reported)
    start_wall, _ = _wall(rows.start)
    years = pd.DatetimeIndex(rep_wall.astype("datetime64[s]")).year.to_numpy()
    numbers = _record_numbers(years, rng, 1, 25, 0)
    record = np.array([f"FA-{y}-{k:06d}" for k, y in zip(numbers, years)], dtype=object)
    date_only = rng.random(len(rows)) < 0.15
    occurred = np.where(date_only, np.asarray(_fmt(start_wall, "%Y-%m-%d").to_pylist(), dtype=object),
                        np.asarray(_fmt(start_wall, "%Y-%m-%d %H:%M").to_pylist(), dtype=object))
    written_address, _ = _address_variants(ctx.register["address"].to_numpy()[address], rng, 0.04, 0.03)
    texts, sensitive = _texts(ctx, "housing", rows, address, rng)
    action = _pick(rng, ["Beställt – sanering", "Åtgärdat", "Polisanmält", "Vidarebefordrat till trygghetsvärd",
                         "Ingen åtgärd", "Väntar på reservdel – beställt"], len(rows), [3, 4, 2, 2, 2, 1])
    cost = np.where(np.isin(rows.cat, [CAT["property_damage"], CAT["graffiti"], CAT["arson_fire"], CAT["burglary"]]),
                    np.round(np.exp(rng.normal(7.2, 1.0, len(rows))), 2), 0.0)
    bad = _bad_rows(len(rows), rng)
    category = np.where(bad == "blank_category", "",
                        np.where(bad == "unknown_category", UNKNOWN_CATEGORY["housing"], category))
    bad_date = np.asarray(_fmt(start_wall, "%d/%m/%Y %H:%M").to_pylist(), dtype=object)
    occurred = np.where(bad == "bad_date", bad_date, occurred)
    columns = {
        "Ärendenr": record, "Registrerad": np.asarray(_fmt(rep_wall, "%Y-%m-%d %H:%M").to_pylist(), dtype=object),
        "Händelsedatum": occurred, "Kategori": category, "Plats": place_label, "Adress": written_address,
        "Fastighet": ctx.register["fastighet"].to_numpy()[address], "Beskrivning": np.asarray(texts, dtype=object),
        "Åtgärd": action, "Kostnad kr": np.asarray(_cost_text(cost), dtype=object),
    }
    keys = _register_keys(ctx)
    normalised = geography.normalise_address(pd.Series(written_address, dtype=object)).to_numpy(dtype=object)
    in_register = np.array([k in keys for k in normalised])
    truth_files = np.empty(len(rows), dtype=object)
    truth_source_row = np.zeros(len(rows), dtype="int64")
    sensitive_rows = {d["row"]: d["kinds"] for d in sensitive}
    for w, sel in enumerate(_week_split(rows, len(ctx.weeks))):
        path = home.partner_inbox("housing") / f"housing_{ctx.weeks[w]}.csv"
        truth_files[sel] = path.name
        truth_source_row[sel] = np.arange(1, len(sel) + 1)
        data = _csv_bytes({k: v[sel] for k, v in columns.items()}, ";", eol="\r\n")
        out.files.append(_atomic_write(path, _encode(data, "windows-1252"), home.work))
        out.rows_per_week[ctx.weeks[w]] = len(sel)
        for j, i in enumerate(sel, start=1):
            if bad[i]:
                out.bad_rows.append({"partner": "housing", "file": path.name, "row": j, "record_id": record[i],
                                     "problem": bad[i]})
            if not in_register[i]:
                out.unmatched_addresses.append({"partner": "housing", "file": path.name, "row": j,
                                                "address": written_address[i]})
            if i in sensitive_rows:
                out.sensitive.append({"partner": "housing", "file": path.name, "row": j, "kinds": sensitive_rows[i]})
    precision = np.where(in_register, "address", "unplaced")
    frame = _truth_frame(ctx, "housing", truth_files, truth_source_row, record, rows, category, "address")
    frame["precision"] = precision
    frame["bad"] = bad
    out.truth_rows.append(frame)
    return out


def _xlsx_bytes(header: list[str], body: list[list[Any]], title: str, stamp: datetime,
                widths: list[int]) -> bytes:
    """An .xlsx workbook, byte-identical for the same content: document times and zip entry times fixed."""
    import openpyxl
    from openpyxl.styles import Font

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = title
    sheet.append(header)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for values in body:
        sheet.append(values)
    for row in sheet.iter_rows(min_row=2):
        for cell in row:
            if isinstance(cell.value, datetime):
                cell.number_format = "yyyy-mm-dd hh:mm"
    for i, width in enumerate(widths):
        sheet.column_dimensions[openpyxl.utils.get_column_letter(i + 1)].width = width
    sheet.freeze_panes = "A2"
    workbook.properties.creator = "Skolornas system för tillbud och incidenter"
    workbook.properties.lastModifiedBy = "Export"
    workbook.properties.created = stamp
    workbook.properties.modified = stamp
    raw = io.BytesIO()
    workbook.save(raw)  # openpyxl stamps 'modified' with now and the zip entries with the clock: fix both
    fixed = io.BytesIO()
    stamp_text = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    with zipfile.ZipFile(raw) as source, zipfile.ZipFile(fixed, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)",
                              rb"\g<1>" + stamp_text.encode() + rb"\g<2>", data)
            entry = zipfile.ZipInfo(info.filename, date_time=stamp.timetuple()[:6])
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o600 << 16
            target.writestr(entry, data)
    return fixed.getvalue()


def _write_schools(ctx: _Context, home: Home, rng: np.random.Generator) -> _Written:
    spec = SPECS["schools"]
    rows, _ = _simulate(ctx, spec, rng)
    out = _Written()
    category = np.array([_pick(rng, SCHOOL_LABELS[CATEGORIES[c]], 1)[0] for c in rows.cat], dtype=object)
    _, place_label = _draw_places(rng, rows.cat, SCHOOL_PLACE_LABELS)
    reported = _reported(ctx, rows, rows.start, rng, 3.0, 1.0)
    order = np.lexsort((rows.start, reported))
    rows, category, place_label, reported = rows.take(order), category[order], place_label[order], reported[order]
    address = ctx.school_address[rows.unit]
    school_addresses = ctx.register["address"].to_numpy()[address].astype(object)
    # One school moved into new premises whose address the register doesn't have yet.
    new_premises = np.array([SCHOOLS[u][0] == "Tullängsskolan" for u in rows.unit])
    school_addresses[new_premises] = "Tullängsgatan 2"
    rep_wall, _ = _wall(reported)
    start_wall, _ = _wall(rows.start)
    years = pd.DatetimeIndex(rep_wall.astype("datetime64[s]")).year.to_numpy()
    numbers = _record_numbers(years, rng, 1, 9, 0)
    record = np.array([f"TI-{y}-{k:05d}" for k, y in zip(numbers, years)], dtype=object)
    texts, sensitive = _texts(ctx, "schools", rows, address, rng, ctx.persons["pupils"])
    kind = _pick(rng, ["Incident", "Tillbud"], len(rows), [0.7, 0.3])
    status = _pick(rng, ["Registrerad", "Under utredning", "Avslutad"], len(rows), [0.3, 0.3, 0.4])
    bad = _bad_rows(len(rows), rng)
    category = np.where(bad == "blank_category", None,
                        np.where(bad == "unknown_category", UNKNOWN_CATEGORY["schools"], category))
    header = ["Ärendenummer", "Skola", "Skolans adress", "Datum och tid", "Typ", "Kategori", "Plats",
              "Beskrivning", "Registrerad", "Status"]
    keys = _register_keys(ctx)
    in_register = np.array([geography.normalise_address(pd.Series([a])).iloc[0] in keys for a in school_addresses])
    truth_files = np.empty(len(rows), dtype=object)
    truth_source_row = np.zeros(len(rows), dtype="int64")
    sensitive_rows = {d["row"]: d["kinds"] for d in sensitive}
    for w, sel in enumerate(_week_split(rows, len(ctx.weeks))):
        path = home.partner_inbox("schools") / f"schools_{ctx.weeks[w]}.xlsx"
        truth_files[sel] = path.name
        truth_source_row[sel] = np.arange(1, len(sel) + 1)
        body = []
        for j, i in enumerate(sel, start=1):
            when = datetime(1970, 1, 1) + timedelta(seconds=int(start_wall[i]))
            occurred: Any = when
            if bad[i] == "bad_date":
                occurred = when.strftime("%d/%m/%Y kl %H.%M")  # typed by hand: text, not a date cell
                out.bad_rows.append({"partner": "schools", "file": path.name, "row": j, "record_id": record[i],
                                     "problem": "bad_date"})
            elif bad[i]:
                out.bad_rows.append({"partner": "schools", "file": path.name, "row": j, "record_id": record[i],
                                     "problem": bad[i]})
            if not in_register[i]:
                out.unmatched_addresses.append({"partner": "schools", "file": path.name, "row": j,
                                                "address": school_addresses[i]})
            if i in sensitive_rows:
                out.sensitive.append({"partner": "schools", "file": path.name, "row": j, "kinds": sensitive_rows[i]})
            body.append([record[i], SCHOOLS[rows.unit[i]][0], school_addresses[i], occurred, kind[i], category[i],
                         place_label[i], texts[i], datetime(1970, 1, 1) + timedelta(seconds=int(rep_wall[i])),
                         status[i]])
        stamp = datetime(1970, 1, 1) + timedelta(seconds=int(_wall(ctx.export_utc[w:w + 1])[0][0]))
        data = _xlsx_bytes(header, body, "Tillbud och incidenter", stamp, [16, 26, 24, 17, 10, 26, 18, 70, 17, 16])
        out.files.append(_atomic_write(path, data, home.work))
        out.rows_per_week[ctx.weeks[w]] = len(sel)
    frame = _truth_frame(ctx, "schools", truth_files, truth_source_row, record, rows,
                         np.where(category == None, "", category), "address")  # noqa: E711
    frame["precision"] = np.where(in_register, "address", "unplaced")
    frame["bad"] = bad
    out.truth_rows.append(frame)
    return out


def _template_category(rng: np.random.Generator, partner: str, cats: np.ndarray, labels: dict[str, str]) -> np.ndarray:
    code = rng.random(len(cats)) < TEMPLATE_CODE_SHARE[partner]
    return np.where(code, np.asarray(CATEGORIES, dtype=object)[cats],
                    np.asarray([labels[c] for c in CATEGORIES], dtype=object)[cats])


def _taxonomy_labels() -> dict[str, str]:
    raw = yaml.safe_load((settings.SCHEMAS_DIR / "taxonomy.yaml").read_text(encoding="utf-8"))
    return {code: spec["sv"] for code, spec in raw["categories"].items()}


def _write_template(ctx: _Context, home: Home, partner: str, rng: np.random.Generator) -> _Written:
    """Social services, home care, guards: the delivery template, each in its own encoding and delimiter."""
    spec = SPECS[partner]
    rows, _ = _simulate(ctx, spec, rng)
    out = _Written()
    n = len(rows)
    labels = _taxonomy_labels()
    category = _template_category(rng, partner, rows.cat, labels)
    place, _ = _draw_places(rng, rows.cat, {k: [k] for k in PLACE_TYPES})
    if partner == "home_care":  # home care sees homes, their stairwells and the street outside
        place = _pick(rng, ["residence", "stairwell", "street", "parking"], n, [0.5, 0.3, 0.12, 0.08])
    place_text = np.where(rng.random(n) < TEMPLATE_CODE_SHARE[partner], place,
                          np.asarray([TEMPLATE_PLACE_LABELS[p] for p in place], dtype=object))
    start_wall, _ = _wall(rows.start)
    years = pd.DatetimeIndex(start_wall.astype("datetime64[s]")).year.to_numpy()
    interval = (rng.random(n) < 0.2) & np.isin(rows.cat, [CAT[c] for c in ("unsafe_place", "littering", "graffiti",
                                                                             "property_damage")])
    end_wall, _ = _wall(rows.start + rng.integers(3600, 12 * 3600, n))
    empty = np.full(n, "", dtype=object)
    columns: dict[str, Any] = {c: empty.copy() for c in TEMPLATE_COLUMNS}
    columns["occurred_at"] = np.asarray(_fmt(start_wall, "%Y-%m-%d %H:%M").to_pylist(), dtype=object)
    columns["occurred_to"] = np.asarray(_fmt(end_wall, "%Y-%m-%d %H:%M", ~interval).to_pylist(), dtype=object)
    columns["category"] = category
    columns["place_type"] = place_text
    address = _address_locations(ctx, rows, rng)
    precision = np.full(n, "unplaced", dtype=object)
    persons = ctx.persons.get(partner)
    today = ctx.mondays[-1] + timedelta(days=7)
    if partner == "guards":
        numbers = _record_numbers(years, rng, 1, 4, 0)
        day = _fmt(start_wall, "%Y%m%d").to_pylist()
        columns["record_id"] = np.array([f"RON-{d}-{k:05d}" for d, k in zip(day, numbers)], dtype=object)

        e, n_ = _point_locations(ctx, rows, rng, lambda v: v)
        lat, lon = geography.to_wgs84(e, n_)
        lat, lon = np.round(lat, 6), np.round(lon, 6)
        # the rounded WGS 84 point must still lie in the row's area; redraw the rare one that crosses a border
        back_e, back_n = geography.to_sweref(lat, lon)
        geometries = ctx.areas.geometry.to_numpy()
        for _ in range(20):
            bad = np.array([not shapely.contains_xy(geometries[a], x, y) for a, x, y in zip(rows.area, back_e, back_n)])
            if not bad.any():
                break
            e2, n2 = geography.random_points_in_areas(ctx.areas, ctx.codes[rows.area[bad]], rng)
            la, lo = geography.to_wgs84(e2, n2)
            lat[bad], lon[bad] = np.round(la, 6), np.round(lo, 6)
            back_e, back_n = geography.to_sweref(lat, lon)
        columns["latitude"] = np.array([f"{v:.6f}".replace(".", ",") for v in lat], dtype=object)
        columns["longitude"] = np.array([f"{v:.6f}".replace(".", ",") for v in lon], dtype=object)
        precision[:] = "point"
    else:
        prefix = {"social_services": "IFO", "home_care": "HT"}[partner]
        numbers = _record_numbers(years, rng, 1, 12, 0)
        columns["record_id"] = np.array([f"{prefix}-{y}-{k:05d}" for k, y in zip(numbers, years)], dtype=object)
        u = rng.random(n)
        if partner == "social_services":
            give_area, give_address = u < 0.6, (u >= 0.6) & (u < 0.9)
        else:
            give_area, give_address = (u >= 0.8) & (u < 0.9), u < 0.8
        written, missing = _address_variants(ctx.register["address"].to_numpy()[address], rng, 0.03, 0.02)
        columns["address"] = np.where(give_address, written, "")
        columns["area_code"] = np.where(give_area, ctx.codes[rows.area], "")
        precision[give_address & ~missing] = "address"
        precision[give_area] = "area"
        has_person = rng.random(n) < (0.75 if partner == "social_services" else 0.5)
        who = rng.integers(0, len(persons.year), n)
        forms = rng.integers(0, 6, n)
        rendered = np.asarray(persons.render(who, forms, today), dtype=object)
        columns["person_id"] = np.where(has_person, rendered, "")
        out.extra["person_forms"] = sorted({int(f) for f in forms[has_person]})
    texts, sensitive = _texts(ctx, partner, rows, address, rng, persons if partner != "guards" else None)
    columns["description"] = np.asarray(texts, dtype=object)
    encoding, delimiter, eol = {"social_services": ("utf-8", ",", "\n"), "home_care": ("windows-1252", ";", "\r\n"),
                                "guards": ("utf-8-sig", ";", "\r\n")}[partner]
    truth_files = np.empty(n, dtype=object)
    truth_source_row = np.zeros(n, dtype="int64")
    sensitive_rows = {d["row"]: d["kinds"] for d in sensitive}
    for w, sel in enumerate(_week_split(rows, len(ctx.weeks))):
        path = home.partner_inbox(partner) / f"{partner}_{ctx.weeks[w]}.csv"
        truth_files[sel] = path.name
        truth_source_row[sel] = np.arange(1, len(sel) + 1)
        data = _csv_bytes({k: columns[k][sel] for k in TEMPLATE_COLUMNS}, delimiter, eol=eol)
        out.files.append(_atomic_write(path, _encode(data, encoding), home.work))
        out.rows_per_week[ctx.weeks[w]] = len(sel)
        for j, i in enumerate(sel, start=1):
            if i in sensitive_rows:
                out.sensitive.append({"partner": partner, "file": path.name, "row": j, "kinds": sensitive_rows[i]})
    frame = _truth_frame(ctx, partner, truth_files, truth_source_row, columns["record_id"], rows, category, "point")
    frame["precision"] = precision
    out.truth_rows.append(frame)
    return out


# --------------------------------------------------------------------------------------------------------
# polisen.se events
# --------------------------------------------------------------------------------------------------------

EVENT_TEXTS = {
    "Misshandel": ("En man har misshandlats i {omr} under kvällen.", "En person är misstänkt för brott i {omr}",
                   "Bråk mellan flera personer vid {plats}, en person förd till sjukhus."),
    "Misshandel, grov": ("En man har förts till sjukhus efter en grov misshandel i {omr}.",),
    "Stöld": ("En stöld har inträffat i en butik i {omr}.", "En kvinna är misstänkt för brott i {omr}",
              "Försök till stöld av cykel vid {plats}."),
    "Stöld/inbrott": ("En stöld genom inbrott har inträffat i en bostad i {omr}.",
                      "Inbrott i källarförråd i {omr}."),
    "Inbrott": ("Inbrott i en lokal i {omr} under natten.",),
    "Brand": ("Polis och räddningstjänst är på plats vid en brand i {omr}.",
              "En bil har brunnit i {omr} under natten.", "Det brinner i en container vid {plats}."),
    "Skadegörelse": ("Skadegörelse på en skola i {omr}.", "Flera bilar har fått rutor krossade i {omr}."),
    "Rån": ("En ung man har blivit rånad vid {plats}.", "En butik i {omr} utsattes för ett rån under kvällen."),
    "Rån, försök": ("Försök till rån vid {plats}.",),
    "Narkotikabrott": ("En man är misstänkt för narkotikabrott i {omr}.",
                       "Två personer kontrollerade vid {plats}, båda misstänks för narkotikabrott."),
    "Olaga hot": ("En person är misstänkt för olaga hot i {omr}.",),
    "Knivlagen": ("En man i 20-årsåldern misstänks för brott mot knivlagen vid {plats}.",),
    "Vapenlagen": ("En man har gripits misstänkt för brott mot vapenlagen i {omr}.",),
    "Fylleri/LOB": ("En berusad man omhändertogs vid {plats}.",),
    "Våld/hot mot tjänsteman": ("En man är misstänkt för våld mot tjänsteman i {omr}.",),
    "Trafikolycka": ("En trafikolycka har inträffat på {gata} i Örebro.", "Två bilister har kolliderat i {omr}."),
    "Trafikolycka, personskada": ("En cyklist har skadats i en trafikolycka på {gata}.",),
    "Trafikolycka, singel": ("En bil har kört av vägen på {gata}.",),
    "Rattfylleri": ("En bilist misstänks för rattfylleri på {gata}.",),
    "Trafikbrott": ("En bilist misstänks för vårdslöshet i trafik i {omr}.",),
    "Skottlossning": ("Polisen har fått larm om skottlossning i {omr}. Ingen person ska ha skadats.",),
    "Explosion": ("En kraftig smäll har hörts i {omr}, polisen undersöker platsen.",),
    "Smällar": ("Angående smällar i området {omr} under kvällen.",),
    "Bråk": ("Bråk mellan ungdomar vid {plats}.",),
    "Mord/dråp, försök": ("En man har skadats allvarligt i {omr}, polisen utreder försök till mord.",),
    "Mord/dråp": ("En person har avlidit efter ett våldsbrott i {omr}.",),
}
EVENT_PROFILE = {t: "night" for t in ("Misshandel", "Misshandel, grov", "Fylleri/LOB", "Bråk", "Olaga hot", "Rån",
                                      "Rån, försök", "Knivlagen", "Skottlossning", "Explosion", "Smällar",
                                      "Mord/dråp", "Mord/dråp, försök", "Rattfylleri")}
EVENT_PROFILE.update({t: "evening" for t in ("Brand", "Skadegörelse", "Narkotikabrott", "Vapenlagen")})


def _write_police_events(ctx: _Context, home: Home, rng: np.random.Generator) -> _Written:
    out = _Written()
    types = [t for t, _ in POLICE_EVENT_TYPES]
    freq = np.array([c for _, c in POLICE_EVENT_TYPES], dtype=float)
    lo, hi = POLICE_EVENTS_RANGE
    population = ctx.areas["population"].fillna(0).to_numpy(dtype=float)
    area_weight = population * np.where(np.isin(ctx.codes, VULNERABLE) | np.isin(ctx.codes, CITY), 3.0, 1.0)
    area_weight /= area_weight.sum()
    streets = list(CITY_STREETS) + ["E18", "Rv 50", "Mosåsvägen", "Skjutbanevägen", "Hedgatan", "Rudbecksgatan"]
    monday = np.array([_epoch(m) for m in ctx.mondays], dtype="int64")
    unusual = ctx.area_index(UNUSUAL["area_code"])
    ref_id, ref_utc = 650273, int(pd.Timestamp("2026-08-22 07:13:04", tz="UTC").timestamp())
    last_id = 0
    county_rows = []
    truth_frames = []
    for w in range(len(ctx.weeks)):
        n = int(rng.integers(lo, hi - 4))
        kinds = list(_pick(rng, types, n, freq))
        county = int(rng.integers(0, 3))
        area = rng.choice(len(ctx.codes), size=n, p=area_weight)
        special = []
        if w == ctx.unusual_week:  # the unusual week shows in the police feed too
            place = ctx.district(unusual)
            special = [
                ("Brand", f"Flera bilar har brunnit i {place} under natten, polis och räddningstjänst på plats."),
                ("Brand", f"Ytterligare en bilbrand i {place}."),
                ("Sammanfattning natt", f"Natten präglades av flera bilbränder i {place}."),
            ]
        records = []
        all_kinds = kinds + [k for k, _ in special] + ["Sammanfattning natt"] * county
        for j, kind in enumerate(all_kinds):
            is_county = j >= n + len(special)
            profile = "morning" if kind.startswith("Sammanfattning") else EVENT_PROFILE.get(kind, "day")
            if j >= n and not is_county and kind == "Brand":
                profile = "night"
            slot = int(rng.choice(168, p=PROFILES[profile]))
            published_wall = monday[w] + (slot // 24) * 86400 + (slot % 24) * 3600 + int(rng.integers(0, 3600))
            a = int(area[j]) if j < n else unusual
            text = special[j - n][1] if n <= j < n + len(special) else None
            records.append((kind, published_wall, a, is_county, text))
        walls = np.array([r[1] for r in records], dtype="int64")
        published = _localise(walls, rng)
        delay = np.where(np.array([r[0].startswith("Sammanfattning") for r in records]), 0,
                         rng.integers(3 * 60, 150 * 60, len(records)))
        occurred = published - delay
        pub_wall, pub_offset = _wall(published)
        occ_wall, _ = _wall(occurred)
        # The API's ids run over all of Sweden: about 1,380 a week (650273 was published 2026-08-22).
        ids = (ref_id + np.round((published - ref_utc) / (7 * 86400) * 1380).astype("int64")
               + rng.integers(0, 40, len(records)))
        # ids grow with publication time and never repeat across weekly files (x_i - i, running max, + i)
        order = np.argsort(published, kind="stable")
        ids_sorted = ids[order]
        ids_sorted[0] = max(ids_sorted[0], last_id + 1)
        steps = np.arange(len(order))
        ids_sorted = np.maximum.accumulate(ids_sorted - steps) + steps
        ids[order] = ids_sorted
        last_id = int(ids_sorted[-1])
        payload = []
        for i in np.argsort(-published, kind="stable"):  # the API lists the newest first
            kind, _, a, is_county, fixed_text = records[i]
            pub = datetime(1970, 1, 1) + timedelta(seconds=int(pub_wall[i]))
            occ = datetime(1970, 1, 1) + timedelta(seconds=int(occ_wall[i]))
            offset = int(pub_offset[i]) // 60
            sign = "+" if offset >= 0 else "-"
            stamp = (f"{pub.year}-{pub.month:02d}-{pub.day:02d} {pub.hour}:{pub.minute:02d}:{pub.second:02d} "
                     f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}")
            place_name = COUNTY_NAME if is_county else settings.MUNICIPALITY_NAME
            month = MONTHS_SV[occ.month - 1]
            hhmm = f"{occ.hour:02d}.{occ.minute:02d}"
            if fixed_text:
                summary = fixed_text
            elif kind.startswith("Sammanfattning"):
                summary = ("Nedan följer ett urval av nattens händelser i Polisområde Örebro." if is_county else
                           ("Natten har varit lugn i Örebro.",
                            f"Under natten har polisen bland annat ingripit mot ett bråk vid {HOT_SPOTS[2][1]} och "
                            f"en skadegörelse i {ctx.district(a)}.")[int(rng.integers(0, 2))])
            else:
                options = EVENT_TEXTS.get(kind, (f"{kind} i {ctx.district(a)}, Örebro.",))
                plats = PLACE_PHRASES[int(rng.integers(0, len(PLACE_PHRASES)))].format(omr=ctx.district(a))
                summary = options[int(rng.integers(0, len(options)))].format(
                    omr=ctx.district(a), plats=plats, gata=streets[int(rng.integers(0, len(streets)))])
            where = "Örebro län" if is_county else settings.MUNICIPALITY_NAME
            payload.append({
                "id": int(ids[i]),
                "datetime": stamp,
                "name": f"{occ.day:02d} {month} {hhmm}, {kind}, {where}",
                "summary": summary,
                "url": (f"/aktuellt/handelser/{occ.year}/{month}/{occ.day}/"
                        f"{occ.day:02d}-{month}-{hhmm}-{_slug(kind)}-{_slug(where)}/"),
                "type": kind,
                "location": {"name": place_name, "gps": COUNTY_GPS if is_county else POLICE_EVENT_GPS},
            })
        path = home.partner_inbox("police_events") / f"police_events_{ctx.weeks[w]}.json"
        data = (json.dumps(payload, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
        out.files.append(_atomic_write(path, data, home.work))
        out.rows_per_week[ctx.weeks[w]] = len(payload)
        for j, record in enumerate(payload, start=1):
            if record["location"]["name"] != settings.MUNICIPALITY_NAME:
                county_rows.append({"partner": "police_events", "file": path.name, "row": j,
                                    "record_id": str(record["id"]), "problem": "other_municipality"})
        truth_frames.append(pd.DataFrame({
            "partner": "police_events", "file": path.name, "source_row": np.arange(1, len(payload) + 1),
            "record_id": [str(r["id"]) for r in payload], "iso_week": ctx.weeks[w], "area_code": None,
            "category": None, "partner_category": [r["type"] for r in payload], "hot_spot": -1,
            "precision": "municipality"}))
    out.bad_rows.extend(county_rows)
    out.truth_rows.extend(truth_frames)
    return out


# --------------------------------------------------------------------------------------------------------
# Reference files the municipality owns
# --------------------------------------------------------------------------------------------------------


def _interventions(ctx: _Context) -> list[dict]:
    """The intervention register: the planted one (a known effect) and two without any effect."""
    last = ctx.mondays[-1]
    return [
        {"id": INTERVENTION["id"], "title": INTERVENTION["title"], "area_code": INTERVENTION["area_code"],
         "kind": INTERVENTION["kind"], "responsible_partner": INTERVENTION["responsible_partner"],
         "starts_on": last - timedelta(weeks=INTERVENTION["weeks_before_last"]), "ends_on": None,
         "categories": list(INTERVENTION["categories"])},
        {"id": "INS-2026-009", "title": "Fältassistenter kvällstid i Vivalla", "area_code": "1880C1600",
         "kind": "social_prevention", "responsible_partner": "social_services",
         "starts_on": last - timedelta(weeks=20), "ends_on": None, "categories": ["youth_disturbance"]},
        {"id": "INS-2026-017", "title": "Kameraövervakning vid Varberga torg", "area_code": "1880C1490",
         "kind": "surveillance", "responsible_partner": "police_cases",
         "starts_on": last - timedelta(weeks=6), "ends_on": None,
         "categories": ["robbery", "drug_dealing", "assault"]},
    ]


def _write_interventions(ctx: _Context, home: Home) -> Path:
    header = ("# Insatsregister: what is being done (DESIGN.md section 6). Edited by the security department;\n"
              "# one entry per intervention: id, title, area_code (DeSO), kind, responsible_partner,\n"
              "# starts_on, ends_on (null while it runs), categories (taxonomy codes it targets).\n")
    text = header + yaml.safe_dump(_interventions(ctx), allow_unicode=True, sort_keys=False, default_flow_style=None)
    return _atomic_write(home.interventions_file, text.encode("utf-8"), home.work)


def _write_register(register: pd.DataFrame, home: Home) -> Path:
    data = _csv_bytes({"address": register["address"].to_numpy(dtype=object),
                       "sweref99_e": register["e"].astype("int64").astype(str).to_numpy(dtype=object),
                       "sweref99_n": register["n"].astype("int64").astype(str).to_numpy(dtype=object)},
                      ",")
    return _atomic_write(home.address_register, data, home.work)


# --------------------------------------------------------------------------------------------------------
# The public API
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedSet:
    """What ``generate`` wrote: the deliveries (all, and per partner in week order), the reference files and
    the planted truth (also in ``truth_file``; every row with its true area in ``rows_file``)."""

    home: Home
    weeks: tuple[str, ...]
    files: tuple[Path, ...]
    by_partner: dict[str, tuple[Path, ...]]
    address_register: Path
    interventions_file: Path
    truth_file: Path
    rows_file: Path
    truth: dict

    def all_files(self) -> list[Path]:
        return list(self.files)


def _persons(seed: int, today: date) -> dict[str, _Persons]:
    return {
        "social_services": _Persons.draw(_rng(seed, "persons-social"), 400, date(2006, 1, 1), date(2016, 12, 31), 0.08),
        "home_care": _Persons.draw(_rng(seed, "persons-homecare"), 250, date(1923, 1, 1), date(1960, 12, 31), 0.03),
        "pupils": _Persons.draw(_rng(seed, "persons-pupils"), 600, date(2008, 1, 1), date(2020, 12, 31), 0.06),
        "text": _Persons.draw(_rng(seed, "persons-text"), 300, date(1950, 1, 1), date(2015, 12, 31), 0.05),
    }


def generate(home: Home, weeks: int = 26, last_week: str | None = DEFAULT_LAST_WEEK,
             seed: int | None = DEFAULT_SEED) -> GeneratedSet:
    """Write ``weeks`` ISO weeks (ending ``last_week``) of deliveries for every partner, the address register,
    the intervention register, and the planted truth (work/generator_truth.json, work/generator_rows.parquet).

    The same arguments write byte-identical files. ``last_week=None`` means the week before the current one
    (what `est generate` does without --last-week); ``seed=None`` the default seed. Returns what was written.
    """
    if last_week is None:
        last_week = _iso(date.today() - timedelta(days=7))
    seed = DEFAULT_SEED if seed is None else int(seed)
    if weeks < 1:
        raise ValueError("weeks must be at least 1")
    home.ensure()
    ctx = _context(weeks, last_week, seed)
    ctx.persons = _persons(seed, ctx.mondays[-1])
    register_path = _write_register(ctx.register, home)
    interventions_path = _write_interventions(ctx, home)
    written = {
        "police_events": _write_police_events(ctx, home, _rng(seed, "police_events")),
        "police_cases": _write_police_cases(ctx, home, _rng(seed, "police_cases")),
        "housing": _write_housing(ctx, home, _rng(seed, "housing")),
        "schools": _write_schools(ctx, home, _rng(seed, "schools")),
        "social_services": _write_template(ctx, home, "social_services", _rng(seed, "social_services")),
        "home_care": _write_template(ctx, home, "home_care", _rng(seed, "home_care")),
        "guards": _write_template(ctx, home, "guards", _rng(seed, "guards")),
    }
    rows = pd.concat([frame for w in written.values() for frame in w.truth_rows], ignore_index=True)
    rows["bad"] = rows["bad"].fillna("") if "bad" in rows else ""
    for item in written["police_events"].bad_rows:
        rows.loc[(rows["file"] == item["file"]) & (rows["source_row"] == item["row"]), "bad"] = item["problem"]
    rows_path = home.work / "generator_rows.parquet"
    sink = io.BytesIO()
    rows.to_parquet(sink, index=False)
    _atomic_write(rows_path, sink.getvalue(), home.work)
    truth = _truth(ctx, written, rows)
    truth_path = _atomic_write(home.work / "generator_truth.json",
                               (json.dumps(truth, ensure_ascii=False, indent=1, default=str) + "\n").encode("utf-8"),
                               home.work)
    by_partner = {p: tuple(written[p].files) for p in PARTNERS}
    return GeneratedSet(home, tuple(ctx.weeks), tuple(f for p in PARTNERS for f in by_partner[p]), by_partner,
                        register_path, interventions_path, truth_path, rows_path, truth)


def _truth(ctx: _Context, written: dict[str, _Written], rows: pd.DataFrame) -> dict:
    lat, lon = geography.to_wgs84(ctx.hot_points[:, 0], ctx.hot_points[:, 1])
    cells = geography.grid_cell_ids(ctx.hot_points[:, 0], ctx.hot_points[:, 1])
    # What a correct pipeline can count: rows with an area it can find (not unplaced) and not broken on purpose.
    located = rows[rows["area_code"].notna() & (rows["precision"] != "unplaced") & (rows["bad"] == "")]

    def weekly(area: str | tuple, categories: list[str]) -> list[int]:
        areas = [area] if isinstance(area, str) else list(area)
        sel = located[located["area_code"].isin(areas) & located["category"].isin(categories)]
        per_week = sel.groupby("iso_week").size()
        return [int(per_week.get(w, 0)) for w in ctx.weeks]

    expected = {}
    for spec in SPECS.values():
        lam, unit_area = _rates(ctx, spec)
        expected[spec.partner] = (lam, unit_area)

    def expected_weekly(area_code: str, categories: list[str]) -> list[float]:
        a = ctx.area_index(area_code)
        total = np.zeros(len(ctx.weeks))
        for lam, unit_area in expected.values():
            units = unit_area == a
            total += lam[:, units][:, :, [CAT[c] for c in categories]].sum(axis=(1, 2))
        return [round(float(v), 2) for v in total]

    uw = ctx.unusual_week
    start_day = ctx.mondays[-1] - timedelta(weeks=INTERVENTION["weeks_before_last"])
    unusual_counts = weekly(UNUSUAL["area_code"], [UNUSUAL["category"]])
    int_counts = weekly(INTERVENTION["area_code"], INTERVENTION["categories"])
    cmp_counts = weekly(COMPARISON_AREAS, INTERVENTION["categories"])
    hot_rows = rows[rows["hot_spot"] >= 0]
    return {
        "about": "Planted truths of the generated EST partner deliveries (pipelines/generate.py). Counts per "
                 "area are of rows a correct pipeline can place (by their true area; deliberately bad rows and "
                 "rows with an address missing from the register left out); work/generator_rows.parquet lists "
                 "every row with its true area, precision and problem.",
        "seed": ctx.seed,
        "weeks": ctx.weeks,
        "last_week": ctx.weeks[-1],
        "municipality_code": settings.MUNICIPALITY_CODE,
        "files": {p: [f.name for f in w.files] for p, w in written.items()},
        "rows_per_week": {p: w.rows_per_week for p, w in written.items()},
        "hot_spots": [
            {"area_code": code, "area_name": str(ctx.names[ctx.area_index(code)]), "label": label,
             "sweref99_e": int(ctx.hot_points[h, 0]), "sweref99_n": int(ctx.hot_points[h, 1]),
             "latitude": round(float(lat[h]), 6), "longitude": round(float(lon[h]), 6),
             "grid_cell_250m": str(cells[h]), "categories": list(cats), "share_of_area_rows_at_spot": HOT_SPOT_SHARE,
             "scatter_sd_m": HOT_SPOT_SD_M, "rate_multiplier_in_area": HOT_SPOT_RATE,
             "rows_at_spot": int((hot_rows["hot_spot"] == h).sum())}
            for h, (code, label, cats) in enumerate(HOT_SPOTS)
        ],
        "patterns": {
            "hour": "assault, public order, robbery, weapons, shootings: nights (peak 22-02); property damage, "
                    "graffiti, youth disturbance, drugs, fires: evenings (peak 18-23); theft, littering, burglary: "
                    "daytime. Schools: school hours Mon-Fri, vandalism evenings and weekends; guards: patrol 17-05; "
                    "home care 07-22.",
            "weekday": "night categories x1.25 Friday and x1.6 Saturday (the small hours count to the evening before); "
                       "day categories lower at weekends.",
            "season": {c: {"amplitude": a, "peak_iso_week": p} for c, (a, p) in SEASON.items()},
            "school_holidays": {str(w): f for w, f in sorted(SCHOOL_HOLIDAYS.items())},
            "vulnerable_areas": list(VULNERABLE), "city_areas": list(CITY),
        },
        "unusual_week": {
            "iso_week": ctx.weeks[uw] if uw >= 0 else None, "area_code": UNUSUAL["area_code"],
            "area_name": str(ctx.names[ctx.area_index(UNUSUAL["area_code"])]), "category": UNUSUAL["category"],
            "rate_multiplier": UNUSUAL["multiplier"], "partners": ["police_cases", "housing", "guards"],
            "expected_per_week": expected_weekly(UNUSUAL["area_code"], [UNUSUAL["category"]]),
            "rows_per_week": unusual_counts,
            "note": "police_events also carries three extra events about the fires in that week.",
        },
        "intervention": {
            "id": INTERVENTION["id"], "title": INTERVENTION["title"], "area_code": INTERVENTION["area_code"],
            "area_name": str(ctx.names[ctx.area_index(INTERVENTION["area_code"])]),
            "starts_on": str(start_day), "start_week": _iso(start_day),
            "categories": INTERVENTION["categories"], "true_rate_multiplier": INTERVENTION["multiplier"],
            "true_effect_percent": round((INTERVENTION["multiplier"] - 1) * 100),
            "comparison_areas": list(COMPARISON_AREAS),
            "expected_per_week": expected_weekly(INTERVENTION["area_code"], INTERVENTION["categories"]),
            "rows_per_week": int_counts, "comparison_rows_per_week": cmp_counts,
            "other_interventions_true_multiplier": 1.0,
        },
        "interventions_register": [{**i, "starts_on": str(i["starts_on"])} for i in _interventions(ctx)],
        "bad_rows": [row for w in written.values() for row in w.bad_rows],
        "addresses_not_in_register": [row for w in written.values() for row in w.unmatched_addresses],
        "police_case_revisions": written["police_cases"].extra.get("revisions", []),
        "free_text_with_personal_details": [row for w in written.values() for row in w.sensitive],
        "person_id_forms": {"0": "YYMMDD-NNNC (+ at 100 years)", "1": "YYYYMMDDNNNC", "2": "YYMMDDNNNC",
                            "3": "YYMMDD\u2013NNNC (en dash)", "4": "YYYYMMDD-NNNC", "5": "YYMMDD NNNC",
                            "samordningsnummer": "day + 60, in social_services about 8%"},
        "rows_total": {p: int(sum(w.rows_per_week.values())) for p, w in written.items()},
    }


# --------------------------------------------------------------------------------------------------------
# Benchmark files
# --------------------------------------------------------------------------------------------------------

BENCH_ROWS_PER_FILE = 300_000
BENCH_SPLIT = (("police_cases", 0.6), ("housing", 0.25), ("social_services", 0.15))


@dataclass
class _Bench:
    """What every benchmark file draws from: areas, the register, and the 52 weeks it spans."""

    areas: Any
    codes: np.ndarray
    area_p: np.ndarray
    addresses: np.ndarray
    t0: int
    span: int


def _running_ids(prefix: str, first: int, n: int, width: int = 7, suffix: str = "") -> pa.Array:
    number = pc.utf8_lpad(pc.cast(pa.array(np.arange(first, first + n, dtype="int64")), pa.string()),
                          width=width, padding="0")
    return pc.binary_join_element_wise(prefix, number, suffix, "")


def _draw_labels(rng: np.random.Generator, shares: dict[str, float], labels: dict[str, str], n: int) -> pa.Array:
    cats = [c for c in CATEGORIES if c in shares and c in labels]
    p = np.array([shares[c] for c in cats])
    return pa.array([labels[c] for c in cats]).take(pa.array(rng.choice(len(cats), n, p=p / p.sum())))


def _bench_police_cases(bench: _Bench, rng: np.random.Generator, n: int, first_id: int) -> bytes:
    start = np.sort(bench.t0 + rng.integers(0, bench.span, n))
    wall, _ = _wall(start)
    cats = [c for c in CATEGORIES if c in SPECS["police_cases"].shares]
    p = np.array([SPECS["police_cases"].shares[c] for c in cats])
    cat = pa.array(rng.choice(len(cats), n, p=p / p.sum()))
    # Points from a pool of at most 100,000 (drawing each inside its polygon is the slow part, and a large
    # export repeats places anyway).
    pool = min(n, 100_000)
    area = rng.choice(len(bench.codes), pool, p=bench.area_p)
    pool_e, pool_n = geography.random_points_in_areas(bench.areas, bench.codes[area], rng)
    pick = rng.integers(0, pool, n)
    e, north = pool_e[pick], pool_n[pick]
    places = [labels[0] for labels in POLICE_PLACE_LABELS.values()]
    columns = {
        "Diarienummer": _running_ids("5000-K", first_id, n, suffix="-26"),
        "Version": pa.array(np.full(n, "1")),
        "Anmäld": _fmt_minutes(wall + rng.integers(600, 3 * 86400, n)),
        "Brott från": _fmt_minutes(wall),
        "Brott till": pa.array(np.full(n, "")),
        "Brottskod": pa.array([OFFENCES[c][0][0] for c in cats]).take(cat),
        "Brottsbenämning": pa.array([OFFENCES[c][0][1] for c in cats]).take(cat),
        "Kommun": pa.array(np.full(n, settings.MUNICIPALITY_NAME)),
        "Platstyp": pa.array(places).take(pa.array(rng.integers(0, len(places), n))),
        "Koordinat N": pc.cast(pa.array(north.astype("int64")), pa.string()),
        "Koordinat E": pc.cast(pa.array(e.astype("int64")), pa.string()),
    }
    return _csv_bytes_bulk(columns, ",")


def _bench_housing(bench: _Bench, rng: np.random.Generator, n: int, first_id: int) -> bytes:
    start = np.sort(bench.t0 + rng.integers(0, bench.span, n))
    wall, _ = _wall(start)
    occurred = _fmt_minutes(wall)
    pick = pa.array(rng.integers(0, len(bench.addresses), n))
    fastighet = [f"Bench {i // 40 + 1}:{i % 40 + 1}" for i in range(len(bench.addresses))]
    texts = pa.array([t for group in TEXTS["housing"].values() for t in group if "{" not in t])
    places = ["Trapphus", "Gård/lekplats", "Parkering", "Källare/förråd"]
    actions = ["Beställt – sanering", "Åtgärdat", "Polisanmält"]
    columns = {
        "Ärendenr": _running_ids("FA-B", first_id, n),
        "Registrerad": occurred,
        "Händelsedatum": occurred,
        "Kategori": _draw_labels(rng, SPECS["housing"].shares, {c: v[0] for c, v in HOUSING_LABELS.items()}, n),
        "Plats": pa.array(places).take(pa.array(rng.integers(0, len(places), n))),
        "Adress": pa.array(bench.addresses).take(pick),
        "Fastighet": pa.array(fastighet).take(pick),
        "Beskrivning": texts.take(pa.array(rng.integers(0, len(texts), n))),
        "Åtgärd": pa.array(actions).take(pa.array(rng.integers(0, len(actions), n))),
        "Kostnad kr": pa.array(_cost_text(np.round(np.exp(rng.normal(7.2, 1.0, 2000)), 2))).take(
            pa.array(rng.integers(0, 2000, n))),
    }
    return _encode(_csv_bytes_bulk(columns, ";", eol="\r\n"), "windows-1252")


def _bench_social_services(bench: _Bench, rng: np.random.Generator, n: int, first_id: int) -> bytes:
    start = np.sort(bench.t0 + rng.integers(0, bench.span, n))
    wall, _ = _wall(start)
    persons = _Persons.draw(rng, 5000, date(2006, 1, 1), date(2016, 12, 31), 0.08)
    pool = pa.array(persons.render(np.arange(5000), rng.integers(0, 6, 5000), date(2026, 11, 27)))
    texts = pa.array([t.format(plats="Vivalla centrum", omr="Vivalla", adress="Vivallagatan 12", antal=8)
                      for group in TEXTS["social_services"].values() for t in group])
    places = list(TEMPLATE_PLACE_LABELS.values())
    empty = pa.array(np.full(n, ""))
    columns = {
        "record_id": _running_ids("IFO-B", first_id, n), "occurred_at": _fmt_minutes(wall), "occurred_to": empty,
        "category": _draw_labels(rng, SPECS["social_services"].shares, _taxonomy_labels(), n),
        "place_type": pa.array(places).take(pa.array(rng.integers(0, len(places), n))),
        "latitude": empty, "longitude": empty, "sweref99_n": empty, "sweref99_e": empty, "address": empty,
        "area_code": pa.array(bench.codes).take(pa.array(rng.choice(len(bench.codes), n, p=bench.area_p))),
        "description": texts.take(pa.array(rng.integers(0, len(texts), n))),
        "person_id": pool.take(pa.array(rng.integers(0, 5000, n))),
    }
    return _csv_bytes_bulk(columns, ",")


_BENCH_WRITERS = {"police_cases": _bench_police_cases, "housing": _bench_housing,
                  "social_services": _bench_social_services}


def generate_bench(home: Home, rows: int, seed: int = DEFAULT_SEED, areas: Any = None) -> list[Path]:
    """About ``rows`` incidents in a few large CSV files (the police case export, the housing export and the
    delivery template from social services, 60/25/15 %, at most BENCH_ROWS_PER_FILE rows a file) in their
    partners' drop folders, for the load benchmark: no Excel, not per week, 52 weeks ending DEFAULT_LAST_WEEK.
    Columns are built whole with numpy and Arrow (dates from a per-day and per-minute lookup) and written by
    Arrow's CSV writer: about a million rows a second. Writes the address register when the home has none, so
    that the housing rows can be placed. Deterministic for a given ``rows``, ``seed`` and ``areas``.

    ``areas``: where the incidents happen, by population: the municipality's own areas (None, the default) or
    another areas frame such as :func:`geography.national_areas` (all 290 municipalities' 5,984 DeSO): the
    police's points and the social services' area codes are then drawn over all of them. The housing partner
    stays the municipality's own (its address register is Örebro's, as a municipal housing company's is), and
    the police export keeps the municipality's name in its Kommun column (the contract quarantines any other).
    """
    home.ensure()
    own_areas = geography.build_areas().sort_values("area_code", ignore_index=True)
    areas = own_areas if areas is None else areas.sort_values("area_code", ignore_index=True)
    if home.address_register.exists():
        addresses = pd.read_csv(home.address_register, dtype={"address": str})["address"].to_numpy(dtype=object)
    else:
        frame = _build_register(own_areas, _rng(seed, "register"))
        _write_register(frame, home)
        addresses = frame["address"].to_numpy(dtype=object)
    population = areas["population"].fillna(0).to_numpy(dtype=float)
    first = _monday(DEFAULT_LAST_WEEK) - timedelta(weeks=51)
    bench = _Bench(areas, areas["area_code"].astype(str).to_numpy(), population / population.sum(), addresses,
                   int(pd.Timestamp(first.isoformat(), tz=TZ).timestamp()), 52 * 7 * 86400)
    paths: list[Path] = []
    for partner, share in BENCH_SPLIT:
        total = int(round(rows * share))
        rng = _rng(seed, f"bench-{partner}")
        files = max(1, -(-total // BENCH_ROWS_PER_FILE))
        first_id = 1_000_000
        for k in range(files):
            n = total // files + (1 if k < total % files else 0)
            data = _BENCH_WRITERS[partner](bench, rng, n, first_id)
            first_id += n
            path = home.partner_inbox(partner) / f"{partner}_bench_{seed}_{k + 1:02d}.csv"
            paths.append(_atomic_write(path, data, home.work))
    return paths
