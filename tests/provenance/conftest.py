"""The hand-built ledger (``build_ledger``: assets, shards, codecs, models, outputs) that lineage and takedown tests
read, as the ``ledger`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from soundtrail.provenance.ledger import Ledger
from tests.provenance.test_lineage import build_ledger


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger(ledger_url) as ledger:
        build_ledger(ledger)
        yield ledger
