"""Licence strings to SPDX ids, ambiguity, restrictions and conflicts, and the allow/deny policy."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soundtrail.licenses import (
    LICENSE_NAMES,
    MAX_LICENSE_CHARS,
    LicenseConfigError,
    LicensePolicy,
    LicenseResult,
    combine_licenses,
    license_name,
    normalize_license,
    requires_attribution,
    spdx_id,
)

SITE_ALIASES = {"GPL": "GPL-2.0-or-later", "Acme Catalogue Terms": "LicenseRef-Acme-Catalogue"}

# Every string with its outcome: an SPDX id (status ok), or "status:kind". Grouped by why.
TABLE: list[tuple[str, str]] = [
    # -- issue 23: a restriction next to a licence name; each of these read as CC-BY-4.0 before
    ("CC BY 4.0 NC", "unclear:restriction"),
    ("CC-BY-4.0-NC", "unclear:restriction"),
    ("CC-BY-4.0-NC-SA", "unclear:restriction"),
    ("CC BY 4.0 NonCommercial", "unclear:restriction"),
    ("CC BY 4.0 (NonCommercial)", "unclear:restriction"),
    ("NonCommercial CC BY 4.0", "unclear:restriction"),
    ("Attribution 4.0 (NonCommercial)", "unclear:restriction"),
    ("CC BY 4.0 ND", "unclear:restriction"),
    ("CC BY 4.0 with NC clause", "unclear:restriction"),
    ("CC BY 4.0, non-commercial use only", "unclear:restriction"),
    ("CC-BY-4.0 (no commercial use)", "unclear:restriction"),
    ("CC-BY-4.0 except commercial use", "unclear:restriction"),
    ("https://creativecommons.org/licenses/by/4.0/ NC", "unclear:restriction"),
    ("https://creativecommons.org/licenses/by/4.0/ (non commercial)", "unclear:restriction"),
    ("http://creativecommons.org/licenses/by/4.0/ NoDerivatives", "unclear:restriction"),
    ("(c) 2024 X. All rights reserved. CC BY 4.0", "unclear:restriction"),
    ("Proprietary; CC BY 4.0 preview", "unclear:restriction"),
    # -- issue 23: URLs that only look like a creativecommons.org licence URL
    ("https://creativecommons.org/licenses/by/4.0/../by-nc/4.0/", "unknown:unaccounted"),
    ("https://evilcreativecommons.org/licenses/by/4.0/", "unknown:unaccounted"),
    ("evilcreativecommons.org/licenses/by-sa/4.0/", "unknown:unaccounted"),
    ("https://example.com/creativecommons.org/licenses/by/4.0/", "unknown:unaccounted"),
    ("example.com/creativecommons.org/licenses/by/4.0/", "unknown:unaccounted"),
    ("https://creativecommons.org.example.com/licenses/by/4.0/", "unknown:unaccounted"),
    ("https://user@creativecommons.org/licenses/by/4.0/", "unknown:unaccounted"),
    ("https://creativecommons.org/licenses/by/4.0/NC", "unknown:unlisted"),  # read as a port: CC-BY-4.0-NC
    ("https://creativecommons.org/licenses/by/4.0/legalcode/NC", "unknown:unaccounted"),
    ("https://creativecommons.org/licenses/by/4.0/?nc=1", "unknown:unaccounted"),
    ("CC BY 4.0 https://example.com/terms", "unclear:unaccounted"),
    # -- more restrictions, with and without a licence name
    ("CC BY 4.0 - NoDerivs", "unclear:restriction"),
    ("CC BY-SA 4.0 (no derivatives)", "unclear:restriction"),
    ("CC BY 4.0 ShareAlike", "unclear:restriction"),
    ("CC BY 4.0; not for commercial use", "unclear:restriction"),
    ("CC BY 4.0 for personal use only", "unclear:restriction"),
    ("CC BY 4.0, no AI training", "unclear:restriction"),
    ("CC BY 4.0 (text and data mining reserved)", "unclear:restriction"),
    ("CC BY 4.0 demo version", "unclear:restriction"),
    ("CC0 1.0 - promotional use only", "unclear:restriction"),
    ("Public Domain Mark 1.0 (preview)", "unclear:restriction"),
    ("Licensed under MIT, except commercial use", "unclear:restriction"),
    ("CC BY 4.0 verify at http://example.com/noncommercial-only", "unclear:restriction"),
    ("ＣＣ ＢＹ ４.０ ＮＣ", "unclear:restriction"),  # full-width letters read as the letters they show
    ("All rights reserved", "unclear:restriction"),
    ("Proprietary", "unclear:restriction"),
    ("(c) 2024 Jane Doe, all rights reserved", "unclear:restriction"),
    ("© 2021 Label Records Ltd. All rights reserved.", "unclear:restriction"),
    ("2024 Jane Doe Preview", "unclear:restriction"),  # a restriction word is never part of a holder's name
    # -- SPDX ids in any case, deprecated spellings, site refs
    ("cc-by-4.0", "CC-BY-4.0"),
    ("  CC0-1.0 ", "CC0-1.0"),
    ("cc-by-nc-sa-3.0-igo", "CC-BY-NC-SA-3.0-IGO"),
    ("GPL-2.0+", "GPL-2.0-or-later"),
    ("gpl-2.0", "GPL-2.0-only"),
    ("LicenseRef-Acme-Catalogue", "LicenseRef-Acme-Catalogue"),
    ("MIT", "MIT"),
    # -- Creative Commons names: elements inside the name are the licence, not a restriction on it
    ("CC BY 4.0", "CC-BY-4.0"),
    ("CC-BY 4.0", "CC-BY-4.0"),
    ("CC BY-SA 4.0", "CC-BY-SA-4.0"),
    ("CC BY-NC 4.0", "CC-BY-NC-4.0"),
    ("cc by nc nd 4", "CC-BY-NC-ND-4.0"),
    ("CC BY-SA-NC 3.0", "CC-BY-NC-SA-3.0"),
    ("CC BY version 4.0", "CC-BY-4.0"),
    ("Creative Commons BY-SA v4.0", "CC-BY-SA-4.0"),
    ("CC BY 4.0 International Public License", "CC-BY-4.0"),
    ("CC BY-SA 2.0 UK", "CC-BY-SA-2.0-UK"),
    ("CC BY-SA 2.0 England and Wales", "CC-BY-SA-2.0-UK"),
    ("CC BY 3.0 Germany", "CC-BY-3.0-DE"),
    ("CC BY-NC-SA 3.0 DE", "CC-BY-NC-SA-3.0-DE"),
    ("Creative Commons Attribution 3.0 United States", "CC-BY-3.0-US"),
    ("Creative Commons Attribution 4.0", "CC-BY-4.0"),
    ("Creative Commons Attribution-ShareAlike 4.0 International", "CC-BY-SA-4.0"),
    ("Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 International Public License", "CC-BY-NC-ND-4.0"),
    ("Creative Commons Attribution Non-Commercial Share Alike 3.0 Unported", "CC-BY-NC-SA-3.0"),
    ("Attribution-NoDerivs 3.0 Unported", "CC-BY-ND-3.0"),
    ("Attribution-NonCommercial-ShareAlike 4.0 International", "CC-BY-NC-SA-4.0"),  # archive.org's spelling
    ("Attribution 4.0 International (CC BY 4.0)", "CC-BY-4.0"),  # one licence named twice
    ("ＣＣ ＢＹ ４.０", "CC-BY-4.0"),
    # -- public domain
    ("CC0", "CC0-1.0"),
    ("cc0 1.0 universal", "CC0-1.0"),
    ("Creative Commons Zero v1.0 Universal", "CC0-1.0"),
    ("Public Domain Dedication CC0 1.0", "CC0-1.0"),
    ("Public Domain Dedication (CC0 1.0)", "CC0-1.0"),
    ("Public Domain Mark 1.0", "CC-PDM-1.0"),
    ("Public Domain Dedication and Certification", "CC-PDDC"),
    # -- creativecommons.org licence URLs (Vorbis LICENSE, ID3 WCOP, MP4 freeform LICENSE)
    ("https://creativecommons.org/licenses/by/4.0/", "CC-BY-4.0"),
    ("http://creativecommons.org/licenses/by-sa/4.0", "CC-BY-SA-4.0"),
    ("www.creativecommons.org/licenses/by/4.0", "CC-BY-4.0"),
    ("creativecommons.org/licenses/by-sa/3.0/igo/deed.en", "CC-BY-SA-3.0-IGO"),
    ("https://creativecommons.org/licenses/by-nc/4.0/deed.de", "CC-BY-NC-4.0"),
    ("https://creativecommons.org/licenses/by-nc-sa/4.0/deed.zh-hans", "CC-BY-NC-SA-4.0"),
    ("https://creativecommons.org/licenses/by/4.0/legalcode", "CC-BY-4.0"),
    ("https://creativecommons.org/licenses/by-nd/4.0/legalcode.fr", "CC-BY-ND-4.0"),
    ("HTTPS://www.CreativeCommons.org/licenses/BY/3.0/de/", "CC-BY-3.0-DE"),
    ("https://creativecommons.org/licenses/by-nc-sa/2.0/fr/", "CC-BY-NC-SA-2.0-FR"),
    ("https://creativecommons.org/licenses/by/4.0/?ref=chooser-v1", "CC-BY-4.0"),  # CC's licence chooser
    ("<https://creativecommons.org/licenses/by/4.0/>", "CC-BY-4.0"),
    ("(https://creativecommons.org/licenses/by-sa/4.0/)", "CC-BY-SA-4.0"),
    ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0"),
    ("https://creativecommons.org/publicdomain/mark/1.0/", "CC-PDM-1.0"),
    # -- statements and copyright notices with a licence (ID3 TCOP, Vorbis COPYRIGHT, MP4 cprt)
    ("2024 Jane Doe, licensed under CC BY-SA 4.0", "CC-BY-SA-4.0"),
    ("2019 Jane Doe. Licensed under CC BY-SA 4.0", "CC-BY-SA-4.0"),
    ("2025 Mara Okafor, licensed under CC0 1.0", "CC0-1.0"),  # the demo corpus's TCOP
    ("© 2024 Jane Doe under CC BY 4.0", "CC-BY-4.0"),
    ("(c) 2024 Jane Doe. Some rights reserved: https://creativecommons.org/licenses/by-nc-nd/4.0/", "CC-BY-NC-ND-4.0"),
    ("© 2023 Label Records - Creative Commons licence: CC BY 4.0", "CC-BY-4.0"),
    ("Copyright (c) 2020-2024 The Quiet Engines. Licensed under CC BY 4.0", "CC-BY-4.0"),
    ("Copyright Jane Doe 2024, CC BY 4.0", "CC-BY-4.0"),
    ("℗ 2019 Northlight Sound Library, CC BY 4.0", "CC-BY-4.0"),
    ("(P) 2019 Label / (C) 2019 Artist - CC BY-SA 4.0", "CC-BY-SA-4.0"),
    ("2024 Jean-Luc O'Brien & Zoë Müller, CC BY 4.0", "CC-BY-4.0"),
    ("(c) 2024 J. S. Bach Society. CC BY-SA 3.0", "CC-BY-SA-3.0"),
    ("Released 2022 under the Creative Commons Attribution 3.0 licence", "CC-BY-3.0"),
    ("This work is licensed under a Creative Commons Attribution 4.0 International License.", "CC-BY-4.0"),
    ("This recording is released under CC0 1.0 Universal", "CC0-1.0"),
    ("License: CC BY 4.0", "CC-BY-4.0"),
    ("2021 Someone; licensed under MIT.", "MIT"),
    ("SPDX-License-Identifier: Apache-2.0", "Apache-2.0"),
    # the form Creative Commons recommended for ID3 TCOP: a verification page is a pointer, not a licence
    ("2004 John Doe Licensed to the public under http://creativecommons.org/licenses/by/2.0/ verify at "
     "http://example.com/page.html", "CC-BY-2.0"),
    ("Copyright 2008 Kevin MacLeod. Licensed under Creative Commons: By Attribution 3.0 License "
     "http://creativecommons.org/licenses/by/3.0/", "CC-BY-3.0"),
    # -- copyright notices that name no licence: they state nothing (and stay silent beside a licence tag)
    ("2024 Jane Doe", "unknown:notice"),
    ("(c) Jane", "unknown:notice"),
    ("℗ 2019 Sony Music Entertainment", "unknown:notice"),
    ("Copyright 2025 Tessellate Audio Collective", "unknown:notice"),
    ("© 2020, 2021 Ilse Varga", "unknown:notice"),
    ("2024 Intel Records", "unknown:notice"),  # an SPDX id that is an ordinary word is a licence only after a cue
    ("Some rights reserved", "unknown:notice"),
    # -- words not accounted for: nothing is read into them
    ("my own terms", "unknown:unaccounted"),
    ("Intel Records 2024", "unknown:unaccounted"),  # no marker or year before the name
    ("Jamendo", "unknown:unaccounted"),
    ("2024 jane doe", "unknown:unaccounted"),  # a holder's name is capitalised
    ("https://example.com/licence.html", "unknown:unaccounted"),
    ("СС BY 4.0", "unknown:unaccounted"),  # Cyrillic СС looks like CC; NFKC does not make it CC
    ("CC BY 4.0 for members", "unclear:unaccounted"),
    ("CC BY 4.0 or later", "unclear:unaccounted"),
    ("CC BY 4.0 + extra terms", "unclear:unaccounted"),
    ("CC BY 4.0 Deed", "unclear:unaccounted"),
    ("Licensed by Jane Doe under CC BY 4.0", "unclear:unaccounted"),
    ("Attribution required: CC BY 4.0", "unclear:unaccounted"),
    ("2024 jane doe, CC BY 4.0", "unclear:unaccounted"),
    ("Kevin MacLeod (incompetech.com) Licensed under Creative Commons: By Attribution 3.0 License "
     "http://creativecommons.org/licenses/by/3.0/", "unclear:unaccounted"),  # no year: a site alias reads it
    # -- names without an SPDX id
    ("CC BY 5.0", "unknown:unlisted"),
    ("CC BY-ND-SA 4.0", "unknown:unlisted"),
    ("https://creativecommons.org/licenses/by/3.0/es/", "unknown:unlisted"),
    ("Attribution-Noncommercial-No Derivative Works 3.0 United States", "unknown:unlisted"),
    # -- ambiguous
    ("CC BY", "ambiguous:vague"),
    ("cc-by-nc-sa", "ambiguous:vague"),
    ("Creative Commons", "ambiguous:vague"),
    ("Creative Commons License", "ambiguous:vague"),
    ("public domain", "ambiguous:vague"),
    ("CC BY (or CC BY-SA 4.0)", "ambiguous:vague"),
    ("CC BY-NC (CC BY 4.0)", "ambiguous:vague"),
    ("CC BY 4.0 or CC BY-SA 4.0", "ambiguous:several"),
    ("CC BY 4.0, see https://creativecommons.org/licenses/by-nc/4.0/", "ambiguous:several"),
    ("CC BY 4.0 https://creativecommons.org/licenses/by-nc/4.0/", "ambiguous:several"),
    ("CC BY 4.0 / GPL-3.0-or-later", "ambiguous:several"),
    ("CC BY 4.0 or CC BY 5.0", "ambiguous:several"),
    ("MIT OR Apache-2.0", "ambiguous:expression"),
    ("CC-BY-4.0 AND MIT", "ambiguous:expression"),
    # -- nothing, or too much to be a licence statement
    ("", "missing:empty"),
    ("   ", "missing:empty"),
    ("CC BY 4.0 " * 300, "unknown:length"),
]
OK_STRINGS = [text for text, expected in TABLE if ":" not in expected]


def test_the_table_is_large_and_has_no_repeats() -> None:
    assert len(TABLE) >= 100 and len({text for text, _ in TABLE}) == len(TABLE)


@pytest.mark.parametrize(("text", "expected"), TABLE)
def test_every_word_is_accounted_for(text: str, expected: str) -> None:
    result = normalize_license(text)
    if ":" not in expected:
        assert result == LicenseResult(expected, "ok"), result
        return
    status, kind = expected.split(":")
    assert (result.spdx_id, result.status, result.kind) == (None, status, kind), result
    assert result.reason


@pytest.mark.parametrize(("text", "reason"), [
    ("CC BY 4.0 NC", "unclear licence 'CC BY 4.0 NC': 'NC' is a restriction outside any licence name"),
    ("CC-BY-4.0-NC-SA", "unclear licence 'CC-BY-4.0-NC-SA': 'NC', 'SA' are restrictions outside any licence name"),
    ("(c) 2024 X. All rights reserved. CC BY 4.0", "'All rights reserved' is a restriction outside any licence name"),
    ("CC BY 4.0 for members", "unclear licence 'CC BY 4.0 for members': it names CC-BY-4.0, but 'for', 'members' "
                              "are not part of a licence name or a copyright notice"),
    ("https://creativecommons.org/licenses/by/4.0/../by-nc/4.0/",
     "unknown licence 'https://creativecommons.org/licenses/by/4.0/../by-nc/4.0/': not a creativecommons.org "
     "licence URL"),
    ("CC BY 4.0 https://example.com/terms", "it names CC-BY-4.0, but 'https://example.com/terms' is not a "
                                            "creativecommons.org licence URL"),
    ("2024 Jane Doe", "no licence named in '2024 Jane Doe'"),
    ("CC BY 4.0 " * 300, "too long to read (3,000 characters)"),
])
def test_unclear_strings_are_quoted_with_what_was_left_over(text: str, reason: str) -> None:
    assert reason in normalize_license(text).reason


# A restriction as people write one; each is inserted, whole, at every kind of place in an accepted string.
RESTRICTIONS = ["NC", "nc", "NonCommercial", "non-commercial", "Non Commercial", "ND", "NoDerivatives", "NoDerivs",
                "no derivatives", "no derivative works", "SA", "ShareAlike", "no commercial use",
                "except commercial use", "not for commercial use", "all rights reserved", "All Rights Reserved",
                "proprietary", "Proprietary", "preview", "PREVIEW", "demo", "promotional use only",
                "for personal use only", "evaluation copy", "no AI training", "(NC)", "- NC", "NC-", "with NC clause",
                "ＮＣ"]


def _cc_parts(spdx: str) -> tuple[frozenset[str], str] | None:
    """A Creative Commons id's elements, and the rest of it (version and port)."""
    match = re.fullmatch(r"CC-((?:BY|NC|ND|SA)(?:-(?:NC|ND|SA))*)-(\d\.\d(?:-[A-Z]+)?)", spdx)
    return (frozenset(match[1].split("-")), match[2]) if match else None


