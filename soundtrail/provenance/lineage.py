"""Lineage over the ledger, both ways: from a model or output back to its licensed sources, and from
a source forward to everything derived from it.

The ledger's projections hold the links; this module only follows them::

    output --model_id--> model --shards--> shard --asset_ids--> asset --source_id--> source
                               --codec_id--> codec --assets-----^
                               --parent----> model (what it saw, recursively)
                               --base_model--> base model (a pretrained input, with its licence)

A model "saw" an asset when one of its shards holds the asset's segments, when its codec was
trained on the asset (the codec's weights carry it into every token the model learned from), or
when a model it continued training from saw it (the parent's weights carry it the same way).
A superseded shard still counts: a model trained before a takedown keeps what it saw.

Every function returns JSON-plain values sorted by id, so two runs over the same ledger give the
same answer, and :func:`training_license_summary` can be hashed into content credentials.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from soundtrail.licenses import requires_attribution
from soundtrail.provenance.ledger import Ledger

NO_LICENSE = "NOASSERTION"  # SPDX's word for "no licence on record"


class LineageError(LookupError):
    """An id that is not in the ledger, or a link that points at a row the ledger lacks."""


def _require(ledger: Ledger, entity: str, entity_id: str) -> dict[str, Any]:
    row = ledger.get(entity, entity_id)
    if row is None:
        raise LineageError(f"no {entity[:-1]} {entity_id!r} in the ledger")
    return row


def model_ancestors(ledger: Ledger, model_id: str) -> list[dict[str, Any]]:
    """The model rows a model's weights descend from, nearest first: its parent, the parent's parent, ..."""
    chain: list[dict[str, Any]] = []
    seen = {model_id}
    row = _require(ledger, "models", model_id)
    while row.get("parent"):
        parent_id = row["parent"]
        if parent_id in seen:
            raise LineageError(f"model {model_id!r}: its parents form a cycle at {parent_id!r}")
        parent = ledger.get("models", parent_id)
        if parent is None:
            raise LineageError(f"model {row['id']!r} names parent {parent_id!r}, which is not in the ledger")
        chain.append(parent)
        seen.add(parent_id)
        row = parent
    return chain


def _own_inputs(ledger: Ledger, model: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(codec row, shard rows) of one model's own training run, its parents aside; a missing link is an error."""
    shards = []
    for shard_id in sorted(model.get("shards") or []):
        shard = ledger.get("shards", shard_id)
        if shard is None:
            raise LineageError(f"model {model['id']!r} names shard {shard_id!r}, which is not in the ledger")
        shards.append(shard)
    codec = None
    if model.get("codec_id"):
        codec = ledger.get("codecs", model["codec_id"])
        if codec is None:
            raise LineageError(f"model {model['id']!r} names codec {model['codec_id']!r}, which is not in the ledger")
    return codec, shards


def model_inputs(ledger: Ledger, model_id: str) -> dict[str, Any]:
    """The rows one step behind a model: ``{"model", "codec", "shards", "parents", "base_model"}``; a missing link
    is an error.

    An audit must never shrink a model's training set silently because a shard or codec row went
    missing, so a dangling reference raises instead of being skipped. ``parents`` is
    :func:`model_ancestors`; ``base_model`` the pretrained model's row, or None.
    """
    model = _require(ledger, "models", model_id)
    codec, shards = _own_inputs(ledger, model)
    base = None
    if model.get("base_model"):
        base = ledger.get("base_models", model["base_model"])
        if base is None:
            raise LineageError(f"model {model_id!r} names base model {model['base_model']!r}, which is not in the "
                               "ledger")
    return {"model": model, "codec": codec, "shards": shards, "parents": model_ancestors(ledger, model_id),
            "base_model": base}


def _assets_of(codec: dict[str, Any] | None, shards: list[dict[str, Any]]) -> dict[str, set[str]]:
    via: dict[str, set[str]] = defaultdict(set)
    for shard in shards:
        for asset_id in shard.get("asset_ids") or []:
            via[asset_id].add("shards")
    for asset_id in (codec or {}).get("assets") or []:
        via[asset_id].add("codec")
    return via


def model_sources(ledger: Ledger, model_id: str) -> list[dict[str, Any]]:
    """The asset rows behind a model, each with ``via``: ``codec``, ``shards`` (its own run) and ``parent`` (a
    model it continued from saw it)."""
    inputs = model_inputs(ledger, model_id)
    via = _assets_of(inputs["codec"], inputs["shards"])
    for parent in inputs["parents"]:
        for asset_id in _assets_of(*_own_inputs(ledger, parent)):
            via[asset_id].add("parent")
    assets = []
    for asset_id in sorted(via):
        asset = ledger.get("assets", asset_id)
        if asset is None:
            raise LineageError(f"model {model_id!r} was trained on asset {asset_id!r}, which is not in the ledger")
        assets.append({**asset, "via": sorted(via[asset_id])})
    return assets


def output_sources(ledger: Ledger, output_id: str) -> list[dict[str, Any]]:
    """The asset rows behind a generated output (through the model that made it)."""
    output = _require(ledger, "outputs", output_id)
    if not output.get("model_id"):
        raise LineageError(f"output {output_id!r} names no model")
    return model_sources(ledger, output["model_id"])


