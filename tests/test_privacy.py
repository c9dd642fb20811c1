"""Tests of pipelines/privacy.py: each rule of PRIVACY.md with a test that can fail.

The keys here are obviously fake (STYLE.md, practice 6). Run with ``-s`` to see what the scrubber removed
from the real polisen.se narrative texts.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import pickle
import re
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipelines import privacy as p
from pipelines import settings

FAKE_KEY_HEX = "00112233445566778899aabbccddeeff" * 2  # 32 bytes, obviously not a real key
REF = date(2025, 6, 1)


def luhn_digit(nine: str) -> str:
    """Reference Luhn, written independently of the module: the check digit for YYMMDDNNN."""
    total = 0
    for position, char in enumerate(nine):
        product = int(char) * (2 if position % 2 == 0 else 1)
        total += product // 10 + product % 10
    return str((10 - total % 10) % 10)


def make_pnr(yymmdd: str, serial: str) -> str:
    return yymmdd + serial + luhn_digit(yymmdd + serial)


@pytest.fixture()
def master() -> bytes:
    return bytes.fromhex(FAKE_KEY_HEX)


@pytest.fixture()
def analysis(master) -> p.DomainKey:
    return p.derive_key(master, "analysis")


# --------------------------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------------------------


def test_load_key_reads_hex_from_the_environment(monkeypatch):
    monkeypatch.setenv(settings.KEY_ENV_VAR, FAKE_KEY_HEX + "\n")
    assert p.load_key() == bytes.fromhex(FAKE_KEY_HEX)
    assert p.load_key(value=FAKE_KEY_HEX.upper()) == bytes.fromhex(FAKE_KEY_HEX)


def test_missing_key_stops_the_run(monkeypatch):
    monkeypatch.delenv(settings.KEY_ENV_VAR, raising=False)
    with pytest.raises(p.PseudonymKeyError) as caught:
        p.load_key()
    message = str(caught.value)
    assert settings.KEY_ENV_VAR in message
    assert "no key, no run" in message
    with pytest.raises(p.PseudonymKeyError):
        p.load_key(value="   ")


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("abcdef0123456789" * 3, "too short"),  # 24 bytes
        ("zz" + FAKE_KEY_HEX, "not hexadecimal"),
        ("0x" + FAKE_KEY_HEX, "not hexadecimal"),
        (FAKE_KEY_HEX[:32] + " " + FAKE_KEY_HEX[32:], "not hexadecimal"),
        (FAKE_KEY_HEX + "a", "odd number"),
    ],
)
def test_bad_key_is_refused_without_showing_it(monkeypatch, bad, why):
    monkeypatch.setenv("EST_TEST_KEY", bad)
    with pytest.raises(p.PseudonymKeyError) as caught:
        p.load_key("EST_TEST_KEY")
    message = str(caught.value)
    assert why in message
    assert "EST_TEST_KEY" in message
    # Not the key, nor any 8-character piece of it.
    compact = bad.replace(" ", "")
    assert all(compact[i : i + 8].lower() not in message.lower() for i in range(len(compact) - 7))
    assert compact not in repr(caught.value)


def test_new_random_key_is_usable_and_random():
    first, second = p.new_random_key_hex(), p.new_random_key_hex()
    assert first != second
    assert len(p.load_key(value=first)) == p.MIN_KEY_BYTES == 32


def test_hkdf_matches_rfc5869_test_case_1():
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    prk = p.hkdf_extract(salt, ikm)
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    okm = p.hkdf_sha256(ikm, salt, info, 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


def test_hkdf_matches_rfc5869_test_case_3_without_salt_or_info():
    ikm = bytes.fromhex("0b" * 22)
    assert p.hkdf_extract(b"", ikm).hex() == (
        "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04"
    )
    assert p.hkdf_sha256(ikm, None, b"", 42).hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


def test_domain_keys_differ_and_are_deterministic(master):
    analysis, record, housing = (p.derive_key(master, d) for d in ("analysis", "record", "export:housing"))
    assert len({analysis.key, record.key, housing.key}) == 3
    assert p.derive_key(master, "analysis").key == analysis.key
    assert p.derive_key(master, "analysis") == analysis
    assert analysis.key != master and len(analysis.key) == 32
    other_master = bytes.fromhex("ff" * 32)
    assert p.derive_key(other_master, "analysis").key != analysis.key


@pytest.mark.parametrize("label", ["", "Analysis", "export housing", "export:", "analys\u00e9"])
def test_domain_labels_are_checked(master, label):
    with pytest.raises(ValueError):
        p.derive_key(master, label)


def test_short_master_key_is_refused():
    with pytest.raises(p.PseudonymKeyError):
        p.derive_key(b"x" * 31, "analysis")


def test_domain_key_never_shows_the_key(analysis, master):
    shown = [repr(analysis), str(analysis), f"{analysis}", f"{analysis!r}", repr([analysis])]
    secrets_ = [analysis.key.hex(), repr(analysis.key), master.hex(), FAKE_KEY_HEX]
    for text in shown:
        assert "analysis" in text and analysis.key_id in text
        for secret in secrets_:
            assert secret not in text
    assert re.fullmatch(r"[0-9a-f]{8}", analysis.key_id)
    assert analysis.key_id == hmac.new(analysis.key, b"key-id", hashlib.sha256).hexdigest()[:8]
    assert analysis.key_id not in analysis.key.hex()
    assert not hasattr(analysis, "__dict__")


def test_domain_key_cannot_be_pickled_or_changed(analysis):
    with pytest.raises(TypeError):
        pickle.dumps(analysis)
    with pytest.raises(AttributeError):
        analysis.domain = "record"
    assert copy.deepcopy(analysis) is analysis


# --------------------------------------------------------------------------------------------------------------
# Pseudonyms
# --------------------------------------------------------------------------------------------------------------


def test_pseudonym_is_hmac_sha256_of_the_utf8_value(analysis):
    values = pd.Series(["198507099805", "Åsa-ärende 7", None])
    out = p.pseudonymise(values, analysis)
    assert out[0] == hmac.new(analysis.key, b"198507099805", hashlib.sha256).hexdigest()
    assert out[1] == hmac.new(analysis.key, "Åsa-ärende 7".encode("utf-8"), hashlib.sha256).hexdigest()
    assert out[2] is None
    assert len(out[0]) == p.PSEUDONYM_HEX_CHARS == 64
    # Not a plain hash: anyone could compute that.
    assert out[0] != hashlib.sha256(b"198507099805").hexdigest()


def test_pseudonyms_differ_between_domains_and_repeat_within_one(master):
    value = pd.Series(["198507099805"])
    domains = ("analysis", "record", "export:a")
    by_domain = {d: p.pseudonymise(value, p.derive_key(master, d))[0] for d in domains}
    assert len(set(by_domain.values())) == 3
    again = p.pseudonymise(value, p.derive_key(master, "analysis"))[0]
    assert again == by_domain["analysis"]


def test_pseudonymise_accepts_series_numpy_arrow_and_keeps_index(analysis):
    values = ["0001011239", "1011239", None, "0001011239"]
    series = pd.Series(values, index=[10, 11, 12, 13], name="person_id", dtype=object)
    from_series = p.pseudonymise(series, analysis)
    from_str_series = p.pseudonymise(series.astype("str"), analysis)
    from_numpy = p.pseudonymise(np.array(values, dtype=object), analysis)
    from_arrow = p.pseudonymise(pa.array(values), analysis)
    from_chunked = p.pseudonymise(pa.chunked_array([values[:2], values[2:]]), analysis)
    assert list(from_series.index) == [10, 11, 12, 13] and from_series.name == "person_id"
    expected = list(from_series)
    assert list(from_str_series) == expected
    assert list(from_numpy) == expected
    assert from_arrow.to_pylist() == expected
    assert from_chunked.to_pylist() == expected
    # Leading zero survives: "0001011239" and "1011239" are different identifiers.
    assert expected[0] != expected[1] and expected[0] == expected[3] and expected[2] is None


@pytest.mark.parametrize(
    "numbers",
    [pd.Series([1011239, 2]), np.array([1011239.0]), pa.array([1, 2]), pd.Series([1, "2"], dtype=object)],
)
def test_pseudonymise_refuses_numbers(analysis, numbers):
    with pytest.raises(TypeError, match="text"):
        p.pseudonymise(numbers, analysis)


def test_pseudonymise_keys_each_distinct_value_once(analysis, monkeypatch):
    calls = []
    original = p.DomainKey.hmac_hex

    def counting(self, message):
        calls.append(message)
        return original(self, message)

    monkeypatch.setattr(p.DomainKey, "hmac_hex", counting)
    values = pd.Series([f"{i % 700:06d}" for i in range(10_000)] + [None] * 5)
    out = p.pseudonymise(values, analysis)
    assert len(calls) == 700
    assert out.notna().sum() == 10_000 and out.nunique() == 700


def test_precomputed_hmac_state_equals_the_library(analysis):
    for message in (b"", b"x", b"y" * 63, b"z" * 64, b"w" * 200):
        assert analysis.hmac_hex(message) == hmac.new(analysis.key, message, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------------------------
# Personnummer
# --------------------------------------------------------------------------------------------------------------

FULLWIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
DEVANAGARI = str.maketrans("0123456789", "०१२३४५६७८९")

ONE_PERSON_FORMS = [
    "850709-9805",
    "8507099805",
    "198507099805",
    "19850709-9805",
    "850709 9805",
    "850709\u20139805",  # en dash
    "850709\u20149805",  # em dash
    "850709\u22129805",  # minus sign
    "850709\u00a09805",  # no-break space
    " 850709-9805\n",
    "850709-9805".translate(FULLWIDTH),
    "8507099805".translate(ARABIC_INDIC),
    "850709-9805".translate(DEVANAGARI),
]


def test_every_form_of_one_person_gives_one_canonical_value_and_one_pseudonym(analysis):
    canonical, status = p.canonical_personnummer(pd.Series(ONE_PERSON_FORMS), reference_date=REF)
    assert (status == "valid").all(), status.tolist()
    assert set(canonical) == {"198507099805"}
    pseudonyms, status2 = p.pseudonymise_personnummer(pd.Series(ONE_PERSON_FORMS), analysis, reference_date=REF)
    assert pseudonyms.nunique() == 1 and (status2 == "valid").all()


def test_check_digit_is_luhn():
    assert p.luhn_ok("8507099805")
    assert not p.luhn_ok("8507099806")
    assert p.luhn_ok("8507099805".translate(FULLWIDTH))
    for nine in ("000101123", "121212121", "990101001", "850769980"):
        digits = nine + luhn_digit(nine)
        assert p.luhn_ok(digits)
        wrong = nine + str((int(digits[-1]) + 1) % 10)
        assert not p.luhn_ok(wrong)
    with pytest.raises(ValueError):
        p.luhn_ok("850709-9805")


def test_invalid_numbers_are_flagged_and_not_passed_on():
    values = pd.Series(
        [
            "850709-9806",  # wrong check digit
            "198507099804",
            "851309-9805",  # month 13
            "230229-" + make_pnr("230229", "123")[6:],  # 2023 is no leap year
            "240229-" + make_pnr("240229", "123")[6:],  # 2024 is
            "20300101" + make_pnr("300101", "123")[6:],  # born after the reference date
            "850709-980",
            "85-07-09-9805",
            "hello",
            "1234567890123",
            None,
            "",
            "   ",
            np.nan,
        ],
        dtype=object,
    )
    canonical, status = p.canonical_personnummer(values, reference_date=REF)
    assert status.tolist() == [
        "invalid_checksum",
        "invalid_checksum",
        "invalid_date",
        "invalid_date",
        "valid",
        "invalid_date",
        "not_a_personnummer",
        "not_a_personnummer",
        "not_a_personnummer",
        "not_a_personnummer",
        "missing",
        "missing",
        "missing",
        "missing",
    ]
    assert canonical.tolist() == [None] * 4 + ["20240229" + make_pnr("240229", "123")[6:]] + [None] * 9
    assert set(status) <= set(p.PERSONNUMMER_STATUSES)


def test_coordination_number_keeps_day_plus_60():
    number = make_pnr("850769", "980")  # born 9 July 1985, coordination number
    canonical, status = p.canonical_personnummer(
        pd.Series([number[:6] + "-" + number[6:], "19" + number, make_pnr("850792", "980")]), reference_date=REF
    )
    assert status.tolist() == ["valid", "valid", "invalid_date"]  # day 92 - 60 = 32
    assert canonical[0] == canonical[1] == "19" + number


def test_plus_means_a_hundred_or_older():
    born_1925 = make_pnr("250301", "123")
    values = pd.Series([born_1925[:6] + "+" + born_1925[6:], born_1925[:6] + "-" + born_1925[6:], born_1925])
    canonical, _ = p.canonical_personnummer(values, reference_date=REF)
    assert canonical.tolist() == ["19" + born_1925, "20" + born_1925, "20" + born_1925]
    # "+" from the year the person turns 100: in March 2025, 250701+ is someone born in July 1925 ...
    july = make_pnr("250701", "123")
    march = date(2025, 3, 1)
    canonical, _ = p.canonical_personnummer(pd.Series([july[:6] + "+" + july[6:]]), reference_date=march)
    assert canonical[0] == "19" + july
    # ... and without "+", 250701- in March 2025 cannot be an unborn child: also 1925 (99 years old).
    canonical, _ = p.canonical_personnummer(pd.Series([july[:6] + "-" + july[6:]]), reference_date=march)
    assert canonical[0] == "19" + july
    # 850709+9805 in 2025: born 1885.
    canonical, _ = p.canonical_personnummer(pd.Series(["850709+9805"]), reference_date=REF)
    assert canonical[0] == "188507099805"


def test_ten_digit_century_makes_the_person_younger_than_100():
    values = pd.Series(
        ["850709-9805", make_pnr("010101", "234"), make_pnr("250531", "234"), make_pnr("250602", "234")]
    )
    canonical, status = p.canonical_personnummer(values, reference_date=REF)
    assert [c[:4] for c in canonical] == ["1985", "2001", "2025", "1925"]
    assert (status == "valid").all()


def test_leading_zero_survives_as_text():
    number = make_pnr("000101", "123")
    values = pd.Series([number, number[:6] + "-" + number[6:]])
    canonical, status = p.canonical_personnummer(values, reference_date=REF)
    assert canonical.tolist() == ["20" + number] * 2 and (status == "valid").all()
    with pytest.raises(TypeError, match="text"):
        p.canonical_personnummer(pd.Series([int(number)]), reference_date=REF)


def test_canonical_personnummer_in_bulk_keeps_index():
    rng = np.random.default_rng(7)
    births = pd.Timestamp("1930-01-01") + pd.to_timedelta(rng.integers(0, 30000, 20_000), unit="D")
    serials = rng.integers(0, 1000, len(births))
    numbers = [make_pnr(b.strftime("%y%m%d"), f"{s:03d}") for b, s in zip(births, serials)]
    dashed = pd.Series([n[:6] + "-" + n[6:] for n in numbers], index=np.arange(len(numbers)) * 3)
    canonical, status = p.canonical_personnummer(dashed, reference_date=REF)
    assert (status == "valid").all()
    assert list(canonical.index) == list(dashed.index)
    assert canonical.tolist() == [b.strftime("%Y") + n[2:] for b, n in zip(births, numbers)]


# --------------------------------------------------------------------------------------------------------------
# Free text
# --------------------------------------------------------------------------------------------------------------

PHONE_LUHN_VALID = next(
    f"07{i:07d}" + luhn_digit(f"07{i:07d}") for i in range(3456789, 9999999)
)  # a mobile-looking 10-digit run that passes Luhn: a personnummer by the rule


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Anmälare 850709-9805 hörd.", "Anmälare [personnummer] hörd."),
        ("pnr 198507099805.", "pnr [personnummer]."),
        ("pnr 19850709-9805.", "pnr [personnummer]."),
        ("pnr 8507099805,", "pnr [personnummer],"),
        ("pnr 850709+9805", "pnr [personnummer]"),
        ("pnr 850709 9805 och", "pnr [personnummer] och"),
        ("pnr 850709\u20139805", "pnr [personnummer]"),
        ("pnr " + "850709-9805".translate(FULLWIDTH), "pnr [personnummer]"),
        ("felskrivet 850709-9806", "felskrivet [personnummer]"),  # a dashed date-like number is a person
        ("samordningsnr 850769-9802", "samordningsnr [personnummer]"),
        (f"ring {PHONE_LUHN_VALID}", "ring [personnummer]"),  # Luhn wins over phone
        ("Ring 070-123 45 67 nu", "Ring [telefon] nu"),
        ("Ring 0701234567.", "Ring [telefon]."),
        ("Ring +46 70 123 45 67", "Ring [telefon]"),
        ("Ring +46 (0)70-123 45 67", "Ring [telefon]"),
        ("Ring 0046701234567", "Ring [telefon]"),
        ("Ring 00 46 70 123 45 67", "Ring [telefon]"),
        ("pnr " + "850709-9805".translate(ARABIC_INDIC), "pnr [personnummer]"),
        ("Ring 019-12 34 56 eller 08-123 456 78", "Ring [telefon] eller [telefon]"),
        ("Ring 010 - 567 05 56.", "Ring [telefon]."),
        ("Mejla anna.svensson+tips@example.se.", "Mejla [e-post]."),
        ("Bilen ABC 123 och ABC123 samt ABC 12A, abc123", "Bilen [regnr] och [regnr] samt [regnr], [regnr]"),
        ("Bor på Drottninggatan 12B i Örebro", "Bor på [adress] i Örebro"),
        ("Storgatan 5, Kungsgatan 12 B och Ekersvägen 3-5.", "[adress], [adress] och [adress]."),
        ("utanför Oskarstorget 6.", "utanför [adress]."),
    ],
)
def test_scrubber_replaces(text, expected):
    assert p.scrub_text(pd.Series([text]))[0] == expected


KEEP = [
    "En man i 20-årsåldern greps i Vivalla centrum.",
    "Larmet kom kl. 22.30 den 2025-06-07.",
    "Klockan 23.30-01.15 patrullerade polisen Markbacken 22.04 Misshandel",
    "påskupploppet i Sveaparken 2022.",
    "Trafikolycka på LV 205 och Rv 51, E18 stängd.",
    "En orosanmälan enligt SOL 14§ upprättades. PL13 §.",
    "Volvo V70, cirka 100 000 kronor, 150-155 cm lång, ärende 623562-25.",
    "Händelsen på Drottninggatan i Örebro.",
    "på plan 2 i huset",
    "Brickebacken, Baronbacken och Oxhagen",
]


def test_scrubber_keeps_ordinary_text():
    kept = p.scrub_text(pd.Series(KEEP))
    assert kept.tolist() == KEEP


def test_scrubber_keeps_nulls_and_index_and_counts():
    values = pd.Series(
        ["Ring 0701234567 eller mejla a@b.se", None, "ABC 123 på Storgatan 5, 850709-9805"], index=[5, 6, 7]
    )
    out = p.scrub_text(values)
    assert list(out.index) == [5, 6, 7]
    assert pd.isna(out[6])
    assert out[5] == "Ring [telefon] eller mejla [e-post]"
    assert out[7] == "[regnr] på [adress], [personnummer]"
    assert p.scrub_report(values) == {"personnummer": 1, "telefon": 1, "e-post": 1, "regnr": 1, "adress": 1}


def _narratives() -> pd.Series:
    path = settings.POLISEN_EVENTS_DIR / "events_orebro_lan_html_text.jsonl"
    if not path.exists():
        pytest.skip(f"shared data not present: {path}")
    texts = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts.append(row.get("html_title"))
            texts.append(row.get("html_preamble"))
            texts.extend(row.get("html_body_paragraphs") or [])
    return pd.Series(texts, dtype=object)


# Independent of the module's patterns: what must not survive.
PNR_LIKE = re.compile(r"(?<!\d)(?:\d{2})?\d{6}\s?[-+\u2013]?\s?\d{4}(?!\d)")
PHONE_LIKE = re.compile(r"(?<![\d])(?:\+46|0046|0\d{1,3})\s*[-\u2013]?\s*\d{2,3}\s?\d{2}\s?\d{2,3}(?!\d)")


def test_scrubber_on_the_real_narrative_texts():
    texts = _narratives()
    report = p.scrub_report(texts)
    out = p.scrub_text(texts)
    print(f"\nscrubbed {texts.notna().sum()} real narrative texts, removed: {report}")
    assert report["telefon"] > 50 and report["e-post"] > 50  # the police's press numbers and mailbox

    survivors = []
    for text in out.dropna():
        survivors += [m.group() for m in PHONE_LIKE.finditer(text)]
        for match in PNR_LIKE.finditer(text):
            digits = re.sub(r"\D", "", match.group())
            if re.search(r"[-+\u2013]", match.group()) or p.luhn_ok(digits[-10:]):
                survivors.append(match.group())
        if "@" in text:
            survivors.append(text)
    assert survivors == []

    def count(pattern: str, series: pd.Series) -> int:
        return int(series.str.count(pattern).sum())

    kept_patterns = [
        r"Vivalla", r"i \d\d-årsåldern", r"kl\. \d\d\.\d\d", r"\b\d{4}-\d\d-\d\d\b", r"Hjärsta", r"Örebro",
    ]
    for kept in kept_patterns:
        assert count(kept, texts.dropna()) == count(kept, out.dropna()), kept
    assert count(r"Vivalla", out.dropna()) > 0
    # Only the tokens changed: the texts are otherwise the same length order and nulls stay null.
    assert out.isna().equals(texts.isna())


# --------------------------------------------------------------------------------------------------------------
# Published numbers
# --------------------------------------------------------------------------------------------------------------


def test_thresholds_are_the_documented_ones():
    assert p.PRIMARY_THRESHOLD == 5 and p.SUPPRESSED_LABEL == "<5"
    assert p.SENSITIVE_THRESHOLD == 10 and p.suppressed_label(p.SENSITIVE_THRESHOLD) == "<10"
    assert p.MIN_DISTINCT_PERSONS == 3
    assert p.threshold_for(sensitive=True) == 10 and p.threshold_for(sensitive=False) == 5


def test_suppress_counts():
    display, suppressed = p.suppress_counts(np.array([0, 1, 4, 5, 12]))
    assert display.tolist() == ["0", "<5", "<5", "5", "12"]
    assert suppressed.tolist() == [False, True, True, False, False]
    counts = pd.Series([0, 9, 10], index=[3, 4, 5])
    display, suppressed = p.suppress_counts(counts, threshold=p.SENSITIVE_THRESHOLD)
    assert display.tolist() == ["0", "<10", "10"] and list(display.index) == [3, 4, 5]
    assert p.is_suppressed(pd.Series([0, 3, 7]), 5).tolist() == [False, True, False]


def test_too_few_persons_is_hidden_without_a_false_label():
    display, suppressed = p.suppress_counts([0, 12, 12, 3], distinct_persons=[0, 2, 3, 3])
    assert display.tolist() == ["0", p.HIDDEN_LABEL, "12", "<5"]
    assert suppressed.tolist() == [False, True, False, True]


@pytest.mark.parametrize("bad", [[-1], [1.5], [np.nan]])
def test_counts_must_be_whole_and_present(bad):
    with pytest.raises(ValueError):
        p.suppress_counts(np.array(bad, dtype=float))


def _published(grid: pd.DataFrame) -> tuple[dict, dict, list]:
    """What a reader of the published table sees: visible numbers and labels, by (row, col)."""
    shown, hidden = {}, {}
    for row in grid.itertuples(index=False):
        key = (row.area, row.cat)
        if row.display.isdigit():
            shown[key] = int(row.display)
        else:
            hidden[key] = row.display
    lines = []
    rows = sorted({r for r, _ in list(shown) + list(hidden)} - {p.TOTAL_KEY}, key=str)
    cols = sorted({c for _, c in list(shown) + list(hidden)} - {p.TOTAL_KEY}, key=str)
    for r in rows + [p.TOTAL_KEY]:
        lines.append(([(r, c) for c in cols], (r, p.TOTAL_KEY)))
    for c in cols + [p.TOTAL_KEY]:
        lines.append(([(r, c) for r in rows], (p.TOTAL_KEY, c)))
    return shown, hidden, lines


def subtraction_attack(grid: pd.DataFrame) -> dict:
    """Repeatedly take a row or column with one unknown and compute it from the total. Returns what it found."""
    shown, hidden, lines = _published(grid)
    known, found = dict(shown), {}
    progress = True
    while progress:
        progress = False
        for members, total in lines:
            cells = members + [total]
            unknown = [c for c in cells if c not in known]
            if len(unknown) == 1:
                u = unknown[0]
                interior = sum(known[c] for c in members if c in known)
                known[u] = interior if u == total else known[total] - interior
                found[u] = known[u]
                progress = True
    return found


def brute_force_attack(grid: pd.DataFrame) -> dict:
    """For each hidden cell, search for a whole-number table consistent with everything published in which the
    cell has another value than its true one. Returns the hidden cells for which there is none (recovered).

    The attacker knows the labels: "<t" is 1..t-1; ".." is never 1..t-1 (else it would say "<t") and never 0;
    and which cells are sensitive (threshold 10), as the report says which partners feed them.
    """
    shown, hidden, lines = _published(grid)
    truth = {(r.area, r.cat): int(r.n) for r in grid.itertuples(index=False)}
    limit = {(r.area, r.cat): int(r.threshold) for r in grid.itertuples(index=False)}
    # A search cap only, far above anything near the truth: the attacker knows no upper bound unless the
    # grand total is shown (the true hidden totals must not leak into the attack).
    bound = shown.get((p.TOTAL_KEY, p.TOTAL_KEY), 10 * max(truth.values()) + 50)
    ranges = any(label.startswith("<") for label in hidden.values())  # else ".." might be a small count too
    domains = {
        k: range(1, int(label[1:])) if label.startswith("<") else range(limit[k] if ranges else 1, bound + 1)
        for k, label in hidden.items()
    }
    equations = [(members, total) for members, total in lines]

    def consistent(assign: dict) -> bool | None:
        """Propagate single unknowns; False on contradiction."""
        assign = dict(assign)
        changed = True
        while changed:
            changed = False
            for members, total in equations:
                value = {c: (shown.get(c, assign.get(c))) for c in members + [total]}
                unknown = [c for c, v in value.items() if v is None]

                def span(cells):
                    lo = sum(value[c] if value[c] is not None else domains[c].start for c in cells)
                    hi = sum(value[c] if value[c] is not None else domains[c].stop - 1 for c in cells)
                    return lo, hi

                (lo, hi), (tlo, thi) = span(members), span([total])
                if hi < tlo or lo > thi:  # the members cannot add up to the total at all
                    return None
                if not unknown:
                    if sum(value[c] for c in members) != value[total]:
                        return None
                elif len(unknown) == 1:
                    u = unknown[0]
                    interior = sum(v for c, v in value.items() if c in members and v is not None)
                    solved = interior if u == total else value[total] - interior
                    if solved not in domains[u]:
                        return None
                    assign[u] = solved
                    changed = True
        return assign

    def search(assign: dict) -> bool:
        assign = consistent(assign)
        if assign is None:
            return False
        open_ = [k for k in hidden if k not in assign]
        if not open_:
            return True
        k = min(open_, key=lambda c: len(domains[c]))
        # Try values near the truth first: alternatives are small moves around it.
        for v in sorted(domains[k], key=lambda x: abs(x - truth[k])):
            if search({**assign, k: v}):
                return True
        return False

    recovered = {}
    for k in hidden:
        others = [v for v in domains[k] if v != truth[k]]
        if not any(search({k: v}) for v in sorted(others, key=lambda x: abs(x - truth[k]))):
            recovered[k] = truth[k]
    return recovered


def _long(wide: pd.DataFrame) -> pd.DataFrame:
    return wide.rename_axis("area").reset_index().melt(id_vars="area", var_name="cat", value_name="n")


def test_primary_suppression_alone_is_recoverable_by_both_attacks():
    """The attacks work: without secondary suppression the hidden cell comes back."""
    wide = pd.DataFrame({"A": [2, 8, 15], "B": [10, 12, 9], "C": [20, 13, 30]}, index=["r1", "r2", "r3"])
    grid = p.secondary_suppression(_long(wide), "n", "area", "cat", audit=False)
    primary = grid["suppression"] == "primary"
    only_primary = grid.assign(display=np.where(primary, grid["display"], grid["n"].astype(str)))
    assert subtraction_attack(only_primary) == {("r1", "A"): 2}
    assert brute_force_attack(only_primary) == {("r1", "A"): 2}


@pytest.mark.parametrize(
    "wide",
    [
        pd.DataFrame({"A": [2, 8, 15], "B": [10, 12, 9], "C": [20, 3, 30]}, index=["r1", "r2", "r3"]),
        # The heuristic alone leaves (r1, A) = 1 and (r1, B) = 5 pinned: A in 1..4, B >= 5, A + B = 6.
        pd.DataFrame({"A": [1, 5, 40], "B": [5, 30, 20], "C": [50, 60, 70]}, index=["r1", "r2", "r3"]),
        # A row whose only small cell makes the row total small too.
        pd.DataFrame({"A": [3, 0, 9], "B": [0, 7, 6], "C": [0, 11, 2]}, index=["r1", "r2", "r3"]),
        # Zeros everywhere but one cell.
        pd.DataFrame({"A": [0, 0], "B": [1, 0], "C": [0, 0]}, index=["r1", "r2"]),
    ],
)
def test_secondary_suppression_resists_subtraction_and_brute_force(wide):
    grid = p.secondary_suppression(_long(wide), "n", "area", "cat")
    assert grid["suppressed"].sum() >= (grid["suppression"] == "primary").sum() >= 1
    assert subtraction_attack(grid) == {}
    assert brute_force_attack(grid) == {}
    # Every published number is either a true count or a label; no 1..4 is ever shown.
    shown = grid.loc[~grid["suppressed"], "n"]
    assert not ((shown > 0) & (shown < p.PRIMARY_THRESHOLD)).any()
    assert (grid.loc[~grid["suppressed"], "display"] == grid.loc[~grid["suppressed"], "n"].astype(str)).all()


def test_heuristic_alone_is_caught_by_the_audit():
    wide = pd.DataFrame({"A": [1, 5, 40], "B": [5, 30, 20], "C": [50, 60, 70]}, index=["r1", "r2", "r3"])
    heuristic_only = p.secondary_suppression(_long(wide), "n", "area", "cat", audit=False)
    assert subtraction_attack(heuristic_only) == {}
    assert brute_force_attack(heuristic_only) == {("r1", "A"): 1, ("r1", "B"): 5}
    intervals = p.suppression_intervals(heuristic_only, "n", "area", "cat")
    pinned = intervals[intervals["low"] == intervals["high"]]
    assert set(zip(pinned["area"], pinned["cat"])) == {("r1", "A"), ("r1", "B")}


def test_secondary_suppression_on_random_tables():
    rng = np.random.default_rng(2025)
    for trial in range(30):
        shape = (int(rng.integers(2, 5)), int(rng.integers(2, 5)))
        wide = pd.DataFrame(
            rng.poisson(rng.choice([2.0, 6.0, 15.0]), size=shape),
            index=[f"a{i}" for i in range(shape[0])],
            columns=[f"c{j}" for j in range(shape[1])],
        )
        grid = p.secondary_suppression(_long(wide), "n", "area", "cat")
        assert subtraction_attack(grid) == {}, (trial, wide)
        assert brute_force_attack(grid) == {}, (trial, wide)


def _grid_by_pivot_table(table, value_col, row_key, col_key, threshold):
    """The grid as pandas builds it (how privacy._grid_with_margins built it before it was a scatter-add)."""
    cells = table[[row_key, col_key, value_col]].copy()
    cells["_t"] = np.broadcast_to(np.asarray(threshold, dtype=np.int64), (len(cells),))
    wide = cells.pivot_table(index=row_key, columns=col_key, values=value_col, aggfunc="sum", fill_value=0,
                             observed=True)
    base = int(np.min(cells["_t"])) if len(cells) else p.PRIMARY_THRESHOLD
    limits = cells.pivot_table(index=row_key, columns=col_key, values="_t", aggfunc="max", fill_value=base,
                               observed=True).reindex(index=wide.index, columns=wide.columns, fill_value=base)
    wide.loc[p.TOTAL_KEY] = wide.sum(axis=0)
    wide[p.TOTAL_KEY] = wide.sum(axis=1)
    limits.loc[p.TOTAL_KEY] = limits.max(axis=0)
    limits[p.TOTAL_KEY] = limits.max(axis=1)
    long = wide.stack(future_stack=True).rename(value_col).reset_index()
    long.columns = [row_key, col_key, value_col]
    long[value_col] = long[value_col].astype(np.int64)
    long["threshold"] = limits.stack(future_stack=True).to_numpy().astype(np.int64)
    long["is_total"] = (long[row_key] == p.TOTAL_KEY) | (long[col_key] == p.TOTAL_KEY)
    return long


def test_the_grid_with_margins_is_what_pivot_table_gives():
    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(1, 40))
        rows = rng.choice(["b", "a", "Örebro", "c 1", "d"][: int(rng.integers(1, 6))], n)
        cols = rng.integers(0, int(rng.integers(1, 7)), n)
        table = pd.DataFrame({
            "area": rows if trial % 3 else pd.Series(rows, dtype="str"),
            "cat": [f"k{c}" for c in cols] if trial % 2 else cols,  # text keys, or numbers
            "n": rng.integers(0, 30, n),  # repeated (row, col) pairs are added up
        })
        threshold = rng.choice([5, 10], n) if trial % 4 == 0 else 5
        got = p._grid_with_margins(table, "n", "area", "cat", threshold)
        expected = _grid_by_pivot_table(table, "n", "area", "cat", threshold)
        pd.testing.assert_frame_equal(got, expected)
    with pytest.raises(ValueError, match="reserved"):
        p._grid_with_margins(pd.DataFrame({"area": [p.TOTAL_KEY], "cat": ["x"], "n": [1]}), "n", "area", "cat", 5)


@pytest.mark.parametrize(
    "wide",
    [
        pd.DataFrame({"A": [1, 3], "B": [1, 0], "C": [1, 0], "D": [0, 2], "E": [1, 2]}, index=["r1", "r2"]),
        pd.DataFrame({"x": [1, 1, 1, 1]}, index=["a", "b", "c", "d"]),
    ],
)
def test_table_that_ranges_would_give_away_is_shown_without_them(wide):
    """Four 1s in a row whose total is "<5" must all be 1: there the labels carry no range at all."""
    grid = p.secondary_suppression(_long(wide), "n", "area", "cat")
    assert set(grid.loc[grid["suppressed"], "display"]) == {p.HIDDEN_LABEL}
    assert not grid["display"].isin([str(v) for v in range(1, p.PRIMARY_THRESHOLD)]).any()
    assert subtraction_attack(grid) == {}
    assert brute_force_attack(grid) == {}


def test_sensitive_threshold_and_persons_in_secondary_suppression():
    wide = pd.DataFrame({"A": [9, 30, 25], "B": [12, 14, 40], "C": [15, 16, 50]}, index=["r1", "r2", "r3"])
    long = _long(wide)
    few_persons = (long["area"] == "r3") & (long["cat"] == "C")  # 50 incidents, one person
    grid = p.secondary_suppression(
        long, "n", "area", "cat", threshold=p.SENSITIVE_THRESHOLD, primary=few_persons
    )
    by_key = grid.set_index(["area", "cat"])
    assert by_key.loc[("r1", "A"), "display"] == "<10"
    assert by_key.loc[("r3", "C"), "display"] == p.HIDDEN_LABEL
    assert subtraction_attack(grid) == {}
    assert brute_force_attack(grid) == {}


def test_per_cell_thresholds_for_sensitive_sources():
    """Cells fed by a sensitive partner use 10, the others 5; a total takes the largest of its cells'."""
    wide = pd.DataFrame({"A": [7, 30, 25], "B": [12, 3, 40], "C": [15, 16, 50]}, index=["r1", "r2", "r3"])
    long = _long(wide)
    sensitive = (long["cat"] == "A").to_numpy()  # say category A comes from social services
    thresholds = pd.Series([p.threshold_for(s) for s in sensitive])
    grid = p.secondary_suppression(long, "n", "area", "cat", threshold=thresholds)
    by_key = grid.set_index(["area", "cat"])
    assert by_key.loc[("r1", "A"), "display"] == "<10"  # 7 from a sensitive source
    assert by_key.loc[("r2", "B"), "display"] == "<5"
    assert by_key.loc[("r1", "A"), "threshold"] == 10 and by_key.loc[("r1", "B"), "threshold"] == 5
    assert by_key.loc[(p.TOTAL_KEY, "A"), "threshold"] == 10
    assert by_key.loc[("r1", p.TOTAL_KEY), "threshold"] == 10
    assert subtraction_attack(grid) == {}
    assert brute_force_attack(grid) == {}