def _boundaries(text: str) -> list[int]:
    """Every place a word can go: the ends, and either side of each non-alphanumeric character."""
    inside_words = {i for i in range(1, len(text)) if text[i - 1].isalnum() and text[i].isalnum()}
    return sorted(set(range(len(text) + 1)) - inside_words)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(OK_STRINGS), st.sampled_from(RESTRICTIONS), st.data())
def test_a_restriction_added_anywhere_never_makes_a_licence_more_permissive(
        text: str, restriction: str, data: st.DataObject) -> None:
    original = normalize_license(text).spdx_id
    at = data.draw(st.sampled_from(_boundaries(text)))
    result = normalize_license(f"{text[:at]} {restriction} {text[at:]}")
    if result.status != "ok" or result.spdx_id == original:
        return
    # still a licence: only a Creative Commons licence that gained an element (NC, ND or SA) may come out
    before, after = _cc_parts(original), _cc_parts(result.spdx_id)
    assert before and after and before[1] == after[1] and before[0] < after[0], (text, restriction, at, result)


def test_every_restriction_word_is_caught_in_every_accepted_string_at_its_end() -> None:
    for text in OK_STRINGS:
        for restriction in RESTRICTIONS:
            result = normalize_license(f"{text} {restriction}")
            assert result.status != "ok", (text, restriction, result)


