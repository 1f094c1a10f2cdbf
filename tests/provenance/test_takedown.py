"""Takedown: revoke a source, record everything derived from it, idempotently, with the chain intact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soundtrail.provenance.audit import write_report
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.lineage import asset_descendants
from soundtrail.provenance.records import AFFECTED_BY_TAKEDOWN, CURRENT, CodecRecord, ModelRecord
from soundtrail.provenance.takedown import TakedownError, revoke, takedown_id_for
from soundtrail.workspace import Workspace
from tests.conftest import run_cli
from tests.provenance.test_lineage import build_ledger


def _ids(items: list[dict]) -> list[str]:
    return [item["id"] for item in items]


def test_revoke_records_everything_derived(ledger: Ledger) -> None:
    seq_before, _ = ledger.head()
    result = revoke(ledger, "a1", "Label A request 2025-17", run_id="takedown-run")
    assert not result.already_revoked and result.takedown_id == takedown_id_for("a1")
    affected = result.affected
    assert _ids(affected["shards"]) == ["sh1"] and _ids(affected["codecs"]) == ["c1"]
    assert [(model["id"], model["via"]) for model in affected["models"]] == [("m1", ["codec", "shards"])]
    assert _ids(affected["outputs"]) == ["o1", "o3"]
    assert affected["same_recording"] == ["a6"], "the duplicate of the revoked file is named, not silently kept"

    asset = ledger.get("assets", "a1")
    assert asset["status"] == "revoked" and asset["reason"] == "takedown: Label A request 2025-17"
    row = ledger.get("takedowns", result.takedown_id)
    assert (row["asset_id"], row["reason"], row["affected"]) == ("a1", "Label A request 2025-17", affected)
    events = [event for event in ledger.events() if event["seq"] > seq_before]
    assert [(event["kind"], event["entity_id"], event["run_id"]) for event in events] == [
        ("asset.revoked", "a1", "takedown-run"), ("takedown.recorded", result.takedown_id, "takedown-run"),
        ("codec.affected-by-takedown", "c1", "takedown-run"), ("model.affected-by-takedown", "m1", "takedown-run")]
    assert ledger.verify().ok
    assert "a1" not in _ids(ledger.rows("assets", status="accepted")), "tokenize reads accepted assets only"


def test_a_takedown_marks_the_codecs_and_models_trained_on_the_asset(ledger: Ledger) -> None:
    """Both takedowns' ids accumulate on a model they both reach; models and codecs they do not reach stay current."""
    assert {record.id: record.status for record in map(ModelRecord.from_row, ledger.rows("models"))} == {
        "m1": CURRENT, "m2": CURRENT}
    first = revoke(ledger, "a3", "Label B request")  # a3: in m1's superseded shard only, no codec
    second = revoke(ledger, "a1", "Label A request")  # a1: codec c1 and m1's shards
    models = {row["id"]: ModelRecord.from_row(row) for row in ledger.rows("models")}
    codecs = {row["id"]: CodecRecord.from_row(row) for row in ledger.rows("codecs")}
    assert (models["m1"].status, models["m1"].takedowns) == (
        AFFECTED_BY_TAKEDOWN, tuple(sorted([first.takedown_id, second.takedown_id])))
    assert (models["m2"].status, models["m2"].takedowns) == (CURRENT, ())
    assert (codecs["c1"].status, codecs["c1"].takedowns) == (AFFECTED_BY_TAKEDOWN, (second.takedown_id,))
    assert codecs["c2"].status == CURRENT
    assert ledger.verify().ok, "the marks are events: verify replays them into the projections"

    ledger.record("models", "m1", models["m1"].fields(), "model.trained")
    assert ModelRecord.from_row(ledger.get("models", "m1")).status == AFFECTED_BY_TAKEDOWN, \
        "recording the model again (a re-run of training) does not clear its mark"


def test_a_takedown_recorded_before_models_were_marked_marks_them_when_repeated(ledger: Ledger) -> None:
    affected = asset_descendants(ledger, "a2")
    with ledger.writer() as writer:  # what a takedown wrote before models had a status
        writer.record("assets", "a2", {"status": "revoked"}, "asset.revoked")
        writer.record("takedowns", takedown_id_for("a2"), {"asset_id": "a2", "reason": "opt-out", "created_at": "t",
                                                           "affected": affected}, "takedown.recorded")
    again = revoke(ledger, "a2", "opt-out")
    assert again.already_revoked
    assert {row["id"]: row["status"] for row in ledger.rows("models")} == {"m1": AFFECTED_BY_TAKEDOWN,
                                                                          "m2": AFFECTED_BY_TAKEDOWN}
    head = ledger.head()
    revoke(ledger, "a2", "opt-out")
    assert ledger.head() == head


