"""OpenLineage events: START/COMPLETE/FAIL per stage, dataset names, file and HTTP transports."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from soundtrail.provenance.lineage_events import DatasetRef, LineageEmitter, RunRef, run_uuid

# The parts of the OpenLineage 2-0-2 RunEvent schema (openlineage.io/spec/2-0-2/OpenLineage.json)
# a consumer relies on; the package does not ship the schema file itself.
_FACET = {"type": "object", "required": ["_producer", "_schemaURL"]}
_DATASET = {"type": "object", "required": ["namespace", "name"],
            "properties": {"namespace": {"type": "string"}, "name": {"type": "string"},
                           "facets": {"type": "object", "additionalProperties": _FACET}}}
RUN_EVENT_SCHEMA = {
    "type": "object",
    "required": ["eventTime", "producer", "schemaURL", "eventType", "run", "job"],
    "properties": {
        "eventType": {"enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
        "producer": {"type": "string", "pattern": "^[a-z]+://"},
        "schemaURL": {"type": "string", "pattern": "^https://openlineage.io/spec/.*RunEvent$"},
        "run": {"type": "object", "required": ["runId"],
                "properties": {"facets": {"type": "object", "additionalProperties": _FACET}}},
        "job": {"type": "object", "required": ["namespace", "name"],
                "properties": {"facets": {"type": "object", "additionalProperties": _FACET}}},
        "inputs": {"type": "array", "items": _DATASET},
        "outputs": {"type": "array", "items": _DATASET},
    },
}


def _events(path: Path) -> list[dict]:
    events = [json.loads(line) for line in path.read_text().splitlines()]
    for event in events:
        jsonschema.validate(event, RUN_EVENT_SCHEMA)
        assert str(uuid.UUID(event["run"]["runId"])) == event["run"]["runId"]
        assert dt.datetime.fromisoformat(event["eventTime"]).tzinfo is not None
    return events


def _names(datasets: list[dict]) -> list[str]:
    return [dataset["name"] for dataset in datasets]


def test_stage_run_emits_start_then_complete_with_datasets(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    emitter = LineageEmitter.for_workspace(workspace)
    assets = [DatasetRef.of("assets", "a1"), DatasetRef.of("assets", "a2")]
    with emitter.stage_run("tokenize", assets) as run:
        run.outputs.append(DatasetRef.of("shards", "set-1", version="sha256:abc"))
    emitter.close()

    start, complete = _events(workspace / "reports" / "openlineage.jsonl")
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == complete["run"]["runId"] == run.run_id
    assert complete["job"]["namespace"] == "soundtrail" and complete["job"]["name"] == "tokenize"
    assert complete["job"]["facets"]["jobType"]["processingType"] == "BATCH"
    assert _names(start["inputs"]) == _names(complete["inputs"]) == ["assets/a1", "assets/a2"]
    assert start["outputs"] == [] and _names(complete["outputs"]) == ["shards/set-1"]
    assert {d["namespace"] for d in complete["inputs"] + complete["outputs"]} == {"soundtrail://ws"}
    assert complete["outputs"][0]["facets"]["version"]["datasetVersion"] == "sha256:abc"
    assert complete["run"]["facets"]["processing_engine"]["name"] == "soundtrail"


def test_failure_is_reported_and_reraised_and_parents_link(tmp_path: Path) -> None:
    path = tmp_path / "lineage.jsonl"
    emitter = LineageEmitter("soundtrail", "file", file_path=path, dataset_namespace="soundtrail://t")
    pipeline = RunRef("pipeline", "ledger-run-7")
    with pytest.raises(RuntimeError, match="out of memory"), \
            emitter.stage_run("train.ar", [DatasetRef.of("shards", "set-1")], parent=pipeline):
        raise RuntimeError("out of memory")

    start, fail = _events(path)
    assert fail["eventType"] == "FAIL"
    error = fail["run"]["facets"]["errorMessage"]
    assert "out of memory" in error["message"] and "RuntimeError" in error["stackTrace"]
    assert error["programmingLanguage"] == "PYTHON"
    for event in (start, fail):
        parent = event["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == run_uuid("ledger-run-7")
        assert (parent["job"]["namespace"], parent["job"]["name"]) == ("soundtrail", "pipeline")


def test_emit_stage_appends_and_accepts_state_names(tmp_path: Path) -> None:
    path = tmp_path / "lineage.jsonl"
    for _ in range(2):
        emitter = LineageEmitter(file_path=path)
        emitter.emit_stage("generate", "out-1", [DatasetRef.of("models", "ar-1")],
                           [DatasetRef.of("outputs", "out-1")], "COMPLETE")
    events = _events(path)
    assert len(events) == 2 and all(event["eventType"] == "COMPLETE" for event in events)
    assert events[0]["run"]["runId"] == run_uuid("out-1")


def test_run_ids_and_dataset_kinds() -> None:
    fixed = uuid.uuid4()
    assert run_uuid(str(fixed).upper()) == str(fixed)
    assert run_uuid("run-1") == run_uuid("run-1") != run_uuid("run-2")
    uuid.UUID(run_uuid("run-1"))
    with pytest.raises(ValueError, match="dataset kind"):
        DatasetRef.of("tracks", "x")
    with pytest.raises(ValueError, match="file_path"):
        LineageEmitter(transport="file")


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, str | None, dict]] = []
    status = 201

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append((self.path, self.headers.get("Authorization"), body))
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[tuple[str, type[_Collector]]]:
    handler = type("Collector", (_Collector,), {"received": [], "status": 201})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_http_transport_posts_to_the_lineage_endpoint(server: tuple[str, type[_Collector]], tmp_path: Path) -> None:
    url, handler = server
    emitter = LineageEmitter.for_workspace(tmp_path / "ws", transport="http", url=url)
    with emitter.stage_run("ingest", [DatasetRef.of("assets", "a1")]):
        pass
    emitter.close()
    assert [(path, body["eventType"]) for path, _, body in handler.received] == [
        ("/api/v1/lineage", "START"), ("/api/v1/lineage", "COMPLETE")]
    assert not (tmp_path / "ws" / "reports" / "openlineage.jsonl").exists()


def test_http_failure_falls_back_to_the_file(server: tuple[str, type[_Collector]], tmp_path: Path) -> None:
    url, handler = server
    handler.status = 503
    path = tmp_path / "lineage.jsonl"
    emitter = LineageEmitter("soundtrail", "http", url=url, api_key="k", file_path=path, http_retries=0)
    emitter.emit_stage("ingest", "r1", [], [DatasetRef.of("assets", "a1")], "COMPLETE")
    assert handler.received[0][1] == "Bearer k"
    assert [event["eventType"] for event in _events(path)] == ["COMPLETE"]

    no_fallback = LineageEmitter("soundtrail", "http", url=url, http_retries=0)
    with pytest.raises(Exception, match="503"):
        no_fallback.emit_stage("ingest", "r1", [], [], "START")