def test_site_aliases_apply_to_the_whole_string_in_any_case() -> None:
    assert normalize_license("gpl", SITE_ALIASES).spdx_id == "GPL-2.0-or-later"
    assert normalize_license(" ACME   catalogue terms ", SITE_ALIASES).spdx_id == "LicenseRef-Acme-Catalogue"
    # without the alias the SPDX list's own reading applies (an unversioned GPL allows any version)
    assert normalize_license("GPL").spdx_id == "GPL-1.0-or-later"
    assert normalize_license("acme catalogue terms").status == "unknown"
    # an alias wins over the SPDX reading of the same string: the site's reading is deliberate
    assert normalize_license("MIT", {"mit": "CC0-1.0"}).spdx_id == "CC0-1.0"


@pytest.mark.parametrize("target", ["GPL-2", "CC BY 4.0", "Classpath-exception-2.0", ""])
def test_alias_to_a_non_id_is_a_config_error_naming_it(target: str) -> None:
    with pytest.raises(LicenseConfigError, match="licence alias 'ours' maps to"):
        normalize_license("ours", {"ours": target})


@pytest.mark.parametrize(("text", "reason"), [
    ("CC BY", "ambiguous licence: 'CC BY' names no version"),
    ("cc-by-nc-sa", "ambiguous licence: 'CC BY-NC-SA' names no version"),
    ("Creative Commons", "ambiguous licence: 'Creative Commons' names no licence"),
    ("Creative Commons License", "ambiguous licence: 'Creative Commons' names no licence"),
    ("public domain", "ambiguous licence: 'public domain' names no licence (CC0-1.0 or CC-PDM-1.0?)"),
    ("CC BY 4.0 or CC BY-SA 4.0", "licence string 'CC BY 4.0 or CC BY-SA 4.0' names several licences: "
                                  "CC-BY-4.0, CC-BY-SA-4.0"),
    ("CC BY 4.0, see https://creativecommons.org/licenses/by-nc/4.0/", "names several licences: CC-BY-NC-4.0, "
                                                                       "CC-BY-4.0"),
    ("CC BY (or CC BY-SA 4.0)", "names CC-BY-SA-4.0 and also 'CC BY'"),
    ("CC BY 4.0 or CC BY 5.0", "names CC-BY-4.0, and 'CC BY 5.0' names CC-BY-5.0, which is not in the SPDX"),
    ("MIT OR Apache-2.0", "licence expression 'MIT OR Apache-2.0' combines several licences"),
    ("CC-BY-4.0 AND MIT", "combines several licences"),
])
def test_ambiguous_strings_say_why(text: str, reason: str) -> None:
    result = normalize_license(text)
    assert result.status == "ambiguous" and result.spdx_id is None
    assert reason in result.reason