def asset_descendants(ledger: Ledger, asset_id: str) -> dict[str, Any]:
    """Everything derived from one asset, current or superseded.

    ``shards``: every shard holding its segments; ``codecs``: every codec trained on it;
    ``models``: every model whose shards or codec include it, or that continued from such a model (``via`` says
    which: ``shards``, ``codec``, ``parent``);
    ``outputs``: every output of those models. Small dicts, not whole rows, so the result can
    be stored as a takedown's ``affected`` record.
    """
    _require(ledger, "assets", asset_id)
    shards = [{"id": row["id"], "status": row["status"], "shard_set": row["shard_set"], "path": row["path"]}
              for row in ledger.rows("shards") if asset_id in (row.get("asset_ids") or [])]
    codecs = [{"id": row["id"], "kind": row["kind"], "path": row["path"]}
              for row in ledger.rows("codecs") if asset_id in (row.get("assets") or [])]
    shard_ids = {shard["id"] for shard in shards}
    codec_ids = {codec["id"] for codec in codecs}
    rows = ledger.rows("models")
    models: dict[str, dict[str, Any]] = {}
    for row in rows:
        via = (["codec"] if row.get("codec_id") in codec_ids else []) + \
              (["shards"] if shard_ids & set(row.get("shards") or []) else [])
        if via:
            models[row["id"]] = {"id": row["id"], "kind": row["kind"], "path": row["path"], "via": via}
    continued = True
    while continued:  # a model continued from an affected one carries the asset in its weights too
        continued = False
        for row in rows:
            if row["id"] not in models and row.get("parent") in models:
                models[row["id"]] = {"id": row["id"], "kind": row["kind"], "path": row["path"], "via": ["parent"]}
                continued = True
    model_ids = set(models)
    outputs = [{"id": row["id"], "model_id": row["model_id"], "status": row["status"], "path": row["path"]}
               for row in ledger.rows("outputs") if row.get("model_id") in model_ids]
    return {"asset_id": asset_id, "shards": shards, "codecs": codecs, "models": [models[key] for key in sorted(models)],
            "outputs": outputs}


def _seconds(value: float) -> float:
    """Durations rounded to the millisecond: sums stay stable whatever the float noise."""
    return round(float(value), 3)


def _source_rows(ledger: Ledger, assets: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    ids = {asset["source_id"] for asset in assets if asset.get("source_id")}
    return {source_id: row for source_id in ids if (row := ledger.get("sources", source_id)) is not None}


def attribution_entry(asset: dict[str, Any], source: dict[str, Any] | None) -> dict[str, Any]:
    """What a CC BY credit needs for one work: title, author, rights holder, where it came from, licence."""
    source = source or {}
    rights_holder = asset.get("rights_holder") or source.get("rights_holder")
    return {
        "asset_id": asset["id"],
        "title": asset.get("title"),
        "attribution": asset.get("attribution") or source.get("attribution") or rights_holder,
        "rights_holder": rights_holder,
        "source": source.get("source"),
        "license": asset.get("license") or NO_LICENSE,
    }


def license_breakdown(assets: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{spdx: {"assets", "seconds"}}`` over ``assets``, keys sorted (ids only: names are for display)."""
    table: dict[str, dict[str, Any]] = {}
    for asset in sorted(assets, key=lambda row: row["id"]):
        spdx = asset.get("license") or NO_LICENSE
        entry = table.setdefault(spdx, {"assets": 0, "seconds": 0.0})
        entry["assets"] += 1
        entry["seconds"] += asset.get("duration_s") or 0.0
    return {spdx: {**table[spdx], "seconds": _seconds(table[spdx]["seconds"])} for spdx in sorted(table)}


def training_license_summary(ledger: Ledger, model_id: str) -> dict[str, Any]:
    """The licences of everything a model was trained on, deterministic and JSON-plain.

    The release gate hashes this into each output's content credentials, and an auditor
    recomputes it from the ledger later, so it uses only facts fixed at ingest (licence, rights
    holder, attribution, duration), never an asset's status: a later takedown does not change
    what the model saw, and must not change this digest. Assets a parent saw are counted (its
    weights carry them); the parents and the base model (its name, licence and training-data
    statement) are named.
    """
    inputs = model_inputs(ledger, model_id)
    assets = model_sources(ledger, model_id)
    sources = _source_rows(ledger, assets)
    credits = [attribution_entry(asset, sources.get(asset.get("source_id") or "")) for asset in assets]
    summary: dict[str, Any] = {
        "model_id": model_id,
        "codec_id": inputs["model"].get("codec_id"),
        "shards": [shard["id"] for shard in inputs["shards"]],
        "assets": len(assets),
        "duration_s": _seconds(sum(asset.get("duration_s") or 0.0 for asset in assets)),
        "licenses": license_breakdown(assets),
        "rights_holders": sorted({entry["rights_holder"] for entry in credits if entry["rights_holder"]}),
        "attribution": [entry for entry in credits if requires_attribution(entry["license"])],
    }
    # Only when there are any: the summary of a model trained from scratch hashes as it always has.
    if inputs["parents"]:
        summary["parents"] = [parent["id"] for parent in inputs["parents"]]
    if inputs["base_model"]:
        summary["base_model"] = base_model_summary(inputs["base_model"])
    return summary


def base_model_summary(base: dict[str, Any]) -> dict[str, Any]:
    """What a model's training summary (and so its outputs' credentials) says about its pretrained base model."""
    return {key: base.get(key) for key in ("id", "name", "license", "training_data")}
