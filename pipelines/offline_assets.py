"""Self-contained map pages: Leaflet inlined from a pinned package, no request to any other host.

PRIVACY.md ("Reports and maps") and DESIGN.md section 3 ("Render"): every output is self-contained and makes
no request to a CDN, tile server or any other host when it is opened. Reports are mailed, archived and opened
on municipal networks that may not reach the internet, and a request to a CDN would tell a third party who
opened which report when. folium's default page loads about eleven files from CDNs (Leaflet, jQuery,
Bootstrap, Font Awesome, awesome-markers, ...); a choropleth needs only Leaflet's JS and CSS.

Where Leaflet comes from: the PyPI package ``django-js-lib-leaflet`` (pinned in pyproject.toml/uv.lock), which
ships Leaflet's own distribution files (BSD-2-Clause) as package data. It is read with ``importlib.resources``
at build time, so the bytes are exactly those of a locked, hash-checked dependency, never a copy committed to
this repository, and no network is needed to build. Its Leaflet is 1.9.4; folium 0.20 is written against
1.9.3 (same minor release, bug fixes only). :data:`LEAFLET_VERSION_PREFIX` is checked against the file's
banner, so an upgrade to an incompatible Leaflet fails loudly instead of drawing a broken map.

Only the package is imported as a resource container: nothing of Django is imported or needed.
"""

from __future__ import annotations

import base64
import re
from collections import OrderedDict
from html.parser import HTMLParser
from importlib import resources
from typing import Any

LEAFLET_PACKAGE = "js_lib_leaflet"
LEAFLET_STATIC = ("static", "js_lib_leaflet")
LEAFLET_VERSION_PREFIX = "1.9."

# Placeholders given to folium in place of CDN addresses; replaced by the inline files after rendering.
_JS_PLACEHOLDER = "est-inline:leaflet.js"
_CSS_PLACEHOLDER = "est-inline:leaflet.css"

#: URL strings that may stay in a page because nothing fetches them: the SVG namespace is an identifier passed
#: to createElementNS, and leafletjs.com appears in Leaflet's licence banner and in the text of its attribution
#: link (the attribution control is switched off on our maps, and a link is not a request anyway).
NON_REQUEST_URLS = frozenset({"http://www.w3.org/2000/svg", "https://leafletjs.com"})

_URL = re.compile(r"(?i)\b(?:https?|ftp|wss?)://[^\s\"'<>()\\]+")
_CSS_URL = re.compile(r"url\(\s*(['\"]?)(.*?)\1\s*\)")
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)


class OfflineAssetError(RuntimeError):
    """A page would load something from elsewhere, or a bundled asset is not what the code expects."""


def _static(name: str) -> bytes:
    return resources.files(LEAFLET_PACKAGE).joinpath(*LEAFLET_STATIC, name).read_bytes()


def leaflet_js() -> str:
    """Leaflet's minified JS, checked to be the expected version and safe to put inside a <script> element."""
    text = _static("leaflet.js").decode("utf-8")
    match = re.search(r"Leaflet (\d+\.\d+\.\d+)", text[:400])
    if not match or not match.group(1).startswith(LEAFLET_VERSION_PREFIX):
        found = match.group(1) if match else "unknown"
        raise OfflineAssetError(f"{LEAFLET_PACKAGE} ships Leaflet {found}; folium 0.20 needs {LEAFLET_VERSION_PREFIX}x")
    if "</script" in text.lower():
        raise OfflineAssetError("leaflet.js contains '</script' and cannot be inlined as is")
    return text


def leaflet_css() -> str:
    """Leaflet's CSS with its images (layer-control and marker icons) inlined as data: URIs.

    Comments are dropped (they hold bug-tracker addresses, which are not requests but would need explaining).
    Any other ``url(...)`` that is not a fragment (IE's ``#default#VML``) or an image of the package is refused.
    """
    css = _CSS_COMMENT.sub("", _static("leaflet.css").decode("utf-8"))

    def inline(match: re.Match) -> str:
        target = match.group(2)
        if target.startswith(("data:", "#")):
            return match.group(0)
        if target.startswith("images/") and target.endswith(".png") and "/" not in target[len("images/"):]:
            encoded = base64.b64encode(_static(target)).decode("ascii")
            return f"url(data:image/png;base64,{encoded})"
        raise OfflineAssetError(f"leaflet.css refers to {target!r}, which cannot be inlined")

    css = _CSS_URL.sub(inline, css)
    if "</style" in css.lower() or "@import" in css:
        raise OfflineAssetError("leaflet.css cannot be inlined as is")
    return css