@pytest.mark.parametrize(("text", "status", "reason"), [
    ("", "missing", "no licence given"),
    ("   ", "missing", "no licence given"),
    (None, "missing", "no licence given"),
    ("my own terms", "unknown", "unknown licence 'my own terms'"),
    # ordinary words that happen to be SPDX ids count only after a cue such as "licensed under"
    ("Intel Records 2024", "unknown", "unknown licence"),
    ("CC BY 5.0", "unknown", "'CC BY 5.0' names CC-BY-5.0, which is not in the SPDX licence list"),
    ("https://creativecommons.org/licenses/by/3.0/es/", "unknown", "names CC-BY-3.0-ES, which is not in the SPDX"),
])
def test_missing_and_unknown(text: str | None, status: str, reason: str) -> None:
    result = normalize_license(text)
    assert (result.spdx_id, result.status) == (None, status)
    assert reason in result.reason


_WORDS = st.sampled_from(["CC", "BY", "sa", "4.0", "3", "Creative", "Commons", "OR", "and", "WITH", "(", ")",
                          "MIT", "licensed", "under", "public", "domain", "https://creativecommons.org/licenses/",
                          "by-nc/", "2.0/uk/", "zero", "0", "GPL-2.0+", "LicenseRef-x", "\u00a9", "\x00", "deed.de",
                          "2024", "Jane", "verify at", "http://x.org/", "(c)", "NC", "reserved", "-", "."])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_WORDS, st.text(max_size=8)), max_size=12).map(" ".join))
