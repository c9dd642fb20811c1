"""Report text from message catalogues: Swedish by default, English as an option (issue 5, item 1).

One YAML file per language in ``reports/messages/`` (``sv.yaml``, ``en.yaml``) maps a message key to its text,
with ``{name}`` placeholders filled by :meth:`Messages.__call__` (``str.format``). Templates and the report code
take every sentence from here, never from literals scattered in code. Numbers keep the Swedish format in both
languages (1 234,5 with a no-break space): the figures are the municipality's, and a report must not change its
numbers with its language; month names and words follow the language.
"""

from __future__ import annotations

from functools import lru_cache

import yaml

from pipelines.settings import REPORTS_DIR

LANGUAGES = ("sv", "en")
DEFAULT_LANGUAGE = "sv"


class Messages:
    """The catalogue of one language; ``messages("key", name=value)`` gives the text."""

    def __init__(self, lang: str, catalogue: dict[str, object]):
        self.lang = lang
        self.catalogue = catalogue

    def __call__(self, key: str, **values: object) -> str:
        try:
            text = self.catalogue[key]
        except KeyError:
            raise KeyError(f"message {key!r} missing from the {self.lang!r} catalogue") from None
        return str(text).format(**values) if values else str(text)

    def months(self) -> tuple[str, ...]:
        return tuple(self.catalogue["months"])  # type: ignore[arg-type]


@lru_cache(maxsize=None)
def messages(lang: str = DEFAULT_LANGUAGE) -> Messages:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown report language {lang!r}; one of {', '.join(LANGUAGES)}")
    path = REPORTS_DIR / "messages" / f"{lang}.yaml"
    return Messages(lang, yaml.safe_load(path.read_text(encoding="utf-8")))
