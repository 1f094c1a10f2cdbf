"""The audit report's content: one JSON-plain dict built from the ledger (and ``outputs/``), for every rendering.

Sections: the licence table; the credits list the CC BY family requires; the assets that did not make it into
training (quarantined, duplicate, blocked, disputed, rejected, revoked) with their reasons; disputes (copies of
one recording with conflicting claims), open and resolved by a person; takedowns and the overrides operators
recorded; every codec and model with its status, shards, assets and licences and where its weights began (a parent
it continued from, a base model it was fine-tuned from); the base models admitted or refused, with their licences
and training-data statements; the release log with screening
verdicts, watermark payloads, signers (outputs signed by a workspace's demo CA are flagged) and the state of each
released file; ``outputs/`` compared with the ledger; and a summary of the training content shaped after the EU
AI Office's template for the public summary required by Article 53(1)(d) of the AI Act.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from soundtrail import __version__
from soundtrail.licenses import license_name, requires_attribution, spdx_id
from soundtrail.provenance.credentials import DEMO_SIGNER, training_digest
from soundtrail.provenance.ledger import Ledger, utc_now
from soundtrail.provenance.lineage import (
    NO_LICENSE,
    attribution_entry,
    base_model_summary,
    license_breakdown,
    model_sources,
    training_license_summary,
)
from soundtrail.provenance.outputs import OutputsCheck, check_outputs
from soundtrail.provenance.records import CURRENT
from soundtrail.provenance.review import open_disputes, resolved_disputes
from soundtrail.workspace import Workspace

DERIVED_KINDS = ("shards", "codecs", "models", "outputs")
EXCLUDED_STATUSES = ("quarantined", "duplicate", "blocked", "disputed", "rejected", "revoked")
ASSET_FIELDS = ("id", "path", "status", "reason", "license", "rights_holder", "attribution", "title", "duration_s",
                "duplicate_of", "source_id", "ingested_at")
MATCH_FIELDS = ("asset_id", "method", "score", "query_offset_s", "asset_offset_s", "duration_s")
BASE_MODEL_FIELDS = ("id", "name", "path", "architecture", "license", "license_source", "training_data", "status",
                     "policy", "reason", "recorded_at")
TrainedOn = dict[str, dict[str, list[str]]]  # asset id -> {"models": [...], "codecs": [...]}


def pick(row: dict[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any] | None:
    return None if row is None else {key: row.get(key) for key in keys}


_CC = re.compile(r"CC-(?P<elements>(?:BY|NC|ND|SA)(?:-(?:NC|ND|SA))*)-(?P<version>\d\.\d)(?:-(?P<port>[A-Z]+))?")


def license_url(spdx: str | None) -> str | None:
    """The licence's own page: the Creative Commons deed, else the SPDX list entry; None if it has none."""
    if not spdx or spdx == NO_LICENSE or spdx.startswith("LicenseRef-"):
        return None
    special = {"CC0-1.0": "publicdomain/zero/1.0/", "CC-PDM-1.0": "publicdomain/mark/1.0/"}
    if spdx in special:
        return "https://creativecommons.org/" + special[spdx]
    match = _CC.fullmatch(spdx)
    if match:
        port = f"{match['port'].lower()}/" if match["port"] else ""
        return f"https://creativecommons.org/licenses/{match['elements'].lower()}/{match['version']}/{port}"
    return f"https://spdx.org/licenses/{spdx}.html" if spdx_id(spdx) else None


def _policy(spdx: str, allow: list[str], deny: list[str]) -> str:
    return "allow" if spdx in allow else "deny" if spdx in deny else "not listed"


@dataclass
class _Corpus:
    """Every table the report reads, loaded once."""

    assets: dict[str, dict[str, Any]]
    sources: dict[str, dict[str, Any]]
    models: list[dict[str, Any]]
    codecs: list[dict[str, Any]]
    shards: dict[str, dict[str, Any]]
    model_assets: dict[str, list[dict[str, Any]]]  # model id -> model_sources()

    @classmethod
    def load(cls, ledger: Ledger) -> _Corpus:
        models = ledger.rows("models")
        return cls(
            assets={row["id"]: row for row in ledger.rows("assets")},
            sources={row["id"]: row for row in ledger.rows("sources")},
            models=models,
            codecs=ledger.rows("codecs"),
            shards={row["id"]: row for row in ledger.rows("shards")},
            model_assets={model["id"]: model_sources(ledger, model["id"]) for model in models},
        )

    def trained_on(self) -> TrainedOn:
        """Asset id -> ``{"models": [...], "codecs": [...]}`` that saw it (only assets something saw)."""
        users: dict[str, dict[str, set[str]]] = {}
        for model_id, assets in self.model_assets.items():
            for asset in assets:
                users.setdefault(asset["id"], {"models": set(), "codecs": set()})["models"].add(model_id)
        for codec in self.codecs:
            for asset_id in codec.get("assets") or []:
                users.setdefault(asset_id, {"models": set(), "codecs": set()})["codecs"].add(codec["id"])
        return {asset_id: {kind: sorted(ids) for kind, ids in seen.items()} for asset_id, seen in users.items()}