def test_any_string_gets_a_status_and_never_raises(text: str) -> None:
    result = normalize_license(text)
    assert result.status in ("ok", "missing", "unknown", "ambiguous", "unclear")
    assert (result.spdx_id is not None) == (result.status == "ok")
    assert (result.status == "ok") == (result.reason is None) == (result.kind is None)
    if result.status == "ok":
        assert spdx_id(result.spdx_id) == result.spdx_id


def test_long_unknown_strings_are_quoted_briefly() -> None:
    for text in ("x" * MAX_LICENSE_CHARS, "x" * 10_000):
        result = normalize_license(text)
        assert result.status == "unknown" and len(result.reason) < 150


def test_combine_manifest_first_tags_as_fallback() -> None:
    assert combine_licenses("CC-BY-4.0", []) == LicenseResult("CC-BY-4.0", "ok", None, "manifest")
    tagged = combine_licenses(None, ["(c) 2024 Jane Doe", "https://creativecommons.org/licenses/by-sa/4.0/"])
    assert tagged == LicenseResult("CC-BY-SA-4.0", "ok", None, "file tag")
    # agreeing sources, and a tag that names no licence, change nothing
    assert combine_licenses("CC BY 4.0", ["cc-by-4.0", "2024 Jane"]).spdx_id == "CC-BY-4.0"
    # the site's aliases apply to tags too
    assert combine_licenses("", ["GPL"], SITE_ALIASES).spdx_id == "GPL-2.0-or-later"


