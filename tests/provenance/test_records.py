"""Codec and model records: read from the ledger's rows and written back to them unchanged; asset records read."""

from __future__ import annotations

import json

from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.records import AssetRecord, CodecRecord, ModelRecord


def test_records_round_trip_through_the_ledger(ledger_url: str) -> None:
    codec = CodecRecord("c0dec", "soundtrail", "/ck/codec", {"strides": [4, 4]}, ("a1", "a2"),
                        {"final_loss": 0.5}, "2026-01-01T00:00:00+00:00")
    model = ModelRecord("m0de1", "ar", "/ck/ar", "c0dec", ("s1", "s2"), "learned-words:1", 40,
                        {"final_loss": 1.5}, "2026-01-02T00:00:00+00:00", parent="m0", predecessor=None,
                        base_model="ba5e", init_reason="continued from ar model m0, trained on other shards")
    with Ledger(ledger_url) as ledger:
        ledger.record("codecs", codec.id, codec.fields(), "codec.trained")
        ledger.record("models", model.id, model.fields(), "model.trained")
        assert CodecRecord.from_row(ledger.get("codecs", codec.id)) == codec
        assert ModelRecord.from_row(ledger.get("models", model.id)) == model
        head = ledger.head()
        ledger.record("models", model.id, ModelRecord.from_row(ledger.get("models", model.id)).fields(),
                      "model.trained")
        assert ledger.head() == head, "a record read back and written again changes nothing"
    assert json.loads(json.dumps(model.to_dict())) == {"id": "m0de1", **model.fields(), "status": "current",
                                                        "takedowns": []}


def test_a_row_with_empty_columns_reads_as_empty_values(ledger_url: str) -> None:
    with Ledger(ledger_url) as ledger:
        ledger.record("codecs", "old", {"kind": "soundtrail", "path": "/ck/old"}, "codec.trained")
        ledger.record("models", "m", {"kind": "ar", "path": "/ck/m", "codec_id": "old"}, "model.trained")
        codec = CodecRecord.from_row(ledger.get("codecs", "old"))
        model = ModelRecord.from_row(ledger.get("models", "m"))
    assert (codec.config, codec.assets, codec.metrics) == ({}, (), {})
    assert (model.shards, model.metrics, model.steps) == ((), {}, None)
    assert (model.parent, model.predecessor, model.base_model, model.init_reason) == (None, None, None, None)


def test_an_asset_record_carries_the_caption_and_terms_its_segments_get(ledger_url: str) -> None:
    with Ledger(ledger_url) as ledger:
        ledger.record("assets", "a1", {"path": "/in/a1.flac", "status": "accepted", "title": "Sleepy Garden",
                                       "tags": ["ambient", "pads"], "license": "CC-BY-4.0",
                                       "rights_holder": "R. Holder"}, "asset.accepted")
        ledger.record("assets", "a2", {"path": "/in/a2.flac", "status": "accepted", "title": "Ignored title",
                                       "description": "a slow piano waltz"}, "asset.accepted")
        titled, described = (AssetRecord.from_row(ledger.get("assets", asset_id)) for asset_id in ("a1", "a2"))
    assert titled == AssetRecord("a1", "/in/a1.flac", "Sleepy Garden. ambient, pads", ("ambient", "pads"),
                                 "CC-BY-4.0", "R. Holder")
    assert described.caption == "a slow piano waltz", "a description wins over title and tags"
    assert (described.tags, described.license, described.rights_holder) == ((), None, None)