def build_report(workspace: Workspace, ledger: Ledger) -> dict[str, Any]:
    """The whole audit as one JSON-plain dict (the JSON format is exactly this)."""
    corpus = _Corpus.load(ledger)
    verified = ledger.verify()
    seq, head = ledger.head()
    policy = workspace.settings.licenses
    trained_on = corpus.trained_on()
    blocklist = [pick(row, ("id", "path", "reason", "duration_s", "added_at")) for row in ledger.rows("blocklist")]
    models = [_model_row(ledger, corpus, model) for model in corpus.models]
    digests = {model["id"]: model["training_digest"] for model in models}
    outputs = sorted(ledger.rows("outputs"), key=lambda row: (row.get("created_at") or "", row["id"]))
    folder = check_outputs(workspace, ledger)
    releases = [_release_row(row, digests, folder) for row in outputs]
    return {
        "title": "soundtrail data-governance audit",
        "generated_at": utc_now(),
        "soundtrail_version": __version__,
        "workspace": str(workspace.root),
        "ledger": {"events": seq, "head": head, "verified": verified.ok, "problem": verified.problem},
        "policy": {"allow": list(policy.allow), "deny": list(policy.deny)},
        "corpus": _status_counts(corpus.assets.values()),
        "licences": _licence_table(ledger, corpus, trained_on, policy.allow, policy.deny),
        "attribution": _attribution(corpus, trained_on),
        "excluded": [pick(row, ASSET_FIELDS) for row in corpus.assets.values() if row["status"] in EXCLUDED_STATUSES],
        "blocklist": blocklist,
        "disputes": {"open": [dispute.as_dict() for dispute in open_disputes(ledger)],
                     "resolved": resolved_disputes(ledger)},
        "takedowns": [_takedown_row(row) for row in ledger.rows("takedowns")],
        "overrides": [pick(row, ("id", "kind", "by", "reason", "details", "created_at"))
                      for row in sorted(ledger.rows("overrides"), key=lambda row: row.get("created_at") or "")],
        "codecs": [{**pick(codec, ("id", "kind", "path", "created_at")), "assets": len(codec.get("assets") or []),
                    "status": codec.get("status") or CURRENT, "takedowns": codec.get("takedowns") or []}
                   for codec in corpus.codecs],
        "models": models,
        "base_models": [pick(row, BASE_MODEL_FIELDS) for row in ledger.rows("base_models")],
        "releases": releases,
        "demo_signed_releases": sum(1 for row in releases if row["status"] == "released" and row["demo_signer"]),
        "outputs_check": {**folder.as_dict(), "problems": folder.problems()},
        "training_data_summary": _training_data_summary(workspace, ledger, corpus, trained_on, len(blocklist)),
    }


def _status_counts(assets: Any) -> dict[str, dict[str, Any]]:
    counts: dict[str, dict[str, Any]] = {}
    for row in assets:
        entry = counts.setdefault(row["status"] or "unknown", {"assets": 0, "seconds": 0.0})
        entry["assets"] += 1
        entry["seconds"] = round(entry["seconds"] + (row.get("duration_s") or 0.0), 3)
    return dict(sorted(counts.items()))


def _licence_table(ledger: Ledger, corpus: _Corpus, trained_on: TrainedOn,
                   allow: list[str], deny: list[str]) -> list[dict[str, Any]]:
    recorded = {row["id"]: row for row in ledger.rows("licences")}
    rows = []
    for spdx in sorted({row["license"] for row in corpus.assets.values() if row.get("license")} | set(recorded)):
        assets = [row for row in corpus.assets.values() if row.get("license") == spdx]
        accepted = [row for row in assets if row["status"] == "accepted"]
        rows.append({
            "license": spdx, "name": license_name(spdx), "url": license_url(spdx),
            "policy": _policy(spdx, allow, deny),
            "policy_recorded": (recorded.get(spdx) or {}).get("policy"),
            "requires_attribution": requires_attribution(spdx),
            "assets": len(accepted), "seconds": round(sum(row.get("duration_s") or 0.0 for row in accepted), 3),
            "trained": sum(1 for row in assets if row["id"] in trained_on),
            "excluded": len(assets) - len(accepted),
        })
    return rows