def test_combine_conflicts_are_ambiguous() -> None:
    result = combine_licenses("CC-BY-4.0", ["CC BY-NC 4.0"])
    assert result.status == "ambiguous"
    assert result.reason == "licence strings disagree: manifest CC-BY-4.0 vs file tag CC-BY-NC-4.0"
    between_tags = combine_licenses(None, ["CC0", "https://creativecommons.org/licenses/by/4.0/"])
    assert between_tags.reason == "licence strings disagree: file tag CC0-1.0 vs file tag CC-BY-4.0"


def test_combine_never_replaces_an_unreadable_manifest_value_with_a_tag() -> None:
    result = combine_licenses("CC BY", ["CC-BY-4.0"])
    assert result.status == "ambiguous" and result.reason.endswith("names no version (manifest)")
    assert combine_licenses("our terms", ["CC0"]).status == "unknown"


def test_combine_reports_the_best_problem_when_nothing_is_readable() -> None:
    assert combine_licenses(None, []).status == "missing"
    assert combine_licenses(None, ["(c) Jane", "Creative Commons"]).reason == \
        "ambiguous licence: 'Creative Commons' names no licence (file tag)"
    # a copyright notice that names no licence states nothing
    assert combine_licenses(None, ["(c) Jane"]) == LicenseResult(
        None, "missing", "no licence in the manifest or the file's tags", kind="empty")
    assert combine_licenses(None, ["my own terms", "CC BY"]).reason == \
        "ambiguous licence: 'CC BY' names no version (file tag)"


