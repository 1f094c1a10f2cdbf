"""OpenLineage run events for every pipeline stage, so lineage tools (Marquez, DataHub, ...) see the pipeline.

The ledger stays the record auditors rely on; these events mirror it in the industry format. Each
stage run emits START, then COMPLETE or FAIL, naming what it read and wrote as datasets::

    job   namespace "soundtrail"             name "ingest" | "tokenize" | "train.ar" | ...
    run   runId (UUID)                       facets: processing_engine, parent (the pipeline run),
                                                     errorMessage (FAIL only)
    datasets namespace "soundtrail://<workspace>"
             names    assets/<asset id>   shards/<set id>   models/<model id>   outputs/<output id>
             facets   version (a sha256, when the caller knows one)

Events go to ``workspace/reports/openlineage.jsonl`` (one JSON event per line, appended) by
default, or to an OpenLineage HTTP endpoint (``/api/v1/lineage``) when configured. If the HTTP
endpoint fails and a file is configured too, the event is kept in the file instead of lost:
lineage must never stop a pipeline run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import logging
import traceback
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    RunFacet,
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    parent_run,
    processing_engine_run,
)
from openlineage.client.transport import Transport
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport

log = logging.getLogger(__name__)

LINEAGE_FILE = "openlineage.jsonl"
DATASET_KINDS = ("assets", "shards", "models", "outputs")
# Run ids that are not UUIDs (ledger ids) map to stable UUIDs in this namespace.
_RUN_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://openlineage.io/soundtrail/run")


@dataclass(frozen=True)
class DatasetRef:
    """A dataset as OpenLineage names it: ``<kind>/<id>`` in the workspace's namespace."""

    name: str
    version: str | None = None

    @classmethod
    def of(cls, kind: str, identifier: str, version: str | None = None) -> DatasetRef:
        if kind not in DATASET_KINDS:
            raise ValueError(f"dataset kind {kind!r} is not one of {', '.join(DATASET_KINDS)}")
        return cls(f"{kind}/{identifier}", version)


@dataclass(frozen=True)
class RunRef:
    """A stage run another run can name as its parent."""

    stage: str
    run_id: str


@dataclass
class StageRun:
    """A running stage: outputs found while it runs are added here and reported on COMPLETE."""

    stage: str
    run_id: str
    outputs: list[DatasetRef] = field(default_factory=list)

    @property
    def ref(self) -> RunRef:
        return RunRef(self.stage, self.run_id)


def run_uuid(run_id: str) -> str:
    """OpenLineage run ids are UUIDs: a UUID passes through, any other id maps to a stable UUIDv5."""
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return str(uuid.uuid5(_RUN_ID_NAMESPACE, run_id))