def _attribution(corpus: _Corpus, trained_on: TrainedOn) -> list[dict[str, Any]]:
    """Credits for every CC BY work that is in the corpus or that a model or codec was trained on."""
    entries = []
    for asset in corpus.assets.values():
        in_use = asset["status"] == "accepted" or asset["id"] in trained_on
        if not (in_use and requires_attribution(asset.get("license") or "")):
            continue
        entry = attribution_entry(asset, corpus.sources.get(asset.get("source_id") or ""))
        credit = credit_line(entry["title"], entry["attribution"])
        holder = entry["rights_holder"]
        entries.append({**entry, "credit": credit, "credit_holder": holder if holder and holder not in credit else None,
                        "license_name": license_name(entry["license"]),
                        "license_url": license_url(entry["license"]), "status": asset["status"],
                        **trained_on.get(asset["id"], {"models": [], "codecs": []})})
    return entries


def credit_line(title: str | None, attribution: str | None) -> str:
    """The credit for one work: an attribution that already names the title is the rights holder's own credit
    line and is used as it stands; otherwise ``"title" by attribution``."""
    if attribution and title and title.casefold() in attribution.casefold():
        return attribution
    return f'"{title or "untitled"}" by {attribution or "unknown author"}'


def _takedown_row(row: dict[str, Any]) -> dict[str, Any]:
    affected = row.get("affected") or {}
    derived = {kind: [item["id"] for item in affected.get(kind, [])] for kind in DERIVED_KINDS}
    return {**pick(row, ("id", "asset_id", "reason", "created_at")), **derived}


def _model_row(ledger: Ledger, corpus: _Corpus, model: dict[str, Any]) -> dict[str, Any]:
    assets = corpus.model_assets[model["id"]]
    shards = [corpus.shards[shard_id] for shard_id in sorted(model.get("shards") or [])]
    summary = training_license_summary(ledger, model["id"])
    return {
        **pick(model, ("id", "kind", "created_at", "codec_id", "text_encoder", "steps", "parent", "predecessor",
                       "base_model", "init_reason")),
        "shards": len(shards),
        "superseded_shards": sum(1 for shard in shards if shard["status"] == "superseded"),
        "assets": len(assets),
        "duration_s": summary["duration_s"],
        "licenses": {spdx: {**entry, "name": license_name(spdx)} for spdx, entry in summary["licenses"].items()},
        "rights_holders": summary["rights_holders"],
        "revoked_assets": [asset["id"] for asset in assets if asset["status"] == "revoked"],
        "training_digest": training_digest(summary),
        "status": model.get("status") or CURRENT,
        "takedowns": model.get("takedowns") or [],
    }


def _release_row(row: dict[str, Any], digests: dict[str, str], folder: OutputsCheck) -> dict[str, Any]:
    """One line of the release log; ``credential_digest_matches`` compares the credential with the ledger, ``file``
    is the released file's state in ``outputs/``, and ``demo_signer`` flags a workspace demo CA's signature."""
    screening = row.get("screening") or {}
    matches = sorted(screening.get("matches") or [], key=lambda match: -(match.get("score") or 0.0))
    credential = row.get("credential") or {}
    digest_matches = None
    if credential.get("training_digest") and row.get("model_id") in digests:
        digest_matches = credential["training_digest"] == digests[row["model_id"]]
    return {
        **pick(row, ("id", "model_id", "created_at", "prompt", "seed", "seconds", "status", "verdict",
                      "watermark_payload", "path", "sha256")),
        "matches": len(matches),
        "top_match": pick(matches[0], MATCH_FIELDS) if matches else None,
        "file": folder.state_of(row["id"]) if row.get("status") == "released" else None,
        "credential": pick(credential, ("manifest_label", "signer", "alg", "training_digest")) if credential
        else None,
        "credential_digest_matches": digest_matches,
        "demo_signer": credential.get("signer") == DEMO_SIGNER,
    }


