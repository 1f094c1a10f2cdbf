"""Licence strings to SPDX ids, and the allow/deny policy that decides what may be trained on.

Licences reach ingestion as free text: a manifest column, a FLAC ``LICENSE`` comment, an ID3
``WCOP`` URL, a copyright notice such as ``"2024 Jane Doe, licensed under CC BY-SA 4.0"``.
:func:`normalize_license` reads all of these, in this order, and stops at the first that answers:

    1. the site's aliases from ``soundtrail.toml`` (whole string, any case)  "GPL" -> GPL-2.0-or-later
    2. an SPDX id or expression (the SPDX list ships in ``license-expression``) "cc-by-4.0", "GPL-2.0+"
    3. a reading of the text that accounts for every word in it (:mod:`soundtrail.licenses.reading`
       says which words count and why): licence names, creativecommons.org URLs, SPDX ids in prose,
       statement words ("licensed under"), a copyright notice ("(c) 2024 Jane Doe")

The reading never guesses. Each outcome has a status and, unless ``ok``, a kind and a reason that
quotes the string:

    ok         one licence, every word accounted for                     "2024 Jane Doe. Licensed under CC BY-SA 4.0"
    missing    empty (kind ``empty``)
    unknown    no licence named: only a copyright notice (``notice``)     "(c) 2024 Jane Doe"
               words the reading does not know (``unaccounted``)         "my own terms", "evilcreativecommons.org/..."
               a name with no SPDX id (``unlisted``)                     "CC BY 5.0"
               over MAX_LICENSE_CHARS characters (``length``)            a pasted legal code
    ambiguous  several licences (``several``), an SPDX expression         "CC BY 4.0 or CC BY-SA 4.0"
               (``expression``), a name without its version (``vague``)  "CC BY", "public domain"
    unclear    a restriction outside any licence name (``restriction``)  "CC BY 4.0 NC", "All rights reserved. CC BY"
               a licence name plus words not accounted for (``unaccounted``) "CC BY 4.0 for members"

The policy quarantines all but ``ok``. A site that knows what one of its strings means maps the
whole string to an SPDX id in ``[licenses.aliases]``; the reading itself is never widened by guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from license_expression import ExpressionError

from soundtrail.licenses.reading import Reading, read
from soundtrail.licenses.spdx import (
    LICENSE_NAMES,
    cc_elements,
    license_name,
    licensing,
    requires_attribution,
    spdx_id,
)

__all__ = [
    "LICENSE_NAMES", "LicenseConfigError", "LicensePolicy", "LicenseResult", "PolicyDecision", "combine_licenses",
    "license_name", "normalize_license", "requires_attribution", "spdx_id", "validate_aliases",
]

Status = Literal["ok", "missing", "unknown", "ambiguous", "unclear"]
Kind = Literal["empty", "notice", "unaccounted", "unlisted", "several", "expression", "vague", "restriction",
               "conflict", "length"]
# Licence statements are a sentence or two (Creative Commons' own HTML notice is about 250 characters); a
# longer string (a pasted legal code, a hostile 1 MB tag) is not read word by word, which keeps its cost bounded.
MAX_LICENSE_CHARS = 2_000
_MAX_QUOTE = 80
_MAX_WORDS_QUOTED = 3


class LicenseConfigError(ValueError):
    """A policy list or alias names something that is not an SPDX licence id; the message names the entry."""


@dataclass(frozen=True)
class LicenseResult:
    """What one licence string (or a manifest value plus file tags) says.

    ``spdx_id`` is set only when ``status`` is ``ok``; ``reason`` explains every other status in a
    sentence fit for a quarantine record, and ``kind`` names the reason (see the module docstring);
    ``source`` says where the licence was read ("manifest", "file tag"), when :func:`combine_licenses`
    knows it.
    """

    spdx_id: str | None
    status: Status
    reason: str | None = None
    source: str | None = None
    kind: Kind | None = None


@dataclass(frozen=True)
class PolicyDecision:
    accepted: bool
    reason: str | None = None


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
# Normalisation


def _fold(text: str) -> str:
    return " ".join(text.split()).lower()


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= _MAX_QUOTE else text[: _MAX_QUOTE - 3] + "...")


def _quote_words(words: list[str], singular: str, plural: str) -> str:
    """"'NC' is a restriction", "'NC', 'SA' are restrictions": the words quoted, then the matching predicate."""
    unique = list(dict.fromkeys(words))
    shown = ", ".join(_quote(word) for word in unique[:_MAX_WORDS_QUOTED])
    more = f" and {len(unique) - _MAX_WORDS_QUOTED} more" if len(unique) > _MAX_WORDS_QUOTED else ""
    return f"{shown}{more} {singular if len(unique) == 1 else plural}"


def _expression(text: str) -> LicenseResult | None:
    """An SPDX expression of several licences ("MIT OR Apache-2.0"): valid, but not one licence."""
    if not re.search(r"\s(?:AND|OR|WITH)\s", text, re.IGNORECASE):
        return None
    try:
        parsed = licensing().parse(text, validate=True, strict=True)
    except ExpressionError:
        return None
    return LicenseResult(None, "ambiguous", f"licence expression {_quote(parsed.render())} combines several "
                         "licences; name the one that applies", kind="expression")


def normalize_license(text: str | None, aliases: Mapping[str, str] | None = None) -> LicenseResult:
    """Read one licence string; see the module docstring for the forms understood and the statuses."""
    if text is None or not text.strip():
        return LicenseResult(None, "missing", "no licence given", kind="empty")
    site = validate_aliases(aliases).get(_fold(text))
    if site:
        return LicenseResult(site, "ok")
    if len(text) > MAX_LICENSE_CHARS:
        return LicenseResult(None, "unknown", f"unknown licence {_quote(text)}: too long to read "
                             f"({len(text):,} characters)", kind="length")
    exact = spdx_id(text)
    if exact:
        return LicenseResult(exact, "ok")
    return _expression(text) or _verdict(text, read(text))


def _verdict(text: str, reading: Reading) -> LicenseResult:
    """The outcome of one reading, the most serious problem first."""
    quoted, found = _quote(text), reading.found
    if reading.restrictions:
        return LicenseResult(None, "unclear", f"unclear licence {quoted}: "
                             + _quote_words(reading.restrictions, "is a restriction", "are restrictions")
                             + " outside any licence name", kind="restriction")
    if len(found) > 1:
        return LicenseResult(None, "ambiguous", f"licence string {quoted} names several licences: "
                             + ", ".join(found), kind="several")
    if found and reading.unlisted:
        return LicenseResult(None, "ambiguous", f"licence string {quoted} names {found[0]}, and {reading.unlisted[0]}",
                             kind="several")
    # A vague mention that agrees with the licence found ("Creative Commons licence: CC BY 4.0") is harmless.
    found_elements = {cc_elements(spdx) for spdx in found}
    vague = [(q, e) for q, e in reading.vague if not found or (e and e not in found_elements)]
    if vague:
        mention, elements = vague[0]
        if found:
            reason = f"licence string {quoted} names {found[0]} and also {mention!r}"
        elif mention == "public domain":
            reason = "ambiguous licence: 'public domain' names no licence (CC0-1.0 or CC-PDM-1.0?)"
        else:
            reason = f"ambiguous licence: {mention!r} {'names no version' if elements else 'names no licence'}"
        return LicenseResult(None, "ambiguous", reason, kind="vague")
    left_over = _left_over(reading)
    if found and left_over:
        return LicenseResult(None, "unclear", f"unclear licence {quoted}: it names {found[0]}, but {left_over}",
                             kind="unaccounted")
    if found:
        return LicenseResult(found[0], "ok")
    if reading.unlisted:
        return LicenseResult(None, "unknown", f"unknown licence: {reading.unlisted[0]}", kind="unlisted")
    if reading.urls == [text.strip()]:
        return LicenseResult(None, "unknown", f"unknown licence {quoted}: not a creativecommons.org licence URL",
                             kind="unaccounted")
    if reading.urls:
        return LicenseResult(None, "unknown", f"unknown licence {quoted}: {left_over}", kind="unaccounted")
    if reading.unaccounted:
        return LicenseResult(None, "unknown", f"unknown licence {quoted}", kind="unaccounted")
    return LicenseResult(None, "unknown", f"no licence named in {quoted}", kind="notice")


def _left_over(reading: Reading) -> str:
    """What the reading could not account for, as the end of a sentence ("" when nothing)."""
    if reading.urls:
        return _quote_words(reading.urls, "is not a creativecommons.org licence URL",
                            "are not creativecommons.org licence URLs")
    if reading.unaccounted:
        return _quote_words(reading.unaccounted, "is not part of a licence name or a copyright notice",
                            "are not part of a licence name or a copyright notice")
    return ""


def combine_licenses(manifest_value: str | None, tag_values: Iterable[str],
                     aliases: Mapping[str, str] | None = None) -> LicenseResult:
    """The licence of one file from its manifest row and its own tags.

    The manifest is the operator's statement and comes first: when it is present but not ``ok``
    that is the answer, never a guess from tags. Tags fill in when the manifest is silent. Every
    reading counts: any two licences that differ make the file ambiguous (a file tagged
    CC-BY-NC-4.0 is not trained on because a manifest says CC-BY-4.0), and a tag that is not ``ok``
    is the file's answer too (a COPYRIGHT "All rights reserved", a LICENSE "CC BY 4.0 NC") even when
    another reading names a licence. Only tags that state nothing stay out: empty ones, and copyright
    notices that name no licence and whose every word is accounted for ("(c) 2024 Jane Doe").
    A restriction is reported first, then a disagreement, then the first other problem.
    """
    stated = normalize_license(manifest_value, aliases)
    if stated.status not in ("ok", "missing"):
        return _from(stated, "manifest")
    readings = [("manifest", stated)] if stated.status == "ok" else []
    readings += [("file tag", normalize_license(value, aliases)) for value in tag_values]
    speaking = [(source, result) for source, result in readings
                if result.status != "missing" and result.kind != "notice"]

    for source, result in speaking:
        if result.kind == "restriction":
            return _from(result, source)
    ok = [(source, result) for source, result in speaking if result.status == "ok"]
    for source, result in ok[1:]:
        if result.spdx_id != ok[0][1].spdx_id:
            return LicenseResult(None, "ambiguous", f"licence strings disagree: {ok[0][0]} {ok[0][1].spdx_id} "
                                 f"vs {source} {result.spdx_id}", kind="conflict")
    for status in ("unclear", "ambiguous", "unknown"):
        for source, result in speaking:
            if result.status == status:
                return _from(result, source)
    if ok:
        source, result = ok[0]
        return LicenseResult(result.spdx_id, "ok", None, source)
    return LicenseResult(None, "missing", "no licence in the manifest or the file's tags", kind="empty")


def _from(result: LicenseResult, source: str) -> LicenseResult:
    return LicenseResult(None, result.status, f"{result.reason} ({source})", source, result.kind)


# ---------------------------------------------------------------------------------------------
# Policy


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
