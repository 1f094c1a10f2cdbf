"""Licence strings to SPDX ids, and the allow/deny policy that decides what may be trained on.

Licences reach ingestion as free text: a manifest column, a FLAC ``LICENSE`` comment, an ID3
``WCOP`` URL, a copyright notice such as ``"2024 Jane Doe, licensed under CC BY-SA 4.0"``.
:func:`normalize_license` reads all of these, in this order, and stops at the first that answers:

    1. the site's aliases from ``soundtrail.toml`` (whole string, any case)  "GPL" -> GPL-2.0-or-later
    2. an SPDX id or expression (the SPDX list ships in ``license-expression``) "cc-by-4.0", "GPL-2.0+"
    3. a scan of the text for every licence it names:
         creativecommons.org URLs        .../licenses/by-sa/4.0/deed.de, .../publicdomain/zero/1.0/
         Creative Commons names          "CC BY 4.0", "Creative Commons Attribution-ShareAlike 4.0"
         public-domain names             "CC0", "Public Domain Dedication", "Public Domain Mark 1.0"
         SPDX ids inside prose           "... licensed under MIT", "(Apache-2.0)"

The scan never guesses. One licence found: ``ok``. Two different ones ("CC BY 4.0 or CC BY-SA 4.0"),
or a name without its version ("CC BY", "Creative Commons" alone): ``ambiguous``. Nothing
recognisable: ``unknown``. An empty string: ``missing``. The policy quarantines all but ``ok``.

A Creative Commons name is read as a marker (``CC`` or ``Creative Commons``) followed by licence
elements, a version and an optional jurisdiction port, and composed into the SPDX id the SPDX list
spells, so ported licences ("CC BY-SA 2.0 UK" -> CC-BY-SA-2.0-UK) come out right and a combination
that does not exist ("CC BY 5.0") is reported as such rather than approximated.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from license_expression import ExpressionError, Licensing, get_spdx_licensing

Status = Literal["ok", "missing", "unknown", "ambiguous"]

# SPDX allows site-defined ids of this form (``LicenseRef-Acme-Catalogue-2024``) for licences off the list.
_LICENSE_REF = re.compile(r"LicenseRef-[A-Za-z0-9.\-]+")
_MAX_QUOTE = 80


class LicenseConfigError(ValueError):
    """A policy list or alias names something that is not an SPDX licence id; the message names the entry."""


@dataclass(frozen=True)
class LicenseResult:
    """What one licence string (or a manifest value plus file tags) says.

    ``spdx_id`` is set only when ``status`` is ``ok``; ``reason`` explains every other status in a
    sentence fit for a quarantine record; ``source`` says where the licence was read ("manifest",
    "file tag"), when :func:`combine_licenses` knows it.
    """

    spdx_id: str | None
    status: Status
    reason: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class PolicyDecision:
    accepted: bool
    reason: str | None = None


# ---------------------------------------------------------------------------------------------
# The SPDX list


@functools.cache
def _licensing() -> Licensing:
    """The SPDX licensing object; building it takes tens of milliseconds, so it is built once."""
    return get_spdx_licensing()


@functools.cache
def _spdx_ids() -> dict[str, str]:
    """Lower-cased SPDX licence ids and their deprecated spellings -> the current id.

    Exceptions (``Classpath-exception-2.0``) are not licences, and ScanCode's ``LicenseRef-scancode-*``
    keys are not SPDX ids, so both are left out; deprecated ids (``GPL-2.0``) map to their successors.
    """
    table: dict[str, str] = {}
    for key, symbol in _licensing().known_symbols.items():
        if symbol.is_exception or key.startswith("LicenseRef-"):
            continue
        table[key.lower()] = key
        for alias in symbol.aliases:
            if not alias.lower().startswith("licenseref-"):
                table.setdefault(alias.lower(), key)
    return table


def spdx_id(text: str) -> str | None:
    """The SPDX licence id ``text`` spells, in any case, or None; ``LicenseRef-*`` ids are taken as written."""
    text = text.strip()
    if _LICENSE_REF.fullmatch(text):
        return text
    return _spdx_ids().get(text.lower())


def validate_aliases(aliases: Mapping[str, str] | None) -> dict[str, str]:
    """Aliases keyed by their folded spelling, each target checked to be an SPDX id and canonicalised."""
    checked: dict[str, str] = {}
    for alias, target in (aliases or {}).items():
        canonical = spdx_id(target) if isinstance(target, str) else None
        if canonical is None:
            raise LicenseConfigError(f"licence alias {alias!r} maps to {target!r}, which is not an SPDX licence id")
        checked[_fold(alias)] = canonical
    return checked


# ---------------------------------------------------------------------------------------------
# Creative Commons


_ELEMENT_WORDS = {
    "by": "BY", "attribution": "BY",
    "nc": "NC", "noncommercial": "NC",
    "nd": "ND", "noderivs": "ND",
    "sa": "SA", "sharealike": "SA",
}
_ELEMENT_ORDER = ("BY", "NC", "ND", "SA")  # the order SPDX ids and CC URLs spell them in
_ELEMENT_NAMES = {"BY": "Attribution", "NC": "NonCommercial", "ND": "NoDerivatives", "SA": "ShareAlike"}
_PORT_NAMES = {
    "AT": "Austria", "AU": "Australia", "DE": "Germany", "FR": "France", "IGO": "IGO", "JP": "Japan",
    "NL": "Netherlands", "UK": "England and Wales", "US": "United States",
}
# Words allowed between a licence's parts: "Creative Commons Attribution 4.0 International Public License".
_FILLER = {"license", "licence", "licensed", "licenced", "international", "unported", "generic", "public", "the"}
# Ports are written as codes ("UK") or as the names above ("Germany"); two-word names are folded first.
_PORT_WORDS = {name.lower(): code for code, name in _PORT_NAMES.items()}
_MULTIWORD = [
    (re.compile(r"\bengland and wales\b"), "uk"),
    (re.compile(r"\bunited states\b"), "us"),
    (re.compile(r"\bnon[\s_-]*commercial"), "noncommercial"),
    (re.compile(r"\bshare[\s_-]*alike"), "sharealike"),
    (re.compile(r"\bno[\s_-]*deriv(?:ative)?s?(?:[\s_-]*works)?"), "noderivs"),
]
_TOKEN = re.compile(r"v?\d+(?:\.\d+)*|[a-z]+")
_VERSION = re.compile(r"v?(\d)(?:\.(\d))?")
_CC_URL = re.compile(
    r"(?:https?://)?(?:www\.)?creativecommons\.org/"
    r"(?:(?:licenses|licences)/(?P<elements>[a-z]+(?:-[a-z]+)*)|publicdomain/(?P<tool>[a-z]+))"
    r"/(?P<version>\d\.\d)(?:/(?P<port>[a-z]{2,3})(?![a-z]))?",
    re.IGNORECASE,
)


def _cc_id(elements: Iterable[str], version: str, port: str | None = None) -> str:
    """The id SPDX would give a CC licence: elements in canonical order, version, port."""
    chosen = set(elements)
    parts = ["CC", *(e for e in _ELEMENT_ORDER if e in chosen), version]
    if port:
        parts.append(port.upper())
    return "-".join(parts)


def _version(token: str) -> str | None:
    match = _VERSION.fullmatch(token)
    return f"{match[1]}.{match[2] or 0}" if match else None


@dataclass
class _Scan:
    """Everything one string names: definite licences, vague mentions, and names with no SPDX id."""

    found: list[str] = field(default_factory=list)
    vague: list[tuple[str, frozenset[str]]] = field(default_factory=list)  # (quoted text, elements named)
    unlisted: list[str] = field(default_factory=list)

    def add(self, candidate: str, quoted: str) -> None:
        canonical = spdx_id(candidate)
        if canonical is None:
            self.unlisted.append(f"{quoted!r} names {candidate}, which is not in the SPDX licence list")
        elif canonical not in self.found:
            self.found.append(canonical)


def _scan_urls(text: str, scan: _Scan) -> str:
    """Record every creativecommons.org URL in ``text``; return the text with them blanked out."""
    for match in _CC_URL.finditer(text):
        version, port = match["version"], match["port"]
        if match["tool"]:
            tool = {"zero": "CC0", "mark": "CC-PDM"}.get(match["tool"].lower(), f"CC-{match['tool'].upper()}")
            scan.add(f"{tool}-{version}", match[0])
        else:
            elements = [_ELEMENT_WORDS.get(part, part.upper()) for part in match["elements"].lower().split("-")]
            scan.add(_cc_id(elements, version, port), match[0])
    return _CC_URL.sub(" ", text)


def _scan_names(text: str, scan: _Scan) -> None:
    """Record Creative Commons and public-domain names written out in words."""
    folded = text.lower()
    for pattern, word in _MULTIWORD:
        folded = pattern.sub(word, folded)
    tokens = _TOKEN.findall(folded)
    i = 0
    while i < len(tokens):
        token, following = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else ""
        marker = 1 if token == "cc" else 2 if (token, following) == ("creative", "commons") else 0
        if marker and tokens[i + marker:i + marker + 1] in (["0"], ["zero"]):
            i += marker + 1
            if i < len(tokens) and _version(tokens[i]):
                i += 1
            scan.add("CC0-1.0", "CC0")
        elif marker:
            i = _read_cc(tokens, i + marker, scan, marked=True)
        elif (token, following) == ("public", "domain"):
            i = _read_public_domain(tokens, i + 2, scan)
        elif token == "attribution":
            i = _read_cc(tokens, i, scan, marked=False)
        else:
            i += 1


def _read_public_domain(tokens: list[str], i: int, scan: _Scan) -> int:
    following = tokens[i] if i < len(tokens) else ""
    if following == "dedication" and tokens[i + 1:i + 3] == ["and", "certification"]:
        scan.add("CC-PDDC", "Public Domain Dedication and Certification")
        return i + 3
    if following == "dedication":
        scan.add("CC0-1.0", "Public Domain Dedication")
        return i + 1
    if following == "mark":
        version = _version(tokens[i + 1]) if i + 1 < len(tokens) else None
        scan.add(f"CC-PDM-{version or '1.0'}", "Public Domain Mark")
        return i + 2 if version else i + 1
    scan.vague.append(("public domain", frozenset()))
    return i


def _read_cc(tokens: list[str], i: int, scan: _Scan, *, marked: bool) -> int:
    """Read ``[elements] [version] [port]`` after a CC marker (or from a bare "Attribution ...")."""
    elements: list[str] = []
    while i < len(tokens) and (tokens[i] in _ELEMENT_WORDS or tokens[i] in _FILLER):
        if tokens[i] in _ELEMENT_WORDS:
            elements.append(_ELEMENT_WORDS[tokens[i]])
        i += 1
    version = _version(tokens[i]) if i < len(tokens) else None
    named = "CC " + "-".join(e for e in _ELEMENT_ORDER if e in elements) if elements else "Creative Commons"
    if version is None:
        if marked:  # a bare "attribution" without a version is ordinary prose, not a licence
            scan.vague.append((named, frozenset(elements)))
        return i
    i += 1
    port = _PORT_WORDS.get(tokens[i], tokens[i].upper()) if i < len(tokens) else None
    if port and spdx_id(_cc_id(elements, version, port)):
        i += 1
    else:
        port = None
    if not elements:
        scan.vague.append((f"Creative Commons {version}", frozenset()))
    else:
        scan.add(_cc_id(elements, version, port), f"{named} {version}")
    return i


_PROSE_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+\-]*")
_CUES = {"license", "licence", "licensed", "licenced", "under", "spdx-license-identifier", "and", "or"}


def _scan_spdx_words(text: str, scan: _Scan) -> None:
    """SPDX ids inside prose. Many ids are ordinary words ("Intel", "Fair", "Glide"), so a word counts
    only right after a cue ("licensed under MIT", "License: ISC"); ids with a hyphen and a digit
    ("Apache-2.0", "GPL-3.0-or-later") are specific enough to count anywhere."""
    previous = ""
    for word in _PROSE_TOKEN.findall(text):
        word = word.rstrip(".")
        canonical = spdx_id(word)
        specific = "-" in word and any(ch.isdigit() for ch in word)
        if canonical and (specific or previous in _CUES) and canonical not in scan.found:
            scan.found.append(canonical)
        previous = word.lower()


# ---------------------------------------------------------------------------------------------
# Normalisation


def _fold(text: str) -> str:
    return " ".join(text.split()).lower()


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= _MAX_QUOTE else text[: _MAX_QUOTE - 3] + "...")


def _expression(text: str) -> LicenseResult | None:
    """An SPDX expression of several licences ("MIT OR Apache-2.0"): valid, but not one licence."""
    if not re.search(r"\s(?:AND|OR|WITH)\s", text, re.IGNORECASE):
        return None
    try:
        parsed = _licensing().parse(text, validate=True, strict=True)
    except ExpressionError:
        return None
    return LicenseResult(None, "ambiguous", f"licence expression {_quote(parsed.render())} combines several "
                         "licences; name the one that applies")


def normalize_license(text: str | None, aliases: Mapping[str, str] | None = None) -> LicenseResult:
    """Read one licence string; see the module docstring for the forms understood and the statuses."""
    if text is None or not text.strip():
        return LicenseResult(None, "missing", "no licence given")
    folded = _fold(text)
    site = validate_aliases(aliases).get(folded)
    if site:
        return LicenseResult(site, "ok")
    exact = spdx_id(text)
    if exact:
        return LicenseResult(exact, "ok")
    expression = _expression(text)
    if expression:
        return expression

    scan = _Scan()
    rest = _scan_urls(text, scan)
    _scan_names(rest, scan)
    _scan_spdx_words(rest, scan)
    if len(scan.found) > 1:
        return LicenseResult(None, "ambiguous", f"licence string {_quote(text)} names several licences: "
                             + ", ".join(scan.found))
    found_elements = {frozenset(p for p in found.split("-")[1:] if p in _ELEMENT_NAMES) for found in scan.found}
    # A vague mention that agrees with the licence found ("Creative Commons licence: CC BY 4.0") is harmless.
    vague = [(q, e) for q, e in scan.vague if not scan.found or (e and e not in found_elements)]
    if scan.found and scan.unlisted:
        return LicenseResult(None, "ambiguous", f"licence string {_quote(text)} names {scan.found[0]}, and "
                             f"{scan.unlisted[0]}")
    if vague:
        quoted, elements = vague[0]
        if scan.found:
            return LicenseResult(None, "ambiguous", f"licence string {_quote(text)} names {scan.found[0]} "
                                 f"and also {quoted!r}")
        if quoted == "public domain":
            return LicenseResult(None, "ambiguous", "ambiguous licence: 'public domain' names no licence "
                                 "(CC0-1.0 or CC-PDM-1.0?)")
        what = "names no version" if elements else "names no licence"
        return LicenseResult(None, "ambiguous", f"ambiguous licence: {quoted!r} {what}")
    if scan.found:
        return LicenseResult(scan.found[0], "ok")
    if scan.unlisted:
        return LicenseResult(None, "unknown", f"unknown licence: {scan.unlisted[0]}")
    return LicenseResult(None, "unknown", f"unknown licence {_quote(text)}")


def combine_licenses(manifest_value: str | None, tag_values: Iterable[str],
                     aliases: Mapping[str, str] | None = None) -> LicenseResult:
    """The licence of one file from its manifest row and its own tags.

    The manifest is the operator's statement and comes first: when it is present but unreadable
    (unknown, ambiguous) that is the answer, never a guess from tags. Tags fill in when the manifest
    is silent. Any two readable licences that differ make the file ambiguous: a file tagged
    CC-BY-NC-4.0 is not trained on because a manifest says CC-BY-4.0. Tag values that name no
    licence (a bare "(c) 2024 Jane Doe") neither add nor contradict.
    """
    stated = normalize_license(manifest_value, aliases)
    if stated.status in ("unknown", "ambiguous"):
        return LicenseResult(None, stated.status, f"{stated.reason} (manifest)", "manifest")
    readings = [("manifest", stated)] if stated.status == "ok" else []
    readings += [("file tag", normalize_license(value, aliases)) for value in tag_values]

    ok = [(source, result) for source, result in readings if result.status == "ok"]
    for source, result in ok[1:]:
        if result.spdx_id != ok[0][1].spdx_id:
            return LicenseResult(None, "ambiguous", f"licence strings disagree: {ok[0][0]} {ok[0][1].spdx_id} "
                                 f"vs {source} {result.spdx_id}")
    if ok:
        source, result = ok[0]
        return LicenseResult(result.spdx_id, "ok", None, source)
    for status in ("ambiguous", "unknown"):
        for source, result in readings:
            if result.status == status:
                return LicenseResult(None, status, f"{result.reason} ({source})", source)
    return LicenseResult(None, "missing", "no licence in the manifest or the file's tags")


# ---------------------------------------------------------------------------------------------
# Policy and reporting


@dataclass(frozen=True)
class LicensePolicy:
    """Which licences may be trained on: ``deny`` always wins; anything not in ``allow`` is refused.

    Both lists are checked on construction (an entry that is not an SPDX id is a configuration
    error naming it) and canonicalised, so "cc-by-4.0" in a config matches CC-BY-4.0 results.
    """

    allow: list[str]
    deny: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow", self._checked(self.allow, "allow"))
        object.__setattr__(self, "deny", self._checked(self.deny, "deny"))
        both = sorted(set(self.allow) & set(self.deny))
        if both:
            raise LicenseConfigError(f"licence policy lists {', '.join(both)} in both allow and deny")

    @staticmethod
    def _checked(entries: Iterable[str], name: str) -> list[str]:
        checked = []
        for entry in entries:
            canonical = spdx_id(entry) if isinstance(entry, str) else None
            if canonical is None:
                raise LicenseConfigError(f"licence policy {name} list: {entry!r} is not an SPDX licence id")
            checked.append(canonical)
        return checked

    def decide(self, result: LicenseResult) -> PolicyDecision:
        if result.status != "ok" or result.spdx_id is None:
            return PolicyDecision(False, result.reason or f"licence is {result.status}")
        if result.spdx_id in self.deny:
            return PolicyDecision(False, f"licence {result.spdx_id} is denied by policy")
        if result.spdx_id not in self.allow:
            return PolicyDecision(False, f"licence {result.spdx_id} is not in the allow list")
        return PolicyDecision(True)


def _cc_names() -> dict[str, str]:
    """Human names for every Creative Commons id in the SPDX list, in Creative Commons' own wording."""
    names = {
        "CC0-1.0": "CC0 1.0 Universal (Public Domain Dedication)",
        "CC-PDM-1.0": "Public Domain Mark 1.0",
        "CC-PDDC": "Creative Commons Public Domain Dedication and Certification",
    }
    for canonical in _spdx_ids().values():
        match = re.fullmatch(r"CC-((?:BY|NC|ND|SA)(?:-(?:NC|ND|SA))*)-(\d\.\d)(?:-([A-Z]+))?", canonical)
        if not match:
            continue
        elements, version, port = match[1].split("-"), match[2], match[3]
        words = [_ELEMENT_NAMES[e] for e in elements]
        if version != "4.0":
            words = ["NoDerivs" if w == "NoDerivatives" else w for w in words]
        scope = _PORT_NAMES.get(port or "", port) if port else {"4.0": "International", "3.0": "Unported"}.get(
            version, "Generic")
        names[canonical] = f"Creative Commons {'-'.join(words)} {version} {scope}"
    return names


LICENSE_NAMES: dict[str, str] = _cc_names()


def license_name(spdx: str) -> str:
    """A licence's full name for reports; ids without a name on file are shown as the id."""
    return LICENSE_NAMES.get(spdx, spdx)


def requires_attribution(spdx: str) -> bool:
    """Whether the licence obliges users to credit the author (the CC BY family), for the audit's credits list."""
    return spdx.startswith("CC-BY-")