def test_revoke_is_idempotent(ledger: Ledger) -> None:
    first = revoke(ledger, "a2", "opt-out")
    head = ledger.head()
    again = revoke(ledger, "a2", "a second letter about the same work")
    assert again.already_revoked and ledger.head() == head, "a repeated takedown appends nothing"
    assert (again.takedown_id, again.reason, again.created_at, again.affected) == (
        first.takedown_id, "opt-out", first.created_at, first.affected)
    assert len(ledger.rows("takedowns")) == 1 and ledger.verify().ok


def test_unknown_asset_or_empty_reason_changes_nothing(ledger: Ledger) -> None:
    head = ledger.head()
    with pytest.raises(TakedownError, match="no asset 'nope'"):
        revoke(ledger, "nope", "request")
    with pytest.raises(TakedownError, match="needs a reason"):
        revoke(ledger, "a1", "   ")
    assert ledger.head() == head


def test_revoked_without_a_record_gets_one(ledger: Ledger) -> None:
    """An asset revoked by hand (an older tool, a direct event) still gets its takedown record."""
    ledger.record("assets", "a4", {"status": "revoked"}, "asset.revoked")
    result = revoke(ledger, "a4", "licence withdrawn")
    assert not result.already_revoked and ledger.get("takedowns", result.takedown_id)["asset_id"] == "a4"
    assert [(model["id"], model["via"]) for model in result.affected["models"]] == [("m1", ["codec"])]


def test_report_shows_the_takedown(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws")
    ledger = Ledger(workspace.ledger_url)
    build_ledger(ledger)
    revoke(ledger, "a3", "Label B request")
    ledger.close()
    report = json.loads(write_report(workspace, "json").read_text())
    assert report["takedowns"] == [{"id": takedown_id_for("a3"), "asset_id": "a3", "reason": "Label B request",
                                    "created_at": report["takedowns"][0]["created_at"], "shards": ["sh2"],
                                    "codecs": [], "models": ["m1"], "outputs": ["o1", "o3"]}]
    models = {model["id"]: model for model in report["models"]}
    assert models["m1"]["revoked_assets"] == ["a3"] and models["m2"]["revoked_assets"] == []
    assert report["training_data_summary"]["processing"]["revoked"] == 1


def test_takedown_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workspace = Workspace(tmp_path / "ws")
    ledger = Ledger(workspace.ledger_url)
    build_ledger(ledger)
    ledger.close()
    ws = ["--workspace", workspace.root]
    code, out, err = run_cli(["takedown", "a2", "--reason", "opt-out by the field recordist", "--json", *ws], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["asset_id"] == "a2" and not result["already_revoked"]
    assert (_ids(result["affected"]["models"]), _ids(result["affected"]["outputs"])) == (["m1", "m2"],
                                                                                         ["o1", "o2", "o3"])
    code, _, err = run_cli(["takedown", "a2", "--reason", "again", *ws], capsys)
    assert code == 0 and "already revoked" in err and "sh1" in err and "m2" in err
    code, _, err = run_cli(["takedown", "a4", "--reason", "[/bold] letter [red]7", *ws], capsys)
    assert code == 0 and "[/bold] letter [red]7" in err, "user text is printed as text, never as console markup"
    assert "train a new codec" in err, "a codec trained on the asset keeps it in every shard it encodes"
    code, _, err = run_cli(["takedown", "zz", "--reason", "x", *ws], capsys)
    assert code == 1 and "no asset 'zz'" in err
    code, _, _ = run_cli(["takedown", "a1", *ws], capsys)
    assert code == 2, "--reason is required"
    code, out, _ = run_cli(["ledger", "verify", "--json", *ws], capsys)
    document = json.loads(out)
    assert document["problem"] is None, "the chain and its projections agree after the takedowns"
    assert code == 1 and document["outputs"]["missing"] == ["o1", "o2"], "this ledger's released files never existed"