@pytest.mark.parametrize(("manifest", "tags", "status", "reason"), [
    # a restriction in any tag is the answer, whatever else names a licence (each of these was accepted before)
    ("CC-BY-4.0", ["(c) 2024 Jane Doe. All rights reserved."], "unclear",
     "unclear licence '(c) 2024 Jane Doe. All rights reserved.': 'All rights reserved' is a restriction outside "
     "any licence name (file tag)"),
    (None, ["https://creativecommons.org/licenses/by/4.0/", "2024 Jane Doe, CC BY 4.0 NC"], "unclear",
     "unclear licence '2024 Jane Doe, CC BY 4.0 NC': 'NC' is a restriction outside any licence name (file tag)"),
    ("CC-BY-4.0", ["Jane Doe, not for commercial use"], "unclear", "'not', 'commercial' are restrictions"),
    # ... and before a disagreement
    ("CC-BY-4.0", ["CC BY-NC 4.0", "Proprietary"], "unclear", "'Proprietary' is a restriction"),
    # a tag that mentions a licence vaguely, or names several, may be a different licence
    (None, ["CC BY-NC", "CC BY 4.0"], "ambiguous", "ambiguous licence: 'CC BY-NC' names no version (file tag)"),
    ("CC-BY-4.0", ["CC BY 4.0 or CC BY-NC 4.0"], "ambiguous", "names several licences: CC-BY-4.0, CC-BY-NC-4.0"),
    # a tag the reading cannot account for is not skipped over
    ("CC0-1.0", ["my own terms"], "unknown", "unknown licence 'my own terms' (file tag)"),
    # an unclear manifest value is the answer, as an unknown or ambiguous one is
    ("CC BY 4.0 NC", ["CC-BY-4.0"], "unclear", "'NC' is a restriction outside any licence name (manifest)"),
])
def test_combine_never_lets_a_licence_outweigh_a_tag_it_cannot_read(
        manifest: str | None, tags: list[str], status: str, reason: str) -> None:
    result = combine_licenses(manifest, tags)
    assert (result.spdx_id, result.status) == (None, status) and reason in result.reason, result


