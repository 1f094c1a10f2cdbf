"""The tokenize flow: plan against the ledger, encode asset groups on Ray, write the manifest last.

    plan (ledger vs manifest) ──groups──▶ encode_group (Ray; GPU when present) ──▶ finalize (manifest, ledger)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.context import get_run_context
from prefect.futures import as_completed

from soundtrail.codec.stage import resolve_codec
from soundtrail.codec.tokenize import encode_group, finalize_set, plan_tokenize, rewrite_without
from soundtrail.flows.progress import reporter
from soundtrail.flows.runtime import accelerator_options
from soundtrail.flows.stage import Stage, ledger_refs, stage_flow
from soundtrail.provenance.ledger import Ledger
from soundtrail.workspace import Workspace


@task(name="encode-group", retries=2, retry_delay_seconds=2)
def encode_group_task(set_dir: str, codec_path: str, assets: list[dict[str, Any]], segment_s: float,
                      batch_size: int) -> dict[str, Any]:
    result = encode_group(set_dir, codec_path, assets, segment_s, batch_size)
    return {"entry": result.entry, "skipped": result.skipped}


TOKENIZE = Stage(
    "tokenize",
    inputs=lambda ws, params: ledger_refs(ws, "assets", status="accepted"),
    outputs=lambda ws, result: ledger_refs(ws, "shards", status="current"),
    summary=lambda r: [f"- shard set `{r['shard_set']}`: {r['rows']} segments in {r['shards']} shards "
                       f"({r['new_shards']} new, {r['superseded']} superseded)"],
)


@stage_flow(TOKENIZE)
def tokenize_flow(workspace: str | None = None, codec_id: str | None = None) -> dict[str, Any]:
    """Encode every accepted asset not yet in a current shard; drop revoked ones from the set."""
    from prefect_ray.context import remote_options

    logger = get_run_logger()
    ws = Workspace(workspace)
    settings = ws.settings.tokenize
    codec = resolve_codec(ws, codec_id)
    with Ledger(ws.ledger_url) as ledger:
        plan = plan_tokenize(ledger, ws.path("shards"), codec.path, codec.id, settings.segment_s,
                             settings.assets_per_shard)
    if plan.nothing_to_do and plan.keep:
        logger.info("shard set %s is up to date", Path(plan.set_dir).name)
        return {"shard_set": Path(plan.set_dir).name, "shards": len(plan.keep), "new_shards": 0, "superseded": 0,
                "rows": sum(entry["rows"] for entry in plan.keep), "skipped": []}
    accepted = set(plan.accepted)
    new_entries = [entry for entry in (rewrite_without(Path(plan.set_dir), stale, accepted) for stale in plan.stale)
                   if entry is not None]
    progress = reporter()
    progress.start("tokenize", sum(len(group) for group in plan.groups))
    with remote_options(**accelerator_options()):
        futures = {encode_group_task.submit(plan.set_dir, plan.codec_path, group, settings.segment_s,
                                            settings.batch_size): len(group) for group in plan.groups}
    skipped: list[dict[str, str]] = []
    for future in as_completed(list(futures)):
        result = future.result()
        if result["entry"] is not None:
            new_entries.append(result["entry"])
        skipped.extend(result["skipped"])
        progress.advance("tokenize", futures[future])
    progress.finish("tokenize")
    run_id = str(get_run_context().flow_run.id)
    with Ledger(ws.ledger_url) as ledger:
        summary = finalize_set(ledger, plan, new_entries, settings.segment_s, run_id)
    logger.info("shard set %(shard_set)s: %(shards)d shards, %(rows)d segments", summary)
    return {**summary, "skipped": skipped}
