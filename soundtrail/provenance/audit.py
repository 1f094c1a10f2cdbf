"""Audits: lineage answers for one id (``soundtrail audit model|asset|output``) and the whole report.

The report is one JSON-plain dict (:mod:`.audit_report`, the content) rendered three ways (:mod:`.audit_render`:
a self-contained HTML page, Markdown, JSON); :func:`write_report` builds, renders and writes it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from soundtrail.atomic import atomic_write_text
from soundtrail.licenses import license_name, requires_attribution
from soundtrail.provenance.audit_render import AuditConfig, render_html, render_json, render_markdown
from soundtrail.provenance.audit_report import (
    ASSET_FIELDS,
    BASE_MODEL_FIELDS,
    DERIVED_KINDS,
    build_report,
    license_url,
    pick,
)
from soundtrail.provenance.credentials import training_digest
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.lineage import (
    LineageError,
    asset_descendants,
    model_inputs,
    model_sources,
    training_license_summary,
)
from soundtrail.workspace import Workspace

REPORT_FORMATS = ("html", "md", "json")
MODEL_FIELDS = ("id", "kind", "path", "codec_id", "text_encoder", "steps", "created_at", "parent", "predecessor",
                "base_model", "init_reason")


def model_audit(ledger: Ledger, model_id: str) -> dict[str, Any]:
    """A model both ways: the codec, shards and assets behind it, its licence summary, and its outputs."""
    inputs = model_inputs(ledger, model_id)
    summary = training_license_summary(ledger, model_id)
    return {
        "model": pick(inputs["model"], MODEL_FIELDS),
        "codec": pick(inputs["codec"], ("id", "kind", "path", "created_at")),
        "parents": [pick(parent, ("id", "kind", "created_at", "init_reason")) for parent in inputs["parents"]],
        "base_model": pick(inputs["base_model"], BASE_MODEL_FIELDS),
        "shards": [pick(shard, ("id", "status", "shard_set", "rows", "path")) for shard in inputs["shards"]],
        "assets": [{**pick(asset, ASSET_FIELDS), "via": asset["via"]} for asset in model_sources(ledger, model_id)],
        "license_summary": summary,
        "training_digest": training_digest(summary),
        "outputs": [pick(row, ("id", "status", "verdict", "prompt", "path", "created_at"))
                    for row in ledger.rows("outputs", model_id=model_id)],
    }


def asset_audit(ledger: Ledger, asset_id: str) -> dict[str, Any]:
    """An asset both ways: where it came from and under which licence, and everything derived from it."""
    descendants = asset_descendants(ledger, asset_id)
    asset = ledger.get("assets", asset_id) or {}
    spdx = asset.get("license")
    return {
        "asset": pick(asset, ASSET_FIELDS),
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


_HEAD_META = re.compile(rb'<meta name="soundtrail-ledger-head" content="([0-9a-f]{64})">')


def report_covers(path: Path, head: str) -> bool:
    """Whether the HTML report at ``path`` was rendered from the ledger whose newest event has chain hash ``head``.

    What lets a scheduled run that changed nothing keep its report instead of verifying the whole chain again.
    """
    try:
        with Path(path).open("rb") as handle:
            found = _HEAD_META.search(handle.read(4096))  # the tag is in the page's <head>
    except FileNotFoundError:
        return False
    return found is not None and found.group(1).decode() == head


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
