"""Ingest, the driver: which files need reading, their analysis in batches, decisions in curator order as it streams.

::

    inputs ──plan──▶ unchanged (path, size and mtime as the ledger has them): the ledger's decision stands, unread
              └────▶ the rest, in curator order ──batches──▶ analyse (Ray workers; a file whose sha256 the
                     ledger already decided at its path stops after hashing) ──in order──▶ Catalog.admit_batch

Curator order (manifest line, then path) decides which of two copies is the original. The files are put in that
order *before* they are cut into batches, so each batch's records follow the previous batch's and are decided as
soon as those are: the driver holds the batches in flight and the one it records, never the whole ingest's
analyses, and a killed run has committed a prefix of the curator order, which its re-run finds decided.

After each batch's decisions, the consent terms its files state are recorded, and at the end of every run, however
few files it read, the assets whose recorded terms no longer allow training are revoked (:mod:`.expiry`).

A decision stands while the file (size and mtime, else its sha256) and what the decision read besides the file
(``decision_inputs``: its manifest row, the licence and ingest settings) are unchanged, and its status is final or
``quarantined`` (a copy quarantined with its original only while the original is still refused for the same
reason): such a file is not decoded again, so a scheduled run over an unchanged folder reads nothing. A file whose
row changed is read again even when its status is final: the status stays, but the row's consent terms are
recorded (and may revoke it), and the asset keeps the new digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from soundtrail.config import Settings
from soundtrail.ingest.analyze import manifest_problem_analyses
from soundtrail.ingest.catalog import FINAL_STATUSES, Catalog, IngestItem, still_refused_with
from soundtrail.ingest.expiry import record_terms, revoke_withdrawn
from soundtrail.ingest.manifest import InputFile, ManifestEntry, display_path, read_manifest, resolve_inputs
from soundtrail.provenance.ledger import Ledger, canonical_json
from soundtrail.workspace import Workspace

_LAST = 1 << 30  # files without a manifest row come after every row, in path order
_OPERATIONAL_KEYS = {"batch_size", "workers"}  # ingest settings that change how a run goes, not what it decides


@dataclass(frozen=True)
class AnalysisBatch:
    """Files for one analysis task; ``known`` maps a path to the sha256s whose ledger decision there stands."""

    items: list[InputFile]
    known: dict[str, list[str]] = field(default_factory=dict)


Analyser = Callable[[list[AnalysisBatch]], Iterator[list[dict[str, Any]]]]
"""Analyses the batches (anywhere: Ray workers, a process pool, in-process) and yields each batch's records, one
per file in the batch's order, batch after batch. It may start working when called: the driver calls it before
loading the duplicate index, so that both go on at once."""


@dataclass
class IngestPlan:
    """What a run reads. Ranks are positions in curator order."""

    to_analyse: list[tuple[int, InputFile]] = field(default_factory=list)
    ready: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # unchanged files, manifest problems
    known: dict[str, list[str]] = field(default_factory=dict)  # path -> standing sha256s, for files read again
    standing: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # asset id -> (status, reason)
    decision_inputs: dict[str, str] = field(default_factory=dict)  # path -> digest, for the files read


def ingest_inputs(workspace: Workspace, paths: list[str], manifest: str | None, analyse: Analyser,
                  flow_run_id: str | None = None, cpus: int = 1, today: dt.date | None = None) -> list[IngestItem]:
    """Ingest files and folders into the workspace's ledger; returns one item per file, in curator order.

    ``today`` (UTC by default) is the day licence expiry is judged on; the analyser must judge it the same way.
    """
    settings = workspace.settings
    manifest_result = read_manifest(Path(manifest)) if manifest else None
    inputs = resolve_inputs([Path(path) for path in paths], manifest_result)
    problems = manifest_problem_analyses(manifest_result, inputs) if manifest_result else []
    items: list[IngestItem] = []
    with Ledger(workspace.ledger_url) as ledger:
        plan = plan_ingest(ledger, inputs, problems, settings, manifest)
        files = [item for _, item in plan.to_analyse]
        batches = [AnalysisBatch(batch, {str(item.path): plan.known[str(item.path)] for item in batch
                                         if str(item.path) in plan.known})
                   for batch in split_batches(files, settings.ingest.batch_size, cpus)]
        analysed = _ranked(plan, batches, analyse(batches))
        records = (record for _, record in heapq.merge(plan.ready, analysed, key=itemgetter(0)))
        catalog: Catalog | None = None
        for chunk in _chunks(records, settings.ingest.batch_size):
            if all(record.get("known") for record in chunk):
                items.extend(IngestItem.standing(record) for record in chunk)
                continue
            catalog = catalog or Catalog(ledger, settings.ingest, settings.licenses)
            items.extend(catalog.admit_batch(chunk, flow_run_id))
            _report_disputed_originals(items, catalog.take_disputed_originals())
            record_terms(ledger, [record for record in chunk if not record.get("known")], flow_run_id)
        revoke_withdrawn(ledger, today, flow_run_id)
    return items


def _report_disputed_originals(items: list[IngestItem], disputed: dict[str, str]) -> None:
    """An original this run accepted and a later copy put in dispute ends the run disputed: its item says so."""
    for item in items if disputed else ():
        if item.asset_id in disputed:
            item.status, item.reason = "disputed", disputed[item.asset_id]


def plan_ingest(ledger: Ledger, inputs: list[InputFile], problems: list[dict[str, Any]], settings: Settings,
                manifest: str | None) -> IngestPlan:
    """Rank every input and manifest problem in curator order, and find the files whose decision stands."""
    units: list[tuple[tuple[int, str], InputFile | dict[str, Any]]] = [
        ((record["manifest_line"] or _LAST, record["path"]), record) for record in problems]
    units += [((item.entry.line if item.entry else _LAST, display_path(item.path)), item) for item in inputs]
    units.sort(key=itemgetter(0))
    digests = {str(item.path): decision_inputs(item.entry, settings, manifest) for item in inputs}
    decided = _decisions_at(ledger, {display_path(item.path) for item in inputs})  # the ledger keeps paths as text
    standing = {str(item.path): [row for row in decided.get(display_path(item.path), ())
                                 if _stands(ledger, row, digests[str(item.path)])] for item in inputs}
    # A copy quarantined with its original stands only while the original does: one decided again in this run
    # may be accepted now, and its copies must then be decided again after it.
    redecided = {row["id"] for item in inputs if not standing[str(item.path)]
                 for row in decided.get(display_path(item.path), ())}
    for rows in standing.values():
        rows[:] = [row for row in rows if row["status"] != "quarantined" or row["duplicate_of"] not in redecided]
    plan = IngestPlan()
    for rank, (_, unit) in enumerate(units):
        if isinstance(unit, dict):
            plan.ready.append((rank, unit))
            continue
        path = str(unit.path)
        rows = standing[path]
        unchanged = _unchanged(unit.path, rows)
        if unchanged is not None:
            plan.ready.append((rank, {"known": True, "path": display_path(unit.path), "asset_id": unchanged["id"],
                                      "status": unchanged["status"], "reason": unchanged["reason"]}))
            continue
        plan.to_analyse.append((rank, unit))
        plan.decision_inputs[path] = digests[path]
        if rows:
            plan.known[path] = [row["sha256"] for row in rows]
            plan.standing.update({row["id"]: (row["status"], row["reason"]) for row in rows})
    return plan


def decision_inputs(entry: ManifestEntry | None, settings: Settings, manifest: str | None) -> str:
    """Digest of everything a file's decision reads besides the file: its manifest row and the settings."""
    statement = {
        "manifest": manifest, "row": entry.to_dict() if entry else None,
        "licenses": settings.licenses.model_dump(mode="json"),
        "ingest": settings.ingest.model_dump(mode="json", exclude=_OPERATIONAL_KEYS),
    }
    return hashlib.sha256(canonical_json(statement).encode("utf-8")).hexdigest()


