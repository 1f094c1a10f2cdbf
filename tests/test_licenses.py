"""Licence strings to SPDX ids, ambiguity and conflicts, and the allow/deny policy."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soundtrail.licenses import (
    LICENSE_NAMES,
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


@pytest.mark.parametrize(("text", "expected"), [
    # SPDX ids in any case, and deprecated spellings
    ("cc-by-4.0", "CC-BY-4.0"),
    ("  CC0-1.0 ", "CC0-1.0"),
    ("cc-by-nc-sa-3.0-igo", "CC-BY-NC-SA-3.0-IGO"),
    ("GPL-2.0+", "GPL-2.0-or-later"),
    ("gpl-2.0", "GPL-2.0-only"),
    ("LicenseRef-Acme-Catalogue", "LicenseRef-Acme-Catalogue"),
    # common names
    ("CC BY 4.0", "CC-BY-4.0"),
    ("CC-BY 4.0", "CC-BY-4.0"),
    ("CC BY-SA 4.0", "CC-BY-SA-4.0"),
    ("cc by nc nd 4", "CC-BY-NC-ND-4.0"),
    ("CC BY-SA-NC 3.0", "CC-BY-NC-SA-3.0"),
    ("CC BY-SA 2.0 UK", "CC-BY-SA-2.0-UK"),
    ("Creative Commons Attribution 4.0", "CC-BY-4.0"),
    ("Creative Commons Attribution-ShareAlike 4.0 International", "CC-BY-SA-4.0"),
    ("Creative Commons Attribution-NonCommercial-NoDerivatives 4.0 International Public License", "CC-BY-NC-ND-4.0"),
    ("Creative Commons Attribution Non-Commercial Share Alike 3.0 Unported", "CC-BY-NC-SA-3.0"),
    ("Attribution-NoDerivs 3.0 Unported", "CC-BY-ND-3.0"),
    ("Public Domain Dedication CC0 1.0", "CC0-1.0"),
    ("CC0", "CC0-1.0"),
    ("cc0 1.0 universal", "CC0-1.0"),
    ("Creative Commons Zero v1.0 Universal", "CC0-1.0"),
    ("Public Domain Mark 1.0", "CC-PDM-1.0"),
    # creativecommons.org URLs
    ("https://creativecommons.org/licenses/by/4.0/", "CC-BY-4.0"),
    ("http://creativecommons.org/licenses/by-sa/4.0", "CC-BY-SA-4.0"),
    ("https://creativecommons.org/licenses/by-nc/4.0/deed.de", "CC-BY-NC-4.0"),
    ("https://creativecommons.org/licenses/by-nc-sa/4.0/deed.zh-hans", "CC-BY-NC-SA-4.0"),
    ("https://creativecommons.org/licenses/by/4.0/legalcode", "CC-BY-4.0"),
    ("https://creativecommons.org/licenses/by-nd/4.0/legalcode.fr", "CC-BY-ND-4.0"),
    ("HTTPS://www.CreativeCommons.org/licenses/BY/3.0/de/", "CC-BY-3.0-DE"),
    ("creativecommons.org/licenses/by-sa/3.0/igo/deed.en", "CC-BY-SA-3.0-IGO"),
    ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0"),
    ("https://creativecommons.org/publicdomain/mark/1.0/", "CC-PDM-1.0"),
    # copyright notices (ID3 TCOP, Vorbis COPYRIGHT) that carry a licence
    ("2024 Jane Doe, licensed under CC BY-SA 4.0", "CC-BY-SA-4.0"),
    ("(c) 2024 Jane Doe. Some rights reserved: https://creativecommons.org/licenses/by-nc-nd/4.0/", "CC-BY-NC-ND-4.0"),
    ("© 2023 Label Records - Creative Commons licence: CC BY 4.0", "CC-BY-4.0"),
    ("Released 2022 under the Creative Commons Attribution 3.0 licence", "CC-BY-3.0"),
    ("2021 Someone; licensed under MIT.", "MIT"),
    ("SPDX-License-Identifier: Apache-2.0", "Apache-2.0"),
])
def test_forms_normalise_to_spdx(text: str, expected: str) -> None:
    result = normalize_license(text)
    assert result == LicenseResult(expected, "ok"), result


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
    ("(c) 2024 Jane Doe, all rights reserved", "unknown", "unknown licence '(c) 2024 Jane Doe, all rights reserved'"),
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
                          "by-nc/", "2.0/uk/", "zero", "0", "GPL-2.0+", "LicenseRef-x", "\u00a9", "\x00", "deed.de"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_WORDS, st.text(max_size=8)), max_size=12).map(" ".join))
def test_any_string_gets_a_status_and_never_raises(text: str) -> None:
    result = normalize_license(text)
    assert result.status in ("ok", "missing", "unknown", "ambiguous")
    assert (result.spdx_id is not None) == (result.status == "ok")
    assert result.status == "ok" or result.reason
    if result.status == "ok":
        assert spdx_id(result.spdx_id) == result.spdx_id


def test_long_unknown_strings_are_quoted_briefly() -> None:
    result = normalize_license("x" * 10_000)
    assert result.status == "unknown" and len(result.reason) < 120


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
    assert combine_licenses(None, ["(c) Jane"]).reason == "unknown licence '(c) Jane' (file tag)"


POLICY = LicensePolicy(allow=["CC0-1.0", "cc-by-4.0", "CC-BY-SA-4.0"], deny=["CC-BY-NC-4.0", "CC-BY-NC-SA-4.0"])


@pytest.mark.parametrize(("text", "accepted", "reason"), [
    ("CC BY 4.0", True, None),
    ("https://creativecommons.org/publicdomain/zero/1.0/", True, None),
    ("CC BY-NC 4.0", False, "licence CC-BY-NC-4.0 is denied by policy"),
    ("MIT", False, "licence MIT is not in the allow list"),
    ("", False, "no licence given"),
    ("my own terms", False, "unknown licence 'my own terms'"),
    ("CC BY", False, "ambiguous licence: 'CC BY' names no version"),
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
