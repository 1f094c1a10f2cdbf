"""Lineage both ways over small ledgers built record by record, and the training licence summary."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soundtrail.provenance.credentials import training_digest
from soundtrail.provenance.ledger import Ledger, canonical_json
from soundtrail.provenance.lineage import (
    LineageError,
    asset_descendants,
    model_ancestors,
    model_sources,
    output_sources,
    training_license_summary,
)

# id: (status, licence, seconds, rights holder, attribution, title, source id, reason, duplicate_of)
ASSETS = {
    "a1": ("accepted", "CC-BY-4.0", 10.0, "Label A", "Artist One", "Dawn", "src1", None, None),
    "a2": ("accepted", "CC0-1.0", 5.5, None, None, "Field", "src2", None, None),
    "a3": ("accepted", "CC-BY-SA-4.0", 7.25, "Label B", None, "Night | *Remix*", "src3", None, None),
    "a4": ("accepted", "CC-BY-4.0", 3.0, "Label A", "Artist Four", "Dusk", "src1", None, None),
    "a5": ("quarantined", "CC-BY-NC-4.0", 4.0, "Label C", None, "Club", "src3", "licence CC-BY-NC-4.0 is denied",
           None),
    "a6": ("duplicate", "CC-BY-4.0", 10.0, "Label A", "Artist One", "Dawn 2", "src1", "near copy of asset a1", "a1"),
    "a7": ("blocked", "CC0-1.0", 6.0, None, None, "Hit", "src2", "matches blocklisted work b1", None),
}
SOURCES = {"src1": ("https://label-a.example/catalogue", "Label A", None),
           "src2": ("field recordings", None, None),
           "src3": ("Label B archive", "Label B", None)}
# Codecs and the assets they were trained on; shards: (status, assets, codec); models: (codec, shards).
CODECS = {"c1": ["a1", "a4"], "c2": ["a2"]}
SHARDS = {"sh1": ("current", ["a1", "a2"], "c1"), "sh2": ("superseded", ["a3"], "c1"), "sh3": ("current", ["a2"], "c2")}
MODELS = {"m1": ("c1", ["sh1", "sh2"]), "m2": ("c2", ["sh3"])}


def build_ledger(ledger: Ledger, output_dir: Path | None = None) -> None:
    """A small pipeline's worth of records: sources, assets, codecs, shards, two models and three outputs.

    ``o1`` (m1) and ``o2`` (m2) were released, ``o3`` (m1) was blocked by screening; ``o1``'s
    credentials carry the ledger's training digest and ``o2``'s a wrong one.
    """
    outputs = output_dir or Path("outputs")
    with ledger.writer("run-1") as writer:
        for source_id, (source, holder, attribution) in SOURCES.items():
            writer.record("sources", source_id, {"source": source, "rights_holder": holder, "attribution": attribution,
                                                 "path": f"/corpus/{source_id}"}, "source.seen")
        for asset_id, (status, spdx, seconds, holder, attribution, title, source_id, reason, dup) in ASSETS.items():
            writer.record("assets", asset_id, {
                "status": status, "license": spdx, "duration_s": seconds, "rights_holder": holder,
                "attribution": attribution, "title": title, "source_id": source_id, "reason": reason,
                "duplicate_of": dup, "path": f"/corpus/{asset_id}.flac", "container": "FLAC", "sample_rate": 44100,
                "description": f"{title} caption", "tags": ["demo"], "ingested_at": f"2025-01-0{asset_id[1]}T00:00:00",
            }, f"asset.{status}")
        for codec_id, assets in CODECS.items():
            writer.record("codecs", codec_id, {"kind": "soundtrail", "assets": assets, "path": f"/ck/{codec_id}",
                                               "created_at": "2025-02-01T00:00:00"}, "codec.trained")
        for shard_id, (status, assets, codec_id) in SHARDS.items():
            writer.record("shards", shard_id, {"status": status, "asset_ids": assets, "codec_id": codec_id,
                                               "shard_set": f"set-{codec_id}", "rows": 4 * len(assets),
                                               "path": f"/shards/{shard_id}.parquet"}, "shard.written")
        for model_id, (codec_id, shards) in MODELS.items():
            writer.record("models", model_id, {"kind": "ar", "codec_id": codec_id, "shards": shards,
                                               "path": f"/ck/{model_id}", "created_at": "2025-03-01T00:00:00"},
                          "model.trained")
    m1_digest = training_digest(training_license_summary(ledger, "m1"))
    pass_verdict = {"verdict": "pass", "matches": []}
    block_verdict = {"verdict": "block", "matches": [
        {"asset_id": "a1", "method": "chromaprint", "score": 0.91, "query_offset_s": 0.0, "asset_offset_s": 2.0,
         "duration_s": 6.0},
        {"asset_id": "a3", "method": "tokens", "score": 0.4, "query_offset_s": 1.0, "asset_offset_s": 0.0,
         "duration_s": 5.0}]}
    with ledger.writer("run-2") as writer:
        writer.record("outputs", "o1", {
            "model_id": "m1", "prompt": "<script>alert(1)</script> lo-fi | *piano*", "seed": 7, "seconds": 1.0,
            "status": "released", "verdict": "pass", "screening": pass_verdict, "watermark_payload": "a1b2c3d4",
            "path": str(outputs / "o1.wav"), "created_at": "2025-04-01T00:00:00",
            "credential": {"manifest_label": "urn:c2pa:o1", "signer": "soundtrail demo signer",
                           "training_digest": m1_digest}}, "output.released")
        writer.record("outputs", "o2", {
            "model_id": "m2", "prompt": "ambient drone", "seed": 1, "seconds": 1.0, "status": "released",
            "verdict": "flag", "screening": pass_verdict, "watermark_payload": "0000ffff",
            "path": str(outputs / "o2.wav"), "created_at": "2025-04-02T00:00:00",
            "credential": {"signer": "soundtrail demo signer", "training_digest": "0" * 64}}, "output.released")
        writer.record("outputs", "o3", {
            "model_id": "m1", "prompt": "dawn again", "seed": 2, "seconds": 1.0, "status": "blocked",
            "verdict": "block", "screening": block_verdict, "created_at": "2025-04-03T00:00:00"}, "output.blocked")


def _ids(rows: list[dict]) -> list[str]:
    return [row["id"] for row in rows]


def test_model_sources_follow_shards_and_codec(ledger: Ledger) -> None:
    sources = model_sources(ledger, "m1")
    assert _ids(sources) == ["a1", "a2", "a3", "a4"]
    via = {row["id"]: row["via"] for row in sources}
    assert via == {"a1": ["codec", "shards"], "a2": ["shards"], "a3": ["shards"], "a4": ["codec"]}
    assert sources[0]["license"] == "CC-BY-4.0" and sources[0]["status"] == "accepted"
    assert _ids(model_sources(ledger, "m2")) == ["a2"]


def test_output_sources_go_through_the_model(ledger: Ledger) -> None:
    assert output_sources(ledger, "o3") == model_sources(ledger, "m1")
    assert _ids(output_sources(ledger, "o2")) == ["a2"]


def test_asset_descendants_forward(ledger: Ledger) -> None:
    a1 = asset_descendants(ledger, "a1")
    assert _ids(a1["shards"]) == ["sh1"] and _ids(a1["codecs"]) == ["c1"]
    assert a1["models"] == [{"id": "m1", "kind": "ar", "path": "/ck/m1", "via": ["codec", "shards"]}]
    assert _ids(a1["outputs"]) == ["o1", "o3"]

    a3 = asset_descendants(ledger, "a3")  # only in a superseded shard: the model trained on it still counts
    assert [(s["id"], s["status"]) for s in a3["shards"]] == [("sh2", "superseded")]
    assert [(m["id"], m["via"]) for m in a3["models"]] == [("m1", ["shards"])]

    a4 = asset_descendants(ledger, "a4")  # codec-only: every model using that codec saw it
    assert a4["shards"] == [] and [(m["id"], m["via"]) for m in a4["models"]] == [("m1", ["codec"])]

    a2 = asset_descendants(ledger, "a2")
    assert _ids(a2["shards"]) == ["sh1", "sh3"] and _ids(a2["codecs"]) == ["c2"]
    assert _ids(a2["models"]) == ["m1", "m2"] and _ids(a2["outputs"]) == ["o1", "o2", "o3"]

    a5 = asset_descendants(ledger, "a5")
    assert (a5["shards"], a5["codecs"], a5["models"], a5["outputs"]) == ([], [], [], [])


def test_training_license_summary(ledger: Ledger) -> None:
    summary = training_license_summary(ledger, "m1")
    assert summary["assets"] == 4 and summary["duration_s"] == pytest.approx(25.75)
    assert summary["licenses"] == {"CC-BY-4.0": {"assets": 2, "seconds": 13.0},
                                   "CC-BY-SA-4.0": {"assets": 1, "seconds": 7.25},
                                   "CC0-1.0": {"assets": 1, "seconds": 5.5}}
    assert summary["rights_holders"] == ["Label A", "Label B"]
    assert summary["shards"] == ["sh1", "sh2"] and summary["codec_id"] == "c1"
    credits = {entry["asset_id"]: entry for entry in summary["attribution"]}
    assert sorted(credits) == ["a1", "a3", "a4"], "CC BY and BY-SA need credits, CC0 does not"
    assert credits["a1"] == {"asset_id": "a1", "title": "Dawn", "attribution": "Artist One",
                             "rights_holder": "Label A", "source": "https://label-a.example/catalogue",
                             "license": "CC-BY-4.0"}
    assert credits["a3"]["attribution"] == "Label B", "the credit falls back to the rights holder"
    assert json.loads(canonical_json(summary)) == summary, "JSON-plain, so it can be hashed into credentials"


def test_summary_is_deterministic_and_survives_a_takedown(ledger: Ledger) -> None:
    before = training_digest(training_license_summary(ledger, "m1"))
    assert training_digest(training_license_summary(ledger, "m1")) == before
    ledger.record("assets", "a1", {"status": "revoked", "reason": "takedown: request"}, "asset.revoked")
    ledger.record("shards", "sh1", {"status": "superseded"}, "shard.superseded")
    assert training_digest(training_license_summary(ledger, "m1")) == before, \
        "what the model saw does not change when a source is revoked later"
    ledger.record("assets", "a4", {"duration_s": 4.0}, "asset.corrected")
    assert training_digest(training_license_summary(ledger, "m1")) != before


def test_unknown_ids_and_dangling_links_raise(ledger: Ledger) -> None:
    for call, missing in ((model_sources, "m9"), (output_sources, "o9"), (asset_descendants, "a9")):
        with pytest.raises(LineageError, match=missing):
            call(ledger, missing)
    ledger.record("models", "m3", {"kind": "ar", "codec_id": "c1", "shards": ["sh1", "gone"]}, "model.trained")
    with pytest.raises(LineageError, match="shard 'gone'"):
        model_sources(ledger, "m3")
    ledger.record("models", "m4", {"kind": "ar", "codec_id": "c9", "shards": []}, "model.trained")
    with pytest.raises(LineageError, match="codec 'c9'"):
        training_license_summary(ledger, "m4")


def test_a_continued_model_carries_what_its_parent_saw(ledger: Ledger) -> None:
    """m3 continued training from m1 on shard sh3 alone: m1's assets are in its weights, so in its lineage."""
    ledger.record("base_models", "ba5e", {"name": "musicgen-tiny", "license": "CC-BY-4.0", "training_data": "stock",
                                          "status": "accepted", "policy": "allow"}, "base_model.accepted")
    ledger.record("models", "m3", {"kind": "ar", "codec_id": "c1", "shards": ["sh3"], "parent": "m1",
                                   "base_model": "ba5e", "path": "/ck/m3"}, "model.trained")
    ledger.record("models", "m4", {"kind": "ar", "codec_id": "c1", "shards": [], "parent": "m3"}, "model.trained")
    assert _ids(model_ancestors(ledger, "m4")) == ["m3", "m1"]
    via = {row["id"]: row["via"] for row in model_sources(ledger, "m3")}
    assert via == {"a1": ["codec", "parent"], "a2": ["parent", "shards"], "a3": ["parent"], "a4": ["codec", "parent"]}
    assert _ids(model_sources(ledger, "m4")) == ["a1", "a2", "a3", "a4"], "a grandparent's assets too"

    a3 = asset_descendants(ledger, "a3")  # only in m1's superseded shard: m3 and m4 still carry it
    assert [(m["id"], m["via"]) for m in a3["models"]] == [("m1", ["shards"]), ("m3", ["parent"]), ("m4", ["parent"])]

    summary = training_license_summary(ledger, "m3")
    assert summary["parents"] == ["m1"] and summary["assets"] == 4 and summary["shards"] == ["sh3"]
    assert summary["base_model"] == {"id": "ba5e", "name": "musicgen-tiny", "license": "CC-BY-4.0",
                                     "training_data": "stock"}
    assert "parents" not in training_license_summary(ledger, "m1"), "a model from scratch hashes as it always did"

    ledger.record("models", "m1", {"parent": "m4"}, "model.edited")
    with pytest.raises(LineageError, match="cycle"):
        model_sources(ledger, "m4")
    ledger.record("models", "m1", {"parent": "m9"}, "model.edited")
    with pytest.raises(LineageError, match="parent 'm9'"):
        model_sources(ledger, "m3")


