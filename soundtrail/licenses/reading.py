"""How a licence string is read: every word is accounted for, or the string is not trusted.

A licence string is free text ("2024 Jane Doe, licensed under CC BY-SA 4.0"), and a restriction can sit
anywhere in it: "CC BY 4.0 NC", "NonCommercial CC BY 4.0", "CC-BY-4.0 (no commercial use)". So the
reader does not look for a licence name and stop; it accounts for every word. A word is accounted
for by one of four readings, and a string with any word left over is never read as a licence.

1. Licence names (each one found is recorded; more than one makes the string ambiguous)
     SPDX ids           "CC-BY-4.0", "Apache-2.0" anywhere; ids that are also ordinary words ("MIT",
                        "Ruby", "Fair") only right after "license", "licence", "licensed" or "under"
     Creative Commons   a marker ("CC", "Creative Commons") or a leading "Attribution", then the
                        elements (BY/Attribution, NC/NonCommercial, ND/NoDerivs/NoDerivatives,
                        SA/ShareAlike, in any order and spelling CC has used), the version, and a
                        jurisdiction port written as its code in capitals ("UK") or its name
                        ("England and Wales"); words such as "licence", "international" may sit
                        between them. Elements are part of the name: "CC BY-NC 4.0" is CC-BY-NC-4.0.
     public domain      CC0 / "CC Zero", "Public Domain Dedication", "Public Domain Mark 1.0", "Public
                        Domain Dedication and Certification"
     CC URLs            the whole URL must be a creativecommons.org licence URL:
                        [http(s)://][www.]creativecommons.org/licenses/<elements>/<version>/[<port>/]
                        [deed.<lang> | legalcode[.<lang>]] (or /publicdomain/zero|mark/1.0/...), optionally
                        with the licence chooser's "?ref=chooser-v1". Anything else shaped like a URL, a
                        path after the licence ("/../by-nc/4.0/"), another host ("evilcreativecommons.org",
                        "example.com/creativecommons.org/..."), is a word left over.
2. Statement words: they say that a licence is being named, never what it permits
     license, licence, licensed, licenced, licensing, under, terms, version, SPDX, identifier,
     international, unported, generic, public, universal (parts of licences' full names), this, work,
     recording, track, song, music, is, the, a, an, of, to, and, or, see, released, published,
     distributed, available, and "Some rights reserved" (Creative Commons' own tagline for its licences)
3. The verification pointer Creative Commons recommends for tags ("2004 John Doe Licensed to the public
   under http://creativecommons.org/licenses/by/2.0/ verify at http://example.com/page.html"): "verify
   at <URL>", any URL; the page it points to is where the claim can be checked, not a second licence.
   The page is not read, but a restriction word inside the URL ("/noncommercial-only") still counts.
4. A copyright notice: who owns a work does not change what a licence grants
     markers            ©, ℗, (c), (p), "Copyright", and years 1800-2099
     the holder         up to eight words right after a marker or a year ("2024 Jane Doe"), each
                        capitalised or one of "and", "&", "of", "the", "de", "van", "von"; the name
                        ends at punctuation (an initial's full stop excepted: "J. S. Bach") and can
                        never contain a restriction word, so "2024 Jane Doe Preview" is not a name.

Restriction words are never accounted for, and the reason names them. They are the words a
restriction is written with when it is not part of a licence name:
     NC, NonCommercial, non-commercial, commercial, ND, NoDerivs, NoDerivatives, derivative(s), SA,
     ShareAlike (CC elements outside a name narrow the licence it names); "all rights reserved",
     reserved, proprietary, confidential, unreleased, embargo(ed) (no licence at all); preview, demo,
     promo(tional), evaluation, trial, personal, private, internal, educational, editorial, research
     (a copy for a purpose); only, except, excluding, exclusive, without, not, no, non, never, limited,
     restricted, restriction(s), prohibited, forbidden, permission (words that limit or negate a
     grant); AI, training, mining, TDM, opt (machine-learning and text-and-data-mining reservations).

The text is read after Unicode NFKC normalisation, so full-width or compatibility forms read as the
letters they show ("ＮＣ" is NC); words are compared without regard to case.

Limits a reviewer should know. A holder's name must be in a cased script: a name in a script without
capitals is left over, and the file is quarantined. A restriction in a language the list above does
not cover is left over too, except when it is written as capitalised words inside a holder's name, the
one place where words off every list are accepted; that is why a name is at most eight words and ends
at punctuation. An SPDX id that is also an ordinary word is a name there ("2024 Ruby Jones"). A site
that meets strings the reading leaves over maps each whole string to its licence in
``[licenses.aliases]``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from soundtrail.licenses.spdx import ELEMENT_ORDER, PORT_NAMES, cc_id, spdx_id

ELEMENT_WORDS = {
    "by": "BY", "attribution": "BY",
    "nc": "NC", "noncommercial": "NC",
    "nd": "ND", "noderivs": "ND",
    "sa": "SA", "sharealike": "SA",
}
# Words allowed between a licence name's parts: "Creative Commons Attribution 4.0 International Public License".
_NAME_FILLER = {"license", "licence", "licensed", "licenced", "international", "unported", "generic", "public", "the",
                "version"}
STATEMENT_WORDS = frozenset({
    "license", "licence", "licensed", "licenced", "licensing", "under", "terms", "version", "spdx", "identifier",
    "international", "unported", "generic", "public", "universal",
    "this", "work", "recording", "track", "song", "music", "is", "the", "a", "an", "of", "to", "and", "or", "see",
    "released", "published", "distributed", "available",
    "some rights reserved",
})
RESTRICTION_WORDS = frozenset({
    "nc", "noncommercial", "commercial", "nd", "noderivs", "derivative", "derivatives", "sa", "sharealike",
    "all rights reserved", "reserved", "proprietary", "confidential", "unreleased", "embargo", "embargoed",
    "preview", "demo", "promo", "promotional", "evaluation", "trial", "personal", "private", "internal",
    "educational", "editorial", "research",
    "only", "except", "excluding", "exclusive", "without", "not", "no", "non", "never", "limited", "restricted",
    "restriction", "restrictions", "prohibited", "forbidden", "permission",
    "ai", "training", "mining", "tdm", "opt",
})
_MARKS = {"©", "℗", "copyright"}
_HOLDER_JOINERS = {"and", "&", "of", "the", "de", "van", "von"}
MAX_HOLDER_WORDS = 8
_YEAR = re.compile(r"(?:18|19|20)[0-9]{2}")
# Ids that are also ordinary words count only right after one of these.
_CUES = {"license", "licence", "licensed", "licenced", "under", "spdx-license-identifier"}
_PORT_CODES = {code.lower(): code for code in PORT_NAMES}
_PORT_NAMES = {name.lower(): code for code, name in PORT_NAMES.items() if " " not in name}

# ---------------------------------------------------------------------------------------------
# URLs and SPDX ids, read from the raw text before it is cut into words

_URL = re.compile(r"(?<![\w@.\-/])(?:[a-z][a-z0-9+.\-]*://|www\.|[\w\-]+(?:\.[\w\-]+)*\.[a-z]{2,}/)\S*",
                  re.IGNORECASE)
_URL_TAIL = re.compile(r"[)\]>\"'.,;:!?]+$")
_CC_URL = re.compile(
    r"(?:https?://)?(?:www\.)?creativecommons\.org/"
    r"(?:(?:licenses|licences)/(?P<elements>[a-z]+(?:-[a-z]+)*)|publicdomain/(?P<tool>[a-z]+))"
    r"/(?P<version>\d\.\d)(?:/(?P<port>[a-z]{2,3}))?"
    r"(?:/(?:deed|legalcode)(?:\.[a-z]{2,3}(?:[-_][a-z0-9]{2,8})?)?)?/?(?:\?ref=chooser-v\d+)?",
    re.IGNORECASE,
)
_VERIFY_AT = re.compile(r"\bverify\s+at\s*$", re.IGNORECASE)
_ID_RUN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+\-]*")
_CUT = " ; "  # what a span read as a whole leaves behind: a break, so words on either side stay apart

# ---------------------------------------------------------------------------------------------
# Words

_TOKEN = re.compile(
    r"(?P<uk>\bengland\s+and\s+wales)|(?P<us>\bunited\s+states)"
    r"|(?P<noncommercial>\bnon[\s_-]*commercial)|(?P<sharealike>\bshare[\s_-]*alike)"
    r"|(?P<noderivs>\bno[\s_-]*deriv(?:ative)?s?(?:[\s_-]*works)?)"
    r"|(?P<some_rights_reserved>\bsome\s+rights\s+reserved)|(?P<all_rights_reserved>\ball\s+rights\s+reserved)"
    r"|(?P<copyright>\(\s*c\s*\)|©)|(?P<phonogram>\(\s*p\s*\)|℗)"
    r"|(?P<number>v?[0-9]+(?:\.[0-9]+)*)|(?P<word>[^\W\d_]+)|(?P<space>\s+)|(?P<other>.)",
    re.IGNORECASE | re.DOTALL,
)
_NORMS = {"uk": "uk", "us": "us", "copyright": "©", "phonogram": "℗"}
_PUNCTUATION = set(".,;:!?()[]{}<>\"'`-‐‑–—/\\|*·•…‘’“”«»_~")
_JOINERS = set("-‐‑'’")  # between two letters they join one word ("Jean-Luc", "O'Brien")
_VERSION = re.compile(r"v?(\d)(?:\.(\d))?")


@dataclass(frozen=True)
class _Token:
    text: str  # as written, for quoting
    norm: str  # lower case; phrases folded ("noncommercial", "all rights reserved"); (c) -> ©
    kind: str  # word, number, phrase or symbol
    after: str  # the punctuation between this token and the one before ("" when only spaces)


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    after = ""
    for match in _TOKEN.finditer(text):
        group, value = match.lastgroup or "other", match[0]
        if group == "space":
            continue
        if group == "other" and value in _PUNCTUATION:
            start, end = match.start(), match.end()
            joined = value in _JOINERS and text[start - 1:start].isalpha() and text[end:end + 1].isalpha()
            after += "" if joined else value
            continue
        if group in ("word", "number"):
            tokens.append(_Token(value, value.lower(), group, after))
        elif group == "other":
            tokens.append(_Token(value, value, "symbol", after))
        else:
            norm = _NORMS.get(group, group.replace("_", " "))
            tokens.append(_Token(" ".join(value.split()), norm, "phrase", after))
        after = ""
    return tokens


def _version(token: str) -> str | None:
    match = _VERSION.fullmatch(token)
    return f"{match[1]}.{match[2] or 0}" if match else None


@dataclass
class Reading:
    """Everything one string says: the licences it names, and what could not be read as part of one."""

    found: list[str] = field(default_factory=list)  # SPDX ids, each once, in order
    vague: list[tuple[str, frozenset[str]]] = field(default_factory=list)  # (quoted text, CC elements named)
    unlisted: list[str] = field(default_factory=list)  # sentences: a name whose id the SPDX list lacks
    restrictions: list[str] = field(default_factory=list)  # restriction words, as written
    urls: list[str] = field(default_factory=list)  # URLs that are not creativecommons.org licence URLs
    unaccounted: list[str] = field(default_factory=list)  # every other word left over, as written

    def add(self, candidate: str, quoted: str) -> None:
        canonical = spdx_id(candidate)
        if canonical is None:
            self.unlisted.append(f"{quoted!r} names {candidate}, which is not in the SPDX licence list")
        elif canonical not in self.found:
            self.found.append(canonical)


def read(text: str) -> Reading:
    """Read ``text``: URLs and SPDX ids first (they are whole spans), then word by word."""
    reading = Reading()
    text = unicodedata.normalize("NFKC", text)
    text = _read_urls(text, reading)
    text = _read_spdx_ids(text, reading)
    _Words(_tokens(text), reading).read()
    return reading


def _read_urls(text: str, reading: Reading) -> str:
    pieces, last = [], 0
    for match in _URL.finditer(text):
        url = _URL_TAIL.sub("", match[0])
        head = text[last:match.start()]
        pointer = _VERIFY_AT.search(head)
        if pointer:
            head = head[:pointer.start()]
        licence = _CC_URL.fullmatch(url)
        if licence:
            _add_cc_url(licence, reading)
        elif pointer:  # its page is not read, but a restriction written into its path still counts
            reading.restrictions += [token.text for token in _tokens(url) if token.norm in RESTRICTION_WORDS]
        else:
            reading.urls.append(url)
        pieces += [head, _CUT]
        last = match.start() + len(url)
    return "".join([*pieces, text[last:]])


def _add_cc_url(match: re.Match[str], reading: Reading) -> None:
    version = match["version"]
    if match["tool"]:
        tool = {"zero": "CC0", "mark": "CC-PDM"}.get(match["tool"].lower(), f"CC-{match['tool'].upper()}")
        reading.add(f"{tool}-{version}", match[0])
    else:
        elements = [ELEMENT_WORDS.get(part, part.upper()) for part in match["elements"].lower().split("-")]
        reading.add(cc_id(elements, version, match["port"]), match[0])


def _read_spdx_ids(text: str, reading: Reading) -> str:
    """SPDX ids inside prose. Many ids are ordinary words ("Intel", "Fair", "Ruby"), so a word counts
    only right after a cue ("licensed under MIT", "License: ISC"); ids with a hyphen and a digit
    ("Apache-2.0", "CC-BY-4.0") are specific enough to count anywhere."""
    pieces, last, previous = [], 0, ""
    for match in _ID_RUN.finditer(text):
        word = match[0].rstrip(".-")
        specific = "-" in word and any(ch.isdigit() for ch in word)
        if spdx_id(word) and (specific or previous in _CUES):
            reading.add(word, word)
            pieces += [text[last:match.start()], _CUT]
            last = match.start() + len(word)
        previous = word.lower()
    return "".join([*pieces, text[last:]])


class _Words:
    """The word-by-word readings, in order: licence names, copyright notices, statement words, the rest."""

    def __init__(self, tokens: list[_Token], reading: Reading) -> None:
        self.tokens, self.reading = tokens, reading
        self.used = [False] * len(tokens)

    def norm(self, i: int) -> str:
        return self.tokens[i].norm if i < len(self.tokens) else ""

    def read(self) -> None:
        self._names()
        self._notices()
        for token, used in zip(self.tokens, self.used, strict=True):
            if used or token.norm in STATEMENT_WORDS:
                continue
            bucket = self.reading.restrictions if token.norm in RESTRICTION_WORDS else self.reading.unaccounted
            bucket.append(token.text)

    def _names(self) -> None:
        i = 0
        while i < len(self.tokens):
            token, following = self.norm(i), self.norm(i + 1)
            marker = 1 if token == "cc" else 2 if (token, following) == ("creative", "commons") else 0
            if marker and self.norm(i + marker) in ("0", "zero"):
                end = i + marker + 1
                end += 1 if _version(self.norm(end)) else 0
                self.reading.add("CC0-1.0", "CC0")
            elif marker:
                end = self._cc(i + marker, marked=True)
            elif (token, following) == ("public", "domain"):
                end = self._public_domain(i + 2)
            elif token == "attribution":
                end = self._cc(i, marked=False)
            else:
                end = i
            if end > i:
                self.used[i:end] = [True] * (end - i)
            i = max(end, i + 1)

    def _cc(self, i: int, *, marked: bool) -> int:
        """Read ``[elements] [version] [port]`` from ``i``; the index after them (``i`` when nothing is read)."""
        start, elements = i, []
        while self.norm(i) in ELEMENT_WORDS or self.norm(i) in _NAME_FILLER:
            if self.norm(i) in ELEMENT_WORDS:
                elements.append(ELEMENT_WORDS[self.norm(i)])
            i += 1
        version = _version(self.norm(i))
        named = "CC " + "-".join(e for e in ELEMENT_ORDER if e in elements) if elements else "Creative Commons"
        if version is None:
            if not marked:  # a bare "attribution" without a version is ordinary prose, not a licence
                return start
            self.reading.vague.append((named, frozenset(elements)))
            return i
        i += 1
        port = self._port(i)
        i += 1 if port else 0
        if not elements:
            self.reading.vague.append((f"Creative Commons {version}", frozenset()))
        else:
            self.reading.add(cc_id(elements, version, port), f"{named} {version}" + (f" {port}" if port else ""))
        return i

    def _port(self, i: int) -> str | None:
        """A jurisdiction port: a code in capitals ("UK", not the word "at") or a name ("Germany")."""
        if i >= len(self.tokens):
            return None
        token = self.tokens[i]
        if token.norm in _PORT_CODES and (token.text.isupper() or token.kind == "phrase"):  # "United States"
            return _PORT_CODES[token.norm]
        return _PORT_NAMES.get(token.norm)

    def _public_domain(self, i: int) -> int:
        following = self.norm(i)
        if following == "dedication" and [self.norm(i + 1), self.norm(i + 2)] == ["and", "certification"]:
            self.reading.add("CC-PDDC", "Public Domain Dedication and Certification")
            return i + 3
        if following == "dedication":
            self.reading.add("CC0-1.0", "Public Domain Dedication")
            return i + 1
        if following == "mark":
            version = _version(self.norm(i + 1))
            self.reading.add(f"CC-PDM-{version or '1.0'}", "Public Domain Mark")
            return i + 2 if version else i + 1
        self.reading.vague.append(("public domain", frozenset()))
        return i

    def _notices(self) -> None:
        """A marker or year, and the holder's name after it."""
        for i, token in enumerate(self.tokens):
            opens = token.norm in _MARKS or (token.kind == "number" and _YEAR.fullmatch(token.norm))
            if self.used[i] or not opens:
                continue
            self.used[i] = True
            j = i + 1
            while j < len(self.tokens) and j - i <= MAX_HOLDER_WORDS and not self.used[j] \
                    and _holder_word(self.tokens[j]) and (j == i + 1 or self._name_goes_on(j)):
                self.used[j] = True
                j += 1

    def _name_goes_on(self, j: int) -> bool:
        previous = self.tokens[j - 1].text
        return not self.tokens[j].after or (self.tokens[j].after == "." and len(previous) == 1 and previous.isupper())


def _holder_word(token: _Token) -> bool:
    if token.norm in _HOLDER_JOINERS:
        return True
    return token.kind == "word" and token.text[0].isupper() and token.norm not in RESTRICTION_WORDS