def _training_data_summary(workspace: Workspace, ledger: Ledger, corpus: _Corpus, trained_on: TrainedOn,
                           blocklist_works: int) -> dict[str, Any]:
    """The training content in the shape of the AI Office's public-summary template (sections 1-3)."""
    used = [corpus.assets[asset_id] for asset_id in sorted(trained_on) if asset_id in corpus.assets]
    by_source: dict[str, list[dict[str, Any]]] = {}
    for asset in used:
        source = (corpus.sources.get(asset.get("source_id") or "") or {}).get("source") or "not stated"
        by_source.setdefault(source, []).append(asset)
    statuses = Counter(row["status"] for row in corpus.assets.values())
    seconds = round(sum(asset.get("duration_s") or 0.0 for asset in used), 3)
    trained_shards = {shard_id for model in corpus.models for shard_id in model.get("shards") or []}
    segments = sum(corpus.shards[shard_id]["rows"] or 0 for shard_id in trained_shards)
    bases = {model["base_model"] for model in corpus.models if model.get("base_model")}
    return {
        "template": "EU AI Office template for the public summary of training content (AI Act, Art. 53(1)(d))",
        "general": {
            "provider": f"operator of the soundtrail workspace {workspace.root.name!r}",
            "models": [pick(model, ("id", "kind", "created_at")) for model in corpus.models],
            "codecs": [codec["id"] for codec in corpus.codecs],
            # A fine-tuned model's own summary covers the data of its fine-tuning; its base model's publisher
            # answers for the rest, in the statement named here.
            "base_models": [base_model_summary(row) for base_id in sorted(bases)
                            if (row := ledger.get("base_models", base_id)) is not None],
            "modalities": ["audio (music recordings)", "text (captions and tags from the ingest manifest)"],
            "latest_acquisition": max((asset.get("ingested_at") or "" for asset in used), default=None) or None,
        },
        "volume": {
            "assets": len(used),
            "seconds": seconds,
            "hours": round(seconds / 3600, 4),
            "segments": segments,
            "captioned_assets": sum(1 for asset in used if asset.get("description") or asset.get("tags")),
            "containers": dict(sorted(Counter(asset.get("container") or "unknown" for asset in used).items())),
            "sample_rates": {str(rate): count for rate, count in
                             sorted(Counter(asset.get("sample_rate") or 0 for asset in used).items())},
        },
        "sources": [{"source": source, "type": _source_type(assets), "assets": len(assets),
                     "seconds": round(sum(asset.get("duration_s") or 0.0 for asset in assets), 3),
                     "licenses": sorted(license_breakdown(assets)),
                     "rights_holders": sorted({asset["rights_holder"] for asset in assets
                                               if asset.get("rights_holder")})}
                    for source, assets in sorted(by_source.items())],
        "not_used": {
            "crawled": "none: soundtrail has no crawler; every file is supplied by the operator",
            "user_data": "none: generated outputs are never ingested back by the pipeline",
        },
        "processing": {
            "licence_policy": {"allow": list(workspace.settings.licenses.allow),
                               "deny": list(workspace.settings.licenses.deny)},
            "rights_reservation": (
                "Each file's licence is read from the ingest manifest and the file's own tags and normalised to "
                "an SPDX id; only licences on the allow list are trained on. Missing, unknown, ambiguous or "
                "conflicting licences, and licence strings with a word the reading does not account for (a "
                "restriction beside a licence name), are quarantined, never guessed. Reference fingerprints of "
                "protected works (the blocklist) block matching files and excerpts; copies of a known recording are "
                "kept out as duplicates, refused with it when it was refused, and held for a person's review when "
                "their licence or rights holder differs from the recording's."),
            "quarantined": statuses.get("quarantined", 0),
            "duplicates": statuses.get("duplicate", 0),
            "blocked": statuses.get("blocked", 0),
            "revoked": statuses.get("revoked", 0),
            "disputed": statuses.get("disputed", 0),
            "rejected": statuses.get("rejected", 0),
            "blocklist_works": blocklist_works,
            "takedown_procedure": (
                "A rights holder's opt-out or takedown request is executed with the command \"soundtrail "
                "takedown ASSET_ID --reason TEXT\": the asset is revoked in the hash-chained ledger, every shard, "
                "codec, model and output derived from it is recorded, the next tokenize rewrites the shards "
                "without it, and training reads current shards only."),
        },
    }


def _source_type(assets: list[dict[str, Any]]) -> str:
    licences = {asset.get("license") or NO_LICENSE for asset in assets}
    if all(spdx.startswith("CC") for spdx in licences):
        return "openly licensed (Creative Commons / public domain)"
    return "licensed from rights holders"


