"""The SPDX licence list as ``license-expression`` ships it, and the Creative Commons licences in it.

Creative Commons ids are composed, not listed: elements in the order SPDX and CC URLs spell them
(BY, NC, ND, SA), the version, and a jurisdiction port when there is one (CC-BY-SA-2.0-UK). A
composed id counts only when the SPDX list has it, so a combination that does not exist
("CC BY 5.0", "CC BY-ND-SA") is reported as such rather than approximated.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from license_expression import Licensing, get_spdx_licensing

# SPDX allows site-defined ids of this form (``LicenseRef-Acme-Catalogue-2024``) for licences off the list.
LICENSE_REF = re.compile(r"LicenseRef-[A-Za-z0-9.\-]+")

ELEMENT_ORDER = ("BY", "NC", "ND", "SA")
ELEMENT_NAMES = {"BY": "Attribution", "NC": "NonCommercial", "ND": "NoDerivatives", "SA": "ShareAlike"}
# Every jurisdiction port the SPDX list has a Creative Commons licence for.
PORT_NAMES = {
    "AT": "Austria", "AU": "Australia", "DE": "Germany", "FR": "France", "IGO": "IGO", "JP": "Japan",
    "NL": "Netherlands", "UK": "England and Wales", "US": "United States",
}


@functools.cache
def licensing() -> Licensing:
    """The SPDX licensing object; building it takes tens of milliseconds, so it is built once."""
    return get_spdx_licensing()


@functools.cache
def _spdx_ids() -> dict[str, str]:
    """Lower-cased SPDX licence ids and their deprecated spellings -> the current id.

    Exceptions (``Classpath-exception-2.0``) are not licences, and ScanCode's ``LicenseRef-scancode-*``
    keys are not SPDX ids, so both are left out; deprecated ids (``GPL-2.0``) map to their successors.
    """
    table: dict[str, str] = {}
    for key, symbol in licensing().known_symbols.items():
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
    if LICENSE_REF.fullmatch(text):
        return text
    return _spdx_ids().get(text.lower())


def cc_id(elements: Iterable[str], version: str, port: str | None = None) -> str:
    """The id SPDX would give a CC licence: elements in canonical order, version, port."""
    chosen = set(elements)
    parts = ["CC", *(e for e in ELEMENT_ORDER if e in chosen), version]
    if port:
        parts.append(port.upper())
    return "-".join(parts)


def cc_elements(spdx: str) -> frozenset[str]:
    """The Creative Commons elements an id carries (CC-BY-NC-4.0 -> BY, NC); none for other licences."""
    if not spdx.startswith("CC-"):
        return frozenset()
    return frozenset(part for part in spdx.split("-")[1:] if part in ELEMENT_NAMES)


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
        words = [ELEMENT_NAMES[e] for e in elements]
        if version != "4.0":
            words = ["NoDerivs" if w == "NoDerivatives" else w for w in words]
        scope = PORT_NAMES.get(port or "", port) if port else {"4.0": "International", "3.0": "Unported"}.get(
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