@st.composite
def _pipelines(draw: st.DrawFn) -> dict:
    assets = [f"a{i}" for i in range(draw(st.integers(1, 6)))]
    subsets = st.lists(st.sampled_from(assets), unique=True, max_size=len(assets))
    codecs = {f"c{i}": draw(subsets) for i in range(draw(st.integers(1, 2)))}
    shards = {f"s{i}": (draw(subsets), draw(st.sampled_from(sorted(codecs)))) for i in range(draw(st.integers(0, 4)))}
    models = {f"m{i}": (draw(st.sampled_from(sorted(codecs))),
                        draw(st.lists(st.sampled_from(sorted(shards)), unique=True)) if shards else [],
                        draw(st.sampled_from([None] + [f"m{j}" for j in range(i)])))  # a parent trained before it
              for i in range(draw(st.integers(1, 4)))}
    outputs = {f"o{i}": draw(st.sampled_from(sorted(models))) for i in range(draw(st.integers(0, 3)))}
    return {"assets": assets, "codecs": codecs, "shards": shards, "models": models, "outputs": outputs}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pipeline=_pipelines())
def test_lineage_both_ways_agree(pipeline: dict) -> None:
    """An asset is behind a model exactly when the model is among the asset's descendants, and so for outputs;
    parents included."""
    with tempfile.TemporaryDirectory() as folder:
        ledger = Ledger(f"sqlite:///{folder}/ledger.db")
        with ledger.writer() as writer:
            for asset_id in pipeline["assets"]:
                writer.record("assets", asset_id, {"status": "accepted", "license": "CC0-1.0", "duration_s": 1.0},
                              "asset.accepted")
            for codec_id, assets in pipeline["codecs"].items():
                writer.record("codecs", codec_id, {"assets": assets}, "codec.trained")
            for shard_id, (assets, codec_id) in pipeline["shards"].items():
                writer.record("shards", shard_id, {"asset_ids": assets, "codec_id": codec_id, "status": "current"},
                              "shard.written")
            for model_id, (codec_id, shards, parent) in pipeline["models"].items():
                writer.record("models", model_id, {"codec_id": codec_id, "shards": shards, "parent": parent},
                              "model.trained")
            for output_id, model_id in pipeline["outputs"].items():
                writer.record("outputs", output_id, {"model_id": model_id, "status": "released"}, "output.released")
        backward = {model_id: set(_ids(model_sources(ledger, model_id))) for model_id in pipeline["models"]}
        for asset_id in pipeline["assets"]:
            forward = asset_descendants(ledger, asset_id)
            assert set(_ids(forward["models"])) == {m for m, assets in backward.items() if asset_id in assets}
            assert set(_ids(forward["outputs"])) == {o for o in pipeline["outputs"]
                                                     if asset_id in set(_ids(output_sources(ledger, o)))}
            assert set(_ids(forward["codecs"])) == {c for c, assets in pipeline["codecs"].items() if asset_id in assets}
        for model_id, assets in backward.items():
            assert training_license_summary(ledger, model_id)["assets"] == len(assets)
        ledger.close()