_DECISION_COLUMNS = ("id", "path", "sha256", "size_bytes", "mtime_ns", "status", "reason", "decision_inputs",
                     "duplicate_of")


def _decisions_at(ledger: Ledger, paths: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The ledger's asset rows at ``paths`` (one pass over the assets, keeping only those)."""
    decided: dict[str, list[dict[str, Any]]] = {}
    for values in ledger.scan("assets", _DECISION_COLUMNS):
        row = dict(zip(_DECISION_COLUMNS, values, strict=True))
        if row["path"] in paths:
            decided.setdefault(row["path"], []).append(row)
    return decided


def _stands(ledger: Ledger, row: dict[str, Any], digest: str) -> bool:
    """Whether deciding the file behind ``row`` again would give ``row``'s decision (see the module docstring)."""
    if not row["sha256"] or row["decision_inputs"] != digest:
        return False  # never read (a transient error, a rejected manifest row), or its statement changed
    if row["status"] in FINAL_STATUSES:
        return True
    if row["status"] != "quarantined":
        return False
    return not row["duplicate_of"] or still_refused_with(row["reason"], ledger.get("assets", row["duplicate_of"]))


def _unchanged(path: Path, standing: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not standing:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return next((row for row in standing
                 if (row["size_bytes"], row["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns)), None)


def _ranked(plan: IngestPlan, batches: list[AnalysisBatch],
            results: Iterable[list[dict[str, Any]]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each analysed record with its file's rank; a file found known gets its standing decision."""
    ranks = (rank for rank, _ in plan.to_analyse)
    for batch, records in zip(batches, results, strict=True):
        for item, record in zip(batch.items, records, strict=True):
            if record.get("known"):
                record["status"], record["reason"] = plan.standing[record["asset_id"]]
            else:
                record["decision_inputs"] = plan.decision_inputs[str(item.path)]
            yield next(ranks), record


def _chunks(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def split_batches(inputs: list[InputFile], batch_size: int, cpus: int) -> list[list[InputFile]]:
    """Batches of at most ``batch_size`` files, at least two per CPU while the files last, sizes within one.

    A task costs a few Prefect API calls, so files travel in batches; but a fixed batch size would leave most
    of a cluster idle on a small ingest (28 files in batches of 16 keep two CPUs busy, whatever the cluster),
    and a short last batch leaves its CPU's neighbours waiting at the end.
    """
    if not inputs:
        return []
    count = min(len(inputs), max(-(-len(inputs) // batch_size), 2 * cpus))
    size, larger = divmod(len(inputs), count)
    bounds = [index * size + min(index, larger) for index in range(count + 1)]
    return [inputs[start:stop] for start, stop in itertools.pairwise(bounds)]
