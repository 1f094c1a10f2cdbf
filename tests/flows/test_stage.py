"""A stage flow called on its own, as a deployment runs it: on Ray, with OpenLineage events and Prefect artifacts."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from unittest import mock

import pytest

from tests.flows.workspaces import drop_folder_workspace

pytestmark = pytest.mark.slow


def _lineage(workspace: Path) -> list[dict]:
    path = workspace / "reports" / "openlineage.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _artifacts(flow_run_id: uuid.UUID) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> dict[str, str]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
        return {artifact.key: str(artifact.data) for artifact in found}

    return asyncio.run(read())


def test_stage_flow_runs_on_ray_and_leaves_lineage_and_artifacts(tmp_path: Path, prefect_server) -> None:
    import ray

    from soundtrail.flows.ingest import ingest_flow

    workspace = drop_folder_workspace(tmp_path / "ws")
    with mock.patch.object(ray, "init", wraps=ray.init) as ray_init:
        state = ingest_flow(str(workspace), return_state=True)  # no paths: the workspace's configured inputs
    summary = state.result()
    assert ray_init.call_count == 1, "the stage flow starts Ray itself, as a deployment run needs"
    assert not ray.is_initialized(), "and stops the Ray it started"
    assert (summary["accepted"], summary["quarantined"]) == (2, 1)

    run_id = str(state.state_details.flow_run_id)
    events = [event for event in _lineage(workspace) if event["run"]["runId"] == run_id]
    assert [(event["eventType"], event["job"]["name"]) for event in events] == [("START", "ingest"),
                                                                                 ("COMPLETE", "ingest")]
    accepted = sorted(f"assets/{item['asset_id']}" for item in summary["items"] if item["status"] == "accepted")
    assert sorted(output["name"] for output in events[1]["outputs"]) == accepted
    assert [dataset["name"] for dataset in events[0]["inputs"]] == ["inputs/drop"]
    assert "parent" not in events[0]["run"]["facets"], "a stage run on its own has no parent run"

    artifacts = _artifacts(state.state_details.flow_run_id)
    assert set(artifacts) == {"ingest-summary", "ingest-items"}
    assert "2 accepted, 1 quarantined" in artifacts["ingest-summary"]
    assert "nc.flac" in artifacts["ingest-items"] and "quarantined" in artifacts["ingest-items"]


def test_stage_prerequisite_fails_before_ray_or_lineage(tmp_path: Path, prefect_server) -> None:
    import ray

    from soundtrail.flows.generate import generate_flow

    workspace = tmp_path / "empty"
    with mock.patch.object(ray, "init", wraps=ray.init) as ray_init, pytest.raises(ValueError, match="no ar model"):
        generate_flow(str(workspace), "ar", "a prompt", 1.0)
    assert ray_init.call_count == 0
    assert _lineage(workspace) == []
