"""Licence terms in the ledger: an expired licence, or consent withdrawn by a later row, revokes an accepted
asset at the next ingest like a takedown (lineage recorded); nothing else changes, and a re-run appends nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from soundtrail.config import Settings
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.takedown import takedown_id_for
from soundtrail.workspace import Workspace
from tests.audio_fixtures import melody, write, write_manifest
from tests.ingest.test_catalog import ingest

DAY = dt.date(2031, 3, 14)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    for seed, name in enumerate(("expiring.flac", "perpetual.flac", "consenting.flac")):
        write(folder / name, melody(80 + seed, seconds=5.0))
    return folder


def _rows(expires: str, consenting: str) -> list[dict]:
    return [{"path": "expiring.flac", "license": "CC-BY-4.0", "license_expires": expires},
            {"path": "perpetual.flac", "license": "CC-BY-4.0"},
            {"path": "consenting.flac", "license": "CC0-1.0", "ai_training": consenting}]


def test_an_expired_licence_is_revoked_by_the_next_run_with_its_lineage(tmp_path: Path, corpus: Path) -> None:
    workspace = Workspace(tmp_path / "ws", Settings())
    manifest = write_manifest(corpus, _rows(DAY.isoformat(), "allowed"))
    first = ingest(workspace, [corpus], manifest, today=DAY)
    assert {name: item["status"] for name, item in first.items()} == dict.fromkeys(
        ("expiring.flac", "perpetual.flac", "consenting.flac"), "accepted"), "the licence's last day still holds"
    expiring = first["expiring.flac"]["asset_id"]
    ledger = Ledger(workspace.ledger_url)
    assert ledger.get("consents", expiring) == {
        "id": expiring, "ai_training": None, "ai_training_by": None, "license_expires": DAY.isoformat(),
        "license_expires_by": f"{manifest} line 1"}
    assert ledger.get("consents", first["perpetual.flac"]["asset_id"]) is None, "a row stating nothing: no terms"
    with ledger.writer() as writer:  # a shard made while the licence held
        writer.record("shards", "shard-1", {"status": "current", "shard_set": "s1", "path": "shards/s1/0.parquet",
                                            "asset_ids": [expiring]}, "shard.written")
    head = ledger.head()
    assert ingest(workspace, [corpus], manifest, today=DAY) == first and ledger.head() == head

    ingest(workspace, [corpus], manifest, today=DAY + dt.timedelta(days=1))
    asset = ledger.get("assets", expiring)
    assert (asset["status"], asset["reason"]) == (
        "revoked", f"takedown: licence expired on {DAY} ({manifest} line 1)")
    takedown = ledger.get("takedowns", takedown_id_for(expiring))
    assert [shard["id"] for shard in takedown["affected"]["shards"]] == ["shard-1"]
    new_events = [(event["kind"], event["entity_id"]) for event in ledger.events() if event["seq"] > head[0]]
    assert new_events == [("asset.revoked", expiring), ("takedown.recorded", takedown_id_for(expiring))]
    assert ledger.verify().ok
    head = ledger.head()
    ingest(workspace, [corpus], manifest, today=DAY + dt.timedelta(days=30))
    assert ledger.head() == head, "revoked once; the next runs change nothing"


def test_a_later_row_that_withdraws_consent_or_extends_the_licence_is_honoured(tmp_path: Path,
                                                                                corpus: Path) -> None:
    workspace = Workspace(tmp_path / "ws", Settings())
    ingest(workspace, [corpus], write_manifest(corpus, _rows(DAY.isoformat(), "allowed")), today=DAY)
    later = DAY + dt.timedelta(days=10)
    manifest = write_manifest(corpus, _rows((later + dt.timedelta(days=365)).isoformat(), "no"))
    items = ingest(workspace, [corpus], manifest, today=later)
    ledger = Ledger(workspace.ledger_url)
    consenting = ledger.get("assets", items["consenting.flac"]["asset_id"])
    assert (consenting["status"], consenting["reason"]) == (
        "revoked", f"takedown: AI training not allowed by {manifest} line 3")
    expiring = ledger.get("assets", items["expiring.flac"]["asset_id"])
    assert expiring["status"] == "accepted", "the renewed licence holds: a later row replaces the recorded terms"
    assert ledger.get("consents", expiring["id"])["license_expires"] == (later + dt.timedelta(days=365)).isoformat()
