"""The tokenize flow: plan against the ledger, encode asset groups on a pool of Ray actors, write the manifest last.

    plan (ledger vs manifest) ──groups──▶ encoder pool (Ray actors; one per GPU, else CPU actors) ──▶ finalize
                                            each actor: a GroupEncoder, codec loaded once,
                                            decoding group n+1 while it encodes group n

Only asset records go to an actor and only shard records come back: the audio is decoded inside the
actor that encodes it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from prefect import get_run_logger
from prefect.context import get_run_context

from soundtrail.codec.stage import resolve_codec, tokenize_plan
from soundtrail.codec.tokenize import (
    GroupEncoder,
    GroupResult,
    TokenizePlan,
    finalize_set,
    rewrite_without,
    unchanged_summary,
)
from soundtrail.config import TokenizeSettings
from soundtrail.flows.progress import reporter
from soundtrail.flows.runtime import accelerator_options, cluster_has_gpu
from soundtrail.flows.stage import Stage, ledger_refs, stage_flow
from soundtrail.provenance.ledger import Ledger
from soundtrail.workspace import Workspace

Group = list[dict[str, Any]]
RETRIES = 2  # a group whose actor died, or whose encode raised, is tried again this many times


def pool_shape(settings: TokenizeSettings, groups: int) -> tuple[int, dict[str, Any]]:
    """How many encoder actors to start, and the Ray resources of each.

    One actor per GPU when the cluster has GPUs. Otherwise ``settings.workers`` actors of one CPU (0: one per CPU
    of the cluster), and never more than the cluster has: an actor waiting for a CPU that the pool's own actors
    hold until the end would wait forever. One torch thread each, so a window's codes do not depend on how the
    CPUs are split. Never more actors than groups.
    """
    import ray

    resources = ray.cluster_resources()
    if cluster_has_gpu():
        return min(max(1, int(resources["GPU"])), groups), accelerator_options()
    cpus = max(1, int(resources.get("CPU", 1)))
    return min(settings.workers or cpus, cpus, groups), {**accelerator_options(1), "scheduling_strategy": "SPREAD"}


def encode_on_pool(plan: TokenizePlan, settings: TokenizeSettings) -> Iterator[tuple[Group, GroupResult]]:
    """Encode the plan's groups on a pool of encoder actors; yields each group with its result as it finishes.

    Groups go out as actors free up, so a slow group holds up one actor only. With every call an actor is
    also told the group it will get next, which it decodes while encoding this one. An actor that dies
    is restarted and its calls retried; the pool is gone when the iteration ends.
    """
    import ray

    if not plan.groups:
        return
    count, options = pool_shape(settings, len(plan.groups))
    encoder = ray.remote(GroupEncoder).options(max_restarts=RETRIES, max_task_retries=RETRIES, **options)
    actors = [encoder.remote(plan.codec_path, plan.set_dir, settings.segment_s, settings.batch_size)
              for _ in range(count)]
    waiting = deque(plan.groups)
    running: dict[Any, tuple[Any, Group, Group | None]] = {}

    def send(actor: Any, group: Group) -> None:
        then = waiting.popleft() if waiting else None
        running[actor.encode.options(retry_exceptions=True).remote(group, then)] = (actor, group, then)

    try:
        firsts = [waiting.popleft() for _ in actors]  # every actor gets a group before any is told its next one
        for actor, group in zip(actors, firsts, strict=True):
            send(actor, group)
        while running:
            [done], _ = ray.wait(list(running), num_returns=1)
            actor, group, then = running.pop(done)
            result = ray.get(done)
            if then is not None:
                send(actor, then)
            yield group, result
    finally:
        for actor in actors:
            ray.kill(actor)


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
    logger = get_run_logger()
    ws = Workspace(workspace)
    settings = ws.settings.tokenize
    plan = tokenize_plan(ws, resolve_codec(ws, codec_id))
    unchanged = unchanged_summary(plan)
    if unchanged is not None:
        logger.info("shard set %s is up to date", unchanged["shard_set"])
        return unchanged
    accepted = set(plan.accepted)
    new_entries = [entry for entry in (rewrite_without(plan.set_dir, stale, accepted) for stale in plan.stale)
                   if entry is not None]
    progress = reporter()
    progress.start("tokenize", sum(len(group) for group in plan.groups))
    skipped: list[dict[str, str]] = []
    for group, result in encode_on_pool(plan, settings):  # on the Ray session the stage flow started or joined
        if result.entry is not None:
            new_entries.append(result.entry)
            logger.info("shard %s: %d segments", result.entry["file"], result.entry["rows"])
        skipped.extend(result.skipped)
        progress.advance("tokenize", len(group))
    progress.finish("tokenize")
    run_id = str(get_run_context().flow_run.id)
    with Ledger(ws.ledger_url) as ledger:
        summary = finalize_set(ledger, plan, new_entries, settings.segment_s, run_id)
    logger.info("shard set %(shard_set)s: %(shards)d shards, %(rows)d segments", summary)
    return {**summary, "skipped": skipped}
