"""Codec and model records: read from the ledger's rows and written back to them unchanged."""

from __future__ import annotations

import json

from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.records import CodecRecord, ModelRecord


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