POLICY = LicensePolicy(allow=["CC0-1.0", "cc-by-4.0", "CC-BY-SA-4.0"], deny=["CC-BY-NC-4.0", "CC-BY-NC-SA-4.0"])


@pytest.mark.parametrize(("text", "accepted", "reason"), [
    ("CC BY 4.0", True, None),
    ("https://creativecommons.org/publicdomain/zero/1.0/", True, None),
    ("CC BY-NC 4.0", False, "licence CC-BY-NC-4.0 is denied by policy"),
    ("MIT", False, "licence MIT is not in the allow list"),
    ("", False, "no licence given"),
    ("my own terms", False, "unknown licence 'my own terms'"),
    ("CC BY", False, "ambiguous licence: 'CC BY' names no version"),
    ("CC BY 4.0 NC", False, "unclear licence 'CC BY 4.0 NC': 'NC' is a restriction outside any licence name"),
])
def test_policy_decisions(text: str, accepted: bool, reason: str | None) -> None:
    decision = POLICY.decide(normalize_license(text))
    assert (decision.accepted, decision.reason) == (accepted, reason)


def test_policy_lists_are_canonical_and_validated() -> None:
    assert POLICY.allow == ["CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0"]
    with pytest.raises(LicenseConfigError, match="allow list: 'CC-BY-5.0' is not an SPDX licence id"):
        LicensePolicy(allow=["CC0-1.0", "CC-BY-5.0"])
    with pytest.raises(LicenseConfigError, match="deny list: 'CC BY-NC 4.0' is not an SPDX licence id"):
        LicensePolicy(allow=[], deny=["CC BY-NC 4.0"])
    with pytest.raises(LicenseConfigError, match="lists CC-BY-4.0 in both allow and deny"):
        LicensePolicy(allow=["CC-BY-4.0"], deny=["cc-by-4.0"])


def test_an_empty_allow_list_accepts_nothing() -> None:
    assert not LicensePolicy(allow=[]).decide(LicenseResult("CC0-1.0", "ok")).accepted


def test_names_and_attribution_for_reports() -> None:
    assert license_name("CC-BY-SA-4.0") == "Creative Commons Attribution-ShareAlike 4.0 International"
    assert license_name("CC-BY-NC-ND-3.0-DE") == "Creative Commons Attribution-NonCommercial-NoDerivs 3.0 Germany"
    assert license_name("CC-BY-2.5") == "Creative Commons Attribution 2.5 Generic"
    assert license_name("MIT") == "MIT"
    # every CC licence in the SPDX list has a name, and each name reads back to its own id
    cc_ids = {spdx_id(key) for key in LICENSE_NAMES}
    assert {"CC0-1.0", "CC-BY-4.0", "CC-BY-NC-SA-2.0-FR", "CC-PDM-1.0"} <= cc_ids
    for key, name in LICENSE_NAMES.items():
        if key.startswith("CC-BY"):
            assert normalize_license(name).spdx_id == key, name
    assert requires_attribution("CC-BY-SA-4.0") and requires_attribution("CC-BY-NC-4.0")
    assert not requires_attribution("CC0-1.0") and not requires_attribution("MIT")