def test_one_way_table_with_its_total():
    """A single column of counts and the week's total (the weekly report's per-area list)."""
    long = pd.DataFrame({"area": ["a", "b", "c", "d"], "cat": "n", "n": [3, 12, 40, 7]})
    grid = p.secondary_suppression(long, "n", "area", "cat")
    hidden = set(grid.loc[grid["suppressed"] & ~grid["is_total"], "area"])
    assert hidden == {"a", "d"}  # the "<5" and the next smallest, so the total gives neither away
    assert subtraction_attack(grid) == {}
    assert brute_force_attack(grid) == {}


# --------------------------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------------------------


def test_neutralise_csv_cells():
    frame = pd.DataFrame(
        {
            "text": ["=SUM(A1:A2)", "+46701234567", "-2+3", "@cmd", "\tx", "\rx", "ok", None, "a=b"],
            "number": [-3, 1, 2, 3, 4, 5, 6, 7, 8],
            "category": pd.Categorical(["=1", "x", "x", "x", "x", "x", "x", "x", "x"]),
        }
    )
    frame["=HYPERLINK(x)"] = "y"
    out = p.neutralise_csv_cells(frame)
    assert out["text"].tolist()[:7] == ["'=SUM(A1:A2)", "'+46701234567", "'-2+3", "'@cmd", "'\tx", "'\rx", "ok"]
    assert pd.isna(out["text"][7]) and out["text"][8] == "a=b"
    assert out["number"].tolist() == frame["number"].tolist()
    assert out["category"][0] == "'=1" and out["category"][1] == "x"
    assert "'=HYPERLINK(x)" in out.columns
    assert frame["text"][0] == "=SUM(A1:A2)"  # the input is not changed