def external_urls(html: str) -> list[str]:
    """Every address in ``html`` that could make a request to another host, for checks and tests.

    Looks at three places: absolute URLs anywhere in the text (scripts and styles included) other than the
    known non-request identifiers in :data:`NON_REQUEST_URLS`; any ``src``/``href``/``srcset``/... attribute
    that is not a data: URI or an in-page fragment; and CSS ``url(...)`` values that are neither.
    """
    found = [url.rstrip(".,;") for url in _URL.findall(html)]
    found = [url for url in found if url not in NON_REQUEST_URLS]
    collector = _AttributeCollector()
    collector.feed(html)
    collector.close()
    found.extend(collector.references)
    for _quote, target in _CSS_URL.findall(html):
        if target and not target.startswith(("data:", "#")) and not target.startswith("${"):
            found.append(target)
    return sorted(set(found))


class _AttributeCollector(HTMLParser):
    """Attributes through which a browser fetches something: anything but data: URIs and #fragments."""

    FETCHING = {"src", "href", "srcset", "poster", "data", "action", "formaction", "background", "manifest",
                "xlink:href", "ping", "icon"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.references: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in self.FETCHING and value is not None and not value.startswith(("data:", "#")):
                self.references.append(f"<{tag} {name}={value}>")

    handle_startendtag = handle_starttag


def stable_ids(root: Any) -> None:
    """Give every element of a branca/folium tree an id from its position, so a page renders byte-identically.

    folium names each element after 16 random bytes (``map_3f9c...``); two renders of the same data would
    differ in every variable name, breaking RELIABILITY.md's "outputs byte-identical". Ids are reassigned
    depth-first in insertion order (a Figure's header/html/script parts after its children, so that the map's
    names do not depend on what the page adds around it), and the children dictionaries re-keyed where the key
    was the old name.
    """
    counter = 0

    def visit(element: Any) -> None:
        nonlocal counter
        children = getattr(element, "_children", None)
        old_names = {}
        if children:
            old_names = {key: child for key, child in children.items() if key == child.get_name()}
        counter += 1
        element._id = f"{counter:032x}"
        if children:
            for child in list(children.values()):
                visit(child)
            rebuilt: OrderedDict = OrderedDict()
            for key, child in children.items():
                rebuilt[child.get_name() if key in old_names else key] = child
            element._children = rebuilt
        # A Figure's header/html/script last: what a page adds there does not shift the map's own names.
        for part in ("header", "html", "script"):
            inner = element.__dict__.get(part)
            if inner is not None and hasattr(inner, "_children"):
                visit(inner)

    visit(root)


def standalone_html(folium_map: Any) -> str:
    """The page of a folium Map as one self-contained HTML string: Leaflet inline, nothing fetched from anywhere.

    The map's CDN list is replaced (on this instance only, never on folium's class, which other code in the
    same process may use) by Leaflet alone; every other element's JS/CSS is refused, since it would need a
    bundled copy too. After rendering, the two placeholders become inline ``<script>``/``<style>`` elements,
    and the page is checked: no element with ``src``/``href``, no absolute URL except known identifiers
    (:func:`external_urls`). Raises :class:`OfflineAssetError` if anything is left.
    """
    folium_map.default_js = [("leaflet", _JS_PLACEHOLDER)]
    folium_map.default_css = [("leaflet_css", _CSS_PLACEHOLDER)]
    figure = folium_map.get_root()
    _refuse_other_assets(figure, folium_map)
    stable_ids(figure)
    html = figure.render()

    script_tag = f'<script src="{_JS_PLACEHOLDER}"></script>'
    style_tag = f'<link rel="stylesheet" href="{_CSS_PLACEHOLDER}"/>'
    if html.count(script_tag) != 1 or html.count(style_tag) != 1:
        raise OfflineAssetError("folium did not render the Leaflet placeholders once each")
    # Plain str.replace: the asset text is inserted as is (no regex replacement template to misread).
    html = html.replace(script_tag, "<script>" + leaflet_js() + "</script>")
    html = html.replace(style_tag, "<style>" + leaflet_css() + "</style>")
    leftover = external_urls(html)
    if leftover:
        raise OfflineAssetError(f"the page would still load from elsewhere: {leftover[:5]}")
    return html


def _refuse_other_assets(figure: Any, folium_map: Any) -> None:
    def visit(element: Any) -> None:
        if element is not folium_map:
            for attribute in ("default_js", "default_css"):
                assets = getattr(element, attribute, None)
                if assets:
                    names = [name for name, _url in assets]
                    raise OfflineAssetError(
                        f"{type(element).__name__} needs {names} from a CDN; bundle them or do without"
                    )
        for child in getattr(element, "_children", {}).values():
            visit(child)

    visit(figure)
