"""Audit reports: what the corpus holds, what each model was trained on, what was released.

One report, three renderings of the same content (a JSON-plain dict built by :func:`build_report`):

    html  one self-contained page for a reader: inline CSS, spectrograms (PNG) and players (WAV) as
          ``data:`` URIs, a Content-Security-Policy that forbids every fetch, so it opens offline
          and can be mailed to a rights holder as one file
    md    the same tables as Markdown, for a repository or a ticket
    json  the dict itself, for tools

Sections: the licence table; the credits list the CC BY family requires; the assets that did not
make it into training (quarantined, duplicate, blocked, revoked) with their reasons; takedowns;
every codec and model with its shards, assets and licences and where its weights began (a parent it
continued from, a base model it was fine-tuned from); the base models admitted or refused, with their
licences and training-data statements; the release log with screening
verdicts and watermark payloads; and a summary of the training content shaped after the EU AI
Office's template for the public summary required by Article 53(1)(d) of the AI Act.

Every string that came from a user (titles, prompts, reasons, paths) is escaped: HTML through
Jinja2's autoescape, Markdown through :func:`markdown_escape`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from soundtrail import __version__
from soundtrail.atomic import atomic_write_text, sha256_file
from soundtrail.licenses import license_name, requires_attribution, spdx_id
from soundtrail.provenance.credentials import training_digest
from soundtrail.provenance.ledger import Ledger, utc_now
from soundtrail.provenance.lineage import (
    NO_LICENSE,
    LineageError,
    asset_descendants,
    attribution_entry,
    base_model_summary,
    license_breakdown,
    model_inputs,
    model_sources,
    training_license_summary,
)
from soundtrail.workspace import Workspace

REPORT_FORMATS = ("html", "md", "json")
DERIVED_KINDS = ("shards", "codecs", "models", "outputs")
EXCLUDED_STATUSES = ("quarantined", "duplicate", "blocked", "revoked")
ASSET_FIELDS = ("id", "path", "status", "reason", "license", "rights_holder", "attribution", "title", "duration_s",
                "duplicate_of", "source_id", "ingested_at")
MATCH_FIELDS = ("asset_id", "method", "score", "query_offset_s", "asset_offset_s", "duration_s")
MODEL_FIELDS = ("id", "kind", "path", "codec_id", "text_encoder", "steps", "created_at", "parent", "predecessor",
                "base_model", "init_reason")
BASE_MODEL_FIELDS = ("id", "name", "path", "architecture", "license", "license_source", "training_data", "status",
                     "policy", "reason", "recorded_at")
AUDIO_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".opus": "audio/ogg",
               ".mp3": "audio/mpeg"}
_TEMPLATES = Path(__file__).parent / "templates"
TrainedOn = dict[str, dict[str, list[str]]]  # asset id -> {"models": [...], "codecs": [...]}


@dataclass
class AuditConfig:
    """How much media goes into the HTML page (everything else is the same in every format)."""

    embed_limit_bytes: int = 32 * 1024 * 1024  # larger released files are listed, not embedded
    max_media: int = 50  # the newest released outputs get a spectrogram and a player; older ones are listed
    spectrogram_max_s: float = 30.0  # only the start of a long output is drawn
    spectrogram_inches: tuple[float, float] = (7.0, 2.2)
    spectrogram_dpi: int = 96


# ---------------------------------------------------------------------------------------------
# Lineage answers for one id (``soundtrail audit model|asset|output``)


def _pick(row: dict[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any] | None:
    return None if row is None else {key: row.get(key) for key in keys}


def model_audit(ledger: Ledger, model_id: str) -> dict[str, Any]:
    """A model both ways: the codec, shards and assets behind it, its licence summary, and its outputs."""
    inputs = model_inputs(ledger, model_id)
    summary = training_license_summary(ledger, model_id)
    return {
        "model": _pick(inputs["model"], MODEL_FIELDS),
        "codec": _pick(inputs["codec"], ("id", "kind", "path", "created_at")),
        "parents": [_pick(parent, ("id", "kind", "created_at", "init_reason")) for parent in inputs["parents"]],
        "base_model": _pick(inputs["base_model"], BASE_MODEL_FIELDS),
        "shards": [_pick(shard, ("id", "status", "shard_set", "rows", "path")) for shard in inputs["shards"]],
        "assets": [{**_pick(asset, ASSET_FIELDS), "via": asset["via"]} for asset in model_sources(ledger, model_id)],
        "license_summary": summary,
        "training_digest": training_digest(summary),
        "outputs": [_pick(row, ("id", "status", "verdict", "prompt", "path", "created_at"))
                    for row in ledger.rows("outputs", model_id=model_id)],
    }


def asset_audit(ledger: Ledger, asset_id: str) -> dict[str, Any]:
    """An asset both ways: where it came from and under which licence, and everything derived from it."""
    descendants = asset_descendants(ledger, asset_id)
    asset = ledger.get("assets", asset_id) or {}
    spdx = asset.get("license")
    return {
        "asset": _pick(asset, ASSET_FIELDS),
        "source": ledger.get("sources", asset["source_id"]) if asset.get("source_id") else None,
        "licence": {"id": spdx, "name": license_name(spdx), "url": license_url(spdx),
                    "requires_attribution": requires_attribution(spdx)} if spdx else None,
        "takedowns": ledger.rows("takedowns", asset_id=asset_id),
        **{kind: descendants[kind] for kind in DERIVED_KINDS},
    }


def output_audit(ledger: Ledger, output_id: str) -> dict[str, Any]:
    """An output back to its model and through it to every licensed source."""
    output = ledger.get("outputs", output_id)
    if output is None:
        raise LineageError(f"no output {output_id!r} in the ledger")
    if not output.get("model_id"):
        raise LineageError(f"output {output_id!r} names no model")
    model = model_audit(ledger, output["model_id"])
    return {"output": {key: value for key, value in output.items() if key != "credential"},
            "credential": output.get("credential"), **model}


# ---------------------------------------------------------------------------------------------
# Licences for display


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


# ---------------------------------------------------------------------------------------------
# The report


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
    blocklist = [_pick(row, ("id", "path", "reason", "duration_s", "added_at")) for row in ledger.rows("blocklist")]
    models = [_model_row(ledger, corpus, model) for model in corpus.models]
    digests = {model["id"]: model["training_digest"] for model in models}
    outputs = sorted(ledger.rows("outputs"), key=lambda row: (row.get("created_at") or "", row["id"]))
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
        "excluded": [_pick(row, ASSET_FIELDS) for row in corpus.assets.values() if row["status"] in EXCLUDED_STATUSES],
        "blocklist": blocklist,
        "takedowns": [_takedown_row(row) for row in ledger.rows("takedowns")],
        "codecs": [{**_pick(codec, ("id", "kind", "path", "created_at")), "assets": len(codec.get("assets") or [])}
                   for codec in corpus.codecs],
        "models": models,
        "base_models": [_pick(row, BASE_MODEL_FIELDS) for row in ledger.rows("base_models")],
        "releases": [_release_row(workspace, row, digests) for row in outputs],
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
        entries.append({**entry, "license_name": license_name(entry["license"]),
                        "license_url": license_url(entry["license"]), "status": asset["status"],
                        **trained_on.get(asset["id"], {"models": [], "codecs": []})})
    return entries


def _takedown_row(row: dict[str, Any]) -> dict[str, Any]:
    affected = row.get("affected") or {}
    derived = {kind: [item["id"] for item in affected.get(kind, [])] for kind in DERIVED_KINDS}
    return {**_pick(row, ("id", "asset_id", "reason", "created_at")), **derived}


def _model_row(ledger: Ledger, corpus: _Corpus, model: dict[str, Any]) -> dict[str, Any]:
    assets = corpus.model_assets[model["id"]]
    shards = [corpus.shards[shard_id] for shard_id in sorted(model.get("shards") or [])]
    summary = training_license_summary(ledger, model["id"])
    return {
        **_pick(model, ("id", "kind", "created_at", "codec_id", "text_encoder", "steps", "parent", "predecessor",
                        "base_model", "init_reason")),
        "shards": len(shards),
        "superseded_shards": sum(1 for shard in shards if shard["status"] == "superseded"),
        "assets": len(assets),
        "duration_s": summary["duration_s"],
        "licenses": {spdx: {**entry, "name": license_name(spdx)} for spdx, entry in summary["licenses"].items()},
        "rights_holders": summary["rights_holders"],
        "revoked_assets": [asset["id"] for asset in assets if asset["status"] == "revoked"],
        "training_digest": training_digest(summary),
    }


def resolve_output_path(workspace: Workspace, path: str | None) -> Path | None:
    if not path:
        return None
    candidate = Path(path)
    return candidate if candidate.is_absolute() else workspace.root / candidate


def _file_state(path: Path | None, expected_sha256: str | None) -> str | None:
    """``ok``, ``missing`` or ``changed`` (its bytes are not what was released); None if no file is named."""
    if path is None:
        return None
    if not path.is_file():
        return "missing"
    return "changed" if expected_sha256 and sha256_file(path) != expected_sha256 else "ok"


def _release_row(workspace: Workspace, row: dict[str, Any], digests: dict[str, str]) -> dict[str, Any]:
    """One line of the release log; ``credential_digest_matches`` compares the credential with the ledger."""
    screening = row.get("screening") or {}
    matches = sorted(screening.get("matches") or [], key=lambda match: -(match.get("score") or 0.0))
    credential = row.get("credential") or {}
    expected = row.get("sha256") or credential.get("signed_sha256")
    digest_matches = None
    if credential.get("training_digest") and row.get("model_id") in digests:
        digest_matches = credential["training_digest"] == digests[row["model_id"]]
    return {
        **_pick(row, ("id", "model_id", "created_at", "prompt", "seed", "seconds", "status", "verdict",
                      "watermark_payload", "path", "sha256")),
        "matches": len(matches),
        "top_match": _pick(matches[0], MATCH_FIELDS) if matches else None,
        "file": _file_state(resolve_output_path(workspace, row.get("path")), expected),
        "credential": _pick(credential, ("manifest_label", "signer", "alg", "training_digest")) if credential
        else None,
        "credential_digest_matches": digest_matches,
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
    segments = sum(corpus.shards[shard_id]["rows"] or 0 for model in corpus.models
                   for shard_id in set(model.get("shards") or []))
    bases = {model["base_model"] for model in corpus.models if model.get("base_model")}
    return {
        "template": "EU AI Office template for the public summary of training content (AI Act, Art. 53(1)(d))",
        "general": {
            "provider": f"operator of the soundtrail workspace {workspace.root.name!r}",
            "models": [_pick(model, ("id", "kind", "created_at")) for model in corpus.models],
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
                "protected works (the blocklist) block matching files and excerpts; near-copies of accepted files "
                "are kept out as duplicates."),
            "quarantined": statuses.get("quarantined", 0),
            "duplicates": statuses.get("duplicate", 0),
            "blocked": statuses.get("blocked", 0),
            "revoked": statuses.get("revoked", 0),
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


# ---------------------------------------------------------------------------------------------
# Rendering


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#])")


def markdown_escape(value: Any) -> str:
    """A value as inert Markdown text: one line, every character that could start markup escaped."""
    if value is None:
        return ""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def _markdown_link(text: str, url: str | None) -> Markup:
    """``[text](url)`` for a licence page (urls come from :func:`license_url`, never from users)."""
    return Markup(f"[{markdown_escape(text)}]({url})" if url else markdown_escape(text))


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _finalize_html(value: Any) -> Any:
    return "" if value is None else value


def _finalize_markdown(value: Any) -> Any:
    return value if isinstance(value, Markup) else markdown_escape(value)


def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=autoescape, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        finalize=_finalize_html if autoescape else _finalize_markdown,
    )
    env.filters["md_link"] = _markdown_link
    env.filters["seconds"] = _seconds
    env.filters["basename"] = lambda value: Path(value).name
    env.filters["short"] = lambda value, n=12: "" if value is None else str(value)[:n]
    env.filters["tojson_pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True, default=str)
    return env


def render_markdown(report: dict[str, Any]) -> str:
    return _environment(autoescape=False).get_template("audit.md.j2").render(r=report)


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False, ensure_ascii=False, allow_nan=False) + "\n"


def render_html(report: dict[str, Any], workspace: Workspace, config: AuditConfig | None = None) -> str:
    """The self-contained page: released outputs get a spectrogram and a player as ``data:`` URIs."""
    config = config or AuditConfig()
    released = [row for row in report["releases"] if row["status"] == "released" and row["file"] == "ok"]
    newest = released[-config.max_media:] if config.max_media > 0 else []
    media = {row["id"]: _release_media(resolve_output_path(workspace, row["path"]), config) for row in newest}
    script = (_TEMPLATES / "media_check.js").read_text()
    script_hash = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return _environment(autoescape=True).get_template("audit.html.j2").render(
        r=report, media=media, script=Markup(script), script_hash=script_hash,
        css=Markup((_TEMPLATES / "audit.css").read_text()))


def _release_media(path: Path, config: AuditConfig) -> dict[str, str | None]:
    """``{"spectrogram": data URI | None, "audio": data URI | None, "problem": text | None}`` for one file."""
    from soundtrail.audio import AudioError, decode, mono

    try:
        audio, rate = decode(path)
    except AudioError as exc:
        return {"spectrogram": None, "audio": None, "problem": f"cannot decode: {exc}"}
    spectrogram = _data_uri("image/png", _spectrogram_png(mono(audio)[: int(config.spectrogram_max_s * rate)],
                                                         rate, config))
    size = path.stat().st_size
    if size > config.embed_limit_bytes:
        return {"spectrogram": spectrogram, "audio": None,
                "problem": f"{size / 2**20:.1f} MiB is over the {config.embed_limit_bytes / 2**20:.0f} MiB embed limit"}
    mime = AUDIO_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return {"spectrogram": spectrogram, "audio": _data_uri(mime, path.read_bytes()), "problem": None}


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _spectrogram_png(signal: Any, rate: int, config: AuditConfig) -> bytes:
    """A log-magnitude spectrogram drawn with matplotlib's Agg canvas (no pyplot, no global state)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=config.spectrogram_inches, dpi=config.spectrogram_dpi, layout="constrained")
    axes = figure.subplots()
    nfft = 1024 if rate >= 22_050 else 512
    axes.specgram(signal, NFFT=nfft, Fs=rate, noverlap=nfft * 3 // 4, cmap="magma", scale="dB")
    axes.set_xlabel("time (s)")
    axes.set_ylabel("frequency (Hz)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_report(workspace: Workspace, fmt: str = "html", out: Path | None = None,
                 config: AuditConfig | None = None) -> Path:
    """Build the report and write it atomically to ``out`` or ``workspace/reports/audit.<fmt>``."""
    if fmt not in REPORT_FORMATS:
        raise ValueError(f"report format must be one of {', '.join(REPORT_FORMATS)}, not {fmt!r}")
    with Ledger(workspace.ledger_url) as ledger:
        report = build_report(workspace, ledger)
    if fmt == "html":
        text = render_html(report, workspace, config)
    else:
        text = render_json(report) if fmt == "json" else render_markdown(report)
    target = Path(out) if out is not None else workspace.path("reports") / f"audit.{fmt}"
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, text)
    return target