@pytest.mark.parametrize("chained", [False, True])
def test_bulk_pseudonyms_from_polars_hash_equal_pythons_hmac(chained):
    # Above POLARS_HMAC_MIN_VALUES distinct values the HMACs come from polars-hash (keyed with the key's text
    # form); below, from Python's hmac (keyed with key.key). Both must give the same pseudonym for every value.
    import hashlib
    import hmac as hmac_module

    master = p.MasterKey(bytes.fromhex("6b" * 32), previous=(bytes.fromhex("5a" * 32),)) if chained \
        else bytes.fromhex("5a" * 32)
    key = p.derive_key(master, "record")
    n = p.POLARS_HMAC_MIN_VALUES + 500
    values = [f"5000-K{i:07d}-26" for i in range(n - 4)] + ["", "Åsa-ärende 7", "１９８５", "x\u00a0y"]
    bulk = p.pseudonymise(pd.Series(values, dtype="str"), key)
    one_by_one = [key.hmac_hex(v.encode("utf-8")) for v in values]
    assert list(bulk) == one_by_one
    assert list(p.pseudonymise(pa.array(values), key).to_pylist()) == one_by_one
    if not chained:  # the reference: Python's hmac module with the key's HMAC key, nothing of ours
        assert one_by_one[-3] == hmac_module.new(key.key, values[-3].encode("utf-8"), hashlib.sha256).hexdigest()
    with_nulls = p.pseudonymise(pd.Series(values[:-4] + [None], dtype="str"), key)
    assert with_nulls.iloc[-1] is None or pd.isna(with_nulls.iloc[-1])