class LineageEmitter:
    """Emits a stage's START/COMPLETE/FAIL events through a file or HTTP OpenLineage transport."""

    def __init__(self, namespace: str = "soundtrail", transport: Literal["file", "http"] = "file", *,
                 file_path: Path | None = None, url: str | None = None, api_key: str | None = None,
                 dataset_namespace: str = "soundtrail://workspace", http_retries: int = 3) -> None:
        if transport == "file" and file_path is None:
            raise ValueError("the file transport needs file_path")
        if transport == "http" and not url:
            raise ValueError("the http transport needs url")
        self.namespace = namespace
        self.dataset_namespace = dataset_namespace
        self.file_path = Path(file_path) if file_path is not None else None
        self._fallback = _file_transport(self.file_path) if transport == "http" and self.file_path else None
        chosen = _file_transport(self.file_path) if transport == "file" else _http_transport(url, api_key, http_retries)
        self._client = OpenLineageClient(transport=chosen)
        self._engine = processing_engine_run.ProcessingEngineRunFacet(
            version=importlib.metadata.version("soundtrail"), name="soundtrail",
            openlineageAdapterVersion=importlib.metadata.version("openlineage-python"))

    @classmethod
    def for_workspace(cls, root: Path, *, namespace: str = "soundtrail", transport: Literal["file", "http"] = "file",
                      url: str = "") -> LineageEmitter:
        """The workspace's emitter: ``reports/openlineage.jsonl``, or HTTP with that file as the fallback."""
        root = Path(root)
        return cls(namespace, transport, file_path=root / "reports" / LINEAGE_FILE, url=url or None,
                   dataset_namespace=f"soundtrail://{root.name}")

    def emit_stage(self, stage: str, run_id: str, inputs: Sequence[DatasetRef], outputs: Sequence[DatasetRef],
                   state: RunState | str, *, parent: RunRef | None = None, error: BaseException | None = None,
                   run_facets: Mapping[str, RunFacet] | None = None) -> RunEvent:
        """Emit one event for ``stage`` and return it; ``state`` is START, COMPLETE, FAIL, ABORT, ..."""
        facets: dict[str, RunFacet] = {"processing_engine": self._engine, **(run_facets or {})}
        if parent is not None:
            facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=run_uuid(parent.run_id)),
                job=parent_run.Job(namespace=self.namespace, name=parent.stage))
        if error is not None:
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=f"{type(error).__name__}: {error}", programmingLanguage="PYTHON",
                stackTrace="".join(traceback.format_exception(error)))
        event = RunEvent(
            eventType=RunState(state) if isinstance(state, str) else state,
            eventTime=dt.datetime.now(dt.UTC).isoformat(),
            run=Run(runId=run_uuid(run_id), facets=facets),
            job=Job(namespace=self.namespace, name=stage, facets={"jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="SOUNDTRAIL", jobType="STAGE")}),
            inputs=[InputDataset(self.dataset_namespace, ref.name, facets=_dataset_facets(ref)) for ref in inputs],
            outputs=[OutputDataset(self.dataset_namespace, ref.name, facets=_dataset_facets(ref)) for ref in outputs],
        )
        self._emit(event)
        return event

    @contextlib.contextmanager
    def stage_run(self, stage: str, inputs: Sequence[DatasetRef], *, run_id: str | None = None,
                  parent: RunRef | None = None) -> Iterator[StageRun]:
        """START now; COMPLETE with the outputs added to the yielded run, or FAIL (re-raising) on error."""
        run = StageRun(stage, run_id or str(uuid.uuid4()))
        self.emit_stage(stage, run.run_id, inputs, [], RunState.START, parent=parent)
        try:
            yield run
        except BaseException as exc:
            self.emit_stage(stage, run.run_id, inputs, run.outputs, RunState.FAIL, parent=parent, error=exc)
            raise
        self.emit_stage(stage, run.run_id, inputs, run.outputs, RunState.COMPLETE, parent=parent)

    def close(self) -> None:
        self._client.close()

    def _emit(self, event: RunEvent) -> None:
        try:
            self._client.emit(event)
        except Exception as exc:  # a lineage server outage must not fail the pipeline
            if self._fallback is None:
                raise
            log.warning("OpenLineage HTTP emit failed (%s); event kept in %s", exc, self.file_path)
            self._fallback.emit(event)


def _file_transport(path: Path) -> FileTransport:
    """Append one JSON event per line to ``path`` (the transport's append mode, not timestamped files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileTransport(FileConfig(log_file_path=str(path), append=True))


def _http_transport(url: str | None, api_key: str | None, retries: int) -> Transport:
    config: dict = {"url": url, "endpoint": "api/v1/lineage", "timeout": 5.0,
                    "retry": {"total": retries, "connect": retries, "read": retries, "backoff_factor": 0.3,
                              "status_forcelist": [500, 502, 503, 504], "allowed_methods": ["POST"]}}
    if api_key:
        config["auth"] = {"type": "api_key", "apiKey": api_key}
    return HttpTransport(HttpConfig.from_dict(config))


def _dataset_facets(ref: DatasetRef) -> dict:
    if ref.version is None:
        return {}
    return {"version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=ref.version)}