# --------------------------------------------------------------------------------------------------------------
# The bulk shortcuts give what the general path gives
# --------------------------------------------------------------------------------------------------------------


def test_repeated_and_distinct_values_key_the_same_in_bulk():
    # Mostly distinct values are keyed one by one (no dictionary), repeated ones once per distinct value.
    key = p.derive_key(bytes.fromhex("5a" * 32), "record")
    distinct = [f"5000-K{i:07d}-26" for i in range(p.POLARS_HMAC_MIN_VALUES + 1000)]
    for values in (distinct + [None], distinct * 3 + [None, "Åsa"]):
        expected = [None if v is None else key.hmac_hex(v.encode("utf-8")) for v in values]
        assert p.pseudonymise(pa.array(values), key).to_pylist() == expected
        assert list(p.pseudonymise(pd.Series(values, dtype="string[pyarrow]"), key)) == expected


def test_the_digit_table_is_every_unicode_decimal_digit():
    import sys
    import unicodedata

    expected = {}
    for codepoint in range(128, sys.maxunicode + 1):
        value = unicodedata.decimal(chr(codepoint), None)
        if value is not None:
            expected[codepoint] = str(value)
    assert p._digit_table() == expected


def _personnummer_like(count: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    alphabet = list("0123456789" * 6) + list("-+  ") + list("\u2013\u2212\uff0b\u00a0\u200b\uff11\u0663\ufeffaX\t")
    values: list = ["".join(rng.choice(alphabet, int(rng.integers(0, 16)))) for _ in range(count)]
    for _ in range(count):
        year, month, day = int(rng.integers(1890, 2030)), int(rng.integers(0, 14)), int(rng.integers(0, 32))
        ten = make_pnr(f"{year % 100:02d}{month:02d}{day + (60 if rng.random() < .1 else 0):02d}",
                       f"{int(rng.integers(0, 1000)):03d}")
        if rng.random() < .1:
            ten = ten[:-1] + str((int(ten[-1]) + 1) % 10)
        century = str(year // 100)
        values.append(rng.choice([ten, f"{ten[:6]}-{ten[6:]}", f"{ten[:6]}+{ten[6:]}", century + ten,
                                  f"{century}{ten[:6]}-{ten[6:]}", f"{ten[:6]} {ten[6:]}",
                                  f" {ten[:6]}\u2013{ten[6:]} ", f"{century}{ten[:6]}+{ten[6:]}"]))
    return values + [None, "", "  "]


@pytest.mark.parametrize("reference_date", [REF, date(1999, 12, 31), date(800, 6, 1)])
def test_personnummer_read_from_the_bytes_equal_the_regular_expression(monkeypatch, reference_date):
    # The usual shapes are read straight from the bytes; with that shortcut off, the regular expression reads
    # every value. Both give the same canonical values and statuses.
    values = pd.Series(_personnummer_like(20_000, seed=5), index=np.arange(40_003) * 2, dtype=object)
    fast = p.canonical_personnummer(values, reference_date=reference_date)
    assert fast[1].eq(p.STATUS_VALID).sum() > 5_000
    original = p._shaped_personnummer

    def nothing_shaped(text, missing):
        matched, *rest = original(text, missing)
        return (np.zeros_like(matched), *rest)

    monkeypatch.setattr(p, "_shaped_personnummer", nothing_shaped)
    slow = p.canonical_personnummer(values, reference_date=reference_date)
    for got, expected in zip(fast, slow):
        pd.testing.assert_series_equal(got, expected)


def test_scrubbing_distinct_texts_once_and_prefiltering_once_change_nothing(monkeypatch):
    texts = ["Ring 0701234567 eller mejla a@b.se", None, "ABC 123 på Storgatan 5, 850709-9805",
             "Tjuv på Ekersvägen 12B kl. 22.30, 19850709-9805 och +46 70-123 45 67", "Inget här", "x@y.se 0046701234567"]
    values = pd.Series(texts * 400, index=np.arange(2400) + 7, dtype="string[pyarrow]", name="description")
    assert len(texts) * 2 <= len(values) and len(values) >= p.SCRUB_DISTINCT_MIN_VALUES  # the distinct path
    out, counts = p._scrub(values)
    monkeypatch.setattr(p, "SCRUB_DISTINCT_MIN_VALUES", 10**9)  # every row as it is
    monkeypatch.setattr(p, "_prefilter_masks", lambda text: {name: np.ones(len(text), dtype=bool)
                                                            for name in p._PREFILTERS})  # every pattern everywhere
    plain, plain_counts = p._scrub(values)
    pd.testing.assert_series_equal(out, plain)
    assert counts == plain_counts and counts["personnummer"] == 800
    assert out.iloc[2] == "[regnr] på [adress], [personnummer]"


def test_prefiltering_once_changes_nothing_on_the_real_narrative_texts(monkeypatch):
    texts = _narratives().astype("str")
    out, counts = p._scrub(texts)
    monkeypatch.setattr(p, "_prefilter_masks", lambda text: {name: np.ones(len(text), dtype=bool)
                                                            for name in p._PREFILTERS})
    plain, plain_counts = p._scrub(texts)
    pd.testing.assert_series_equal(out, plain)
    assert counts == plain_counts
