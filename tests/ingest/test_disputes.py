"""Conflicting claims on one recording are held for a person, and a refused work cannot come back as a copy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mutagen
import pytest

from soundtrail.codec.tokenize import plan_tokenize
from soundtrail.config import LicenseSettings, Settings
from soundtrail.data.location import Location
from soundtrail.ingest.analyze import analyze_batch
from soundtrail.ingest.catalog import Catalog
from soundtrail.ingest.manifest import read_manifest, resolve_inputs
from soundtrail.provenance.audit import build_report, render_html, render_markdown
from soundtrail.provenance.ledger import Ledger
from soundtrail.workspace import Workspace
from tests.audio_fixtures import melody, write, write_manifest
from tests.conftest import run_cli
from tests.ingest.driver import ingest, mp3_of


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "soundtrail.toml").write_text("[ingest]\nbatch_size = 2\n")  # originals and copies in other transactions
    return Workspace(root)


def _row(ledger: Ledger, items: dict, name: str) -> dict:
    return ledger.get("assets", items[name]["asset_id"])


def _disputed_recording(folder: Path) -> Path:
    """An accepted original (CC-BY, Label A) and, listed after it, its copies: an MP3 re-encode relabelled CC0 by
    an uploader, a gain-changed copy claiming another rights holder, and an exact copy making the same claims."""
    original = write(folder / "original.flac", melody(80, seconds=10))
    mp3_of(original, folder / "relabelled.mp3")
    write(folder / "quieter.flac", melody(80, seconds=10) * 0.5)
    shutil.copyfile(original, folder / "same_bytes.flac")
    return write_manifest(folder, [
        {"path": "original.flac", "license": "CC-BY-4.0", "rights_holder": "Label A"},
        {"path": "relabelled.mp3", "license": "CC0-1.0", "rights_holder": "Uploader"},
        {"path": "quieter.flac", "license": "CC BY 4.0", "rights_holder": "Label B"},
        {"path": "same_bytes.flac", "license": "cc-by-4.0", "rights_holder": " label  A "},
    ])


def test_a_relabelled_copy_of_an_accepted_recording_puts_both_in_dispute(tmp_path: Path,
                                                                          workspace: Workspace) -> None:
    folder = tmp_path / "c"
    manifest = _disputed_recording(folder)
    items = ingest(workspace, [folder], manifest)
    ledger = Ledger(workspace.ledger_url)
    original_id = items["original.flac"]["asset_id"]

    original = ledger.get("assets", original_id)
    assert original["status"] == "disputed", original
    assert "CC0-1.0" in original["reason"] and "Uploader" in original["reason"] and "Label A" in original["reason"]
    for name, claim in (("relabelled.mp3", "CC0-1.0"), ("quieter.flac", "Label B")):
        assert items[name]["status"] == "disputed", items[name]
        assert claim in items[name]["reason"] and "CC-BY-4.0" in items[name]["reason"]
        assert _row(ledger, items, name)["duplicate_of"] == original_id
    assert items["same_bytes.flac"]["status"] == "duplicate", "the same claims make a plain duplicate"
    assert items["same_bytes.flac"]["reason"] == f"same bytes as asset {original_id}"

    assert ledger.rows("assets", status="accepted") == [], "a disputed original leaves the corpus"
    plan = plan_tokenize(ledger, Location.local(tmp_path / "shards"), "codec", "c1", segment_s=1.0, assets_per_shard=4)
    assert plan.groups == [], "nothing disputed is encoded into a shard"

    events = ledger.head()
    assert ingest(workspace, [folder], manifest) == items
    assert ledger.head() == events, "a re-run appends nothing"


def _refused_originals(folder: Path) -> Path:
    """A CC-BY-NC original and a GPL original (declared in its own tags), each followed in curator order by copies
    that claim a licence the policy allows: the exact bytes, an MP3 re-encode, a gain change."""
    nc = write(folder / "nc.flac", melody(81, seconds=10))
    shutil.copyfile(nc, folder / "nc_same_bytes.flac")
    mp3_of(nc, folder / "nc_reencoded.mp3")
    write(folder / "nc_louder.wav", melody(81, seconds=10) * 1.6, subtype="PCM_16")
    gpl = write(folder / "gpl.flac", melody(82, seconds=10))
    tags = mutagen.File(gpl)
    tags["LICENSE"] = "GPL"
    tags.save()
    mp3_of(gpl, folder / "gpl_relabelled.mp3")
    return write_manifest(folder, [
        {"path": "nc.flac", "license": "CC-BY-NC-4.0", "rights_holder": "Label N"},
        {"path": "gpl.flac", "rights_holder": "Author G"},
        {"path": "nc_same_bytes.flac", "license": "CC-BY-4.0", "rights_holder": "Label N"},
        {"path": "nc_reencoded.mp3", "license": "CC-BY-4.0", "rights_holder": "Uploader"},
        {"path": "nc_louder.wav", "license": "CC0-1.0"},
        {"path": "gpl_relabelled.mp3", "license": "CC0-1.0", "rights_holder": "Uploader"},
    ])


def test_a_copy_of_a_recording_refused_for_its_licence_is_refused_with_it(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    settings = Settings(licenses=LicenseSettings(aliases={"GPL": "GPL-2.0-or-later"}))
    workspace = Workspace(root, settings)
    folder = tmp_path / "c"
    manifest = _refused_originals(folder)
    items = ingest(workspace, [folder], manifest)
    ledger = Ledger(workspace.ledger_url)
    nc_id, gpl_id = items["nc.flac"]["asset_id"], items["gpl.flac"]["asset_id"]
    assert "denied by policy" in items["nc.flac"]["reason"]
    assert "GPL-2.0-or-later is not in the allow list" in items["gpl.flac"]["reason"]
    for name, original_id in (("nc_same_bytes.flac", nc_id), ("nc_reencoded.mp3", nc_id),
                              ("nc_louder.wav", nc_id), ("gpl_relabelled.mp3", gpl_id)):
        assert items[name]["status"] == "quarantined", (name, items[name])
        assert original_id in items[name]["reason"] and "which is quarantined" in items[name]["reason"], items[name]
        assert _row(ledger, items, name)["duplicate_of"] == original_id
    assert ledger.rows("assets", status="accepted") == []

    events = ledger.head()
    assert ingest(workspace, [folder], manifest) == items
    assert ledger.head() == events, "a re-run appends nothing"

    # Deciding every file again from its analysis (what a run does once the manifest or settings change) gives
    # the same decisions: the NC original never becomes a "copy" of the copies that were refused with it.
    inputs = resolve_inputs([folder], read_manifest(manifest))
    catalog = Catalog(ledger, settings.ingest, settings.licenses)
    with catalog.transaction() as writer:
        for analysis in analyze_batch(inputs, settings.ingest, settings.licenses, str(manifest)):
            decision = catalog.decide(analysis, writer)
            row = ledger.get("assets", analysis["asset_id"])
            assert (decision.status, decision.reason, decision.duplicate_of) == (
                row["status"], row["reason"], row["duplicate_of"]), analysis["path"]


def _review(workspace: Workspace, capsys, *args: str) -> tuple[int, str, str]:
    return run_cli(["review", *args, "--workspace", workspace.root], capsys)


def test_review_records_a_persons_decision_and_the_audit_lists_it(tmp_path: Path, workspace: Workspace, capsys,
                                                                   monkeypatch) -> None:
    folder = tmp_path / "c"
    items = ingest(workspace, [folder], _disputed_recording(folder))
    original, relabelled, quieter = (items[name]["asset_id"] for name in
                                     ("original.flac", "relabelled.mp3", "quieter.flac"))
    ledger = Ledger(workspace.ledger_url)
    [open_dispute] = build_report(workspace, ledger)["disputes"]["open"]
    assert open_dispute["original"] == original and "Uploader" in render_markdown(build_report(workspace, ledger))

    code, out, err = _review(workspace, capsys, "list", "--json")
    assert code == 0, err
    [dispute] = json.loads(out)["disputes"]
    assert dispute["original"] == original
    assert [asset["id"] for asset in dispute["assets"]] == [original, relabelled, quieter]

    code, _, err = _review(workspace, capsys, "resolve", relabelled, "--accept", "--reject", "--reason", "x")
    assert code == 2, "exactly one of --accept and --reject"
    code, _, err = _review(workspace, capsys, "resolve", items["same_bytes.flac"]["asset_id"], "--accept",
                           "--reason", "x")
    assert code == 1 and "not disputed" in err and "Traceback" not in err

    monkeypatch.setenv("LOGNAME", "rights-desk")  # who decided, when no --by is given
    monkeypatch.setenv("USER", "rights-desk")
    code, out, err = _review(workspace, capsys, "resolve", relabelled, "--reject", "--reason",
                             "an uploader relabelled the label's release", "--json")
    assert code == 0, err
    assert json.loads(out)["affected"] == {relabelled: "rejected"}
    assert ledger.get("assets", original)["status"] == "disputed", "rejecting one claim does not decide the others"

    code, out, err = _review(workspace, capsys, "resolve", original, "--accept", "--reason", "contract on file",
                             "--by", "alice", "--json")
    assert code == 0, err
    assert json.loads(out)["affected"] == {original: "accepted", quieter: "rejected"}
    assert ledger.get("assets", original)["status"] == "accepted"
    assert "Label B" in ledger.get("assets", quieter)["reason"] and "alice" in ledger.get("assets", quieter)["reason"]
    reviews = sorted(ledger.rows("reviews"), key=lambda row: row["created_at"])
    assert [(row["asset_id"], row["decision"], row["by"]) for row in reviews] == [
        (relabelled, "reject", "rights-desk"), (original, "accept", "alice")]
    code, out, _ = _review(workspace, capsys, "list", "--json")
    assert json.loads(out)["disputes"] == []

    report = build_report(workspace, ledger)
    assert report["disputes"]["open"] == []
    assert [(row["asset_id"], row["by"]) for row in report["disputes"]["resolved"]] == [
        (relabelled, "rights-desk"), (original, "alice")]
    for text in (render_markdown(report), render_html(report, workspace)):
        assert "an uploader relabelled the label" in text and "contract on file" in text
    assert ledger.verify().ok


def test_accepting_a_copy_makes_it_the_original_and_a_copy_of_a_refused_licence_cannot_be_accepted(
        tmp_path: Path, workspace: Workspace) -> None:
    folder = tmp_path / "c"
    items = ingest(workspace, [folder], _disputed_recording(folder))
    original, relabelled, quieter, same = (items[name]["asset_id"] for name in
                                           ("original.flac", "relabelled.mp3", "quieter.flac", "same_bytes.flac"))
    from soundtrail.provenance.review import ReviewError, resolve

    ledger = Ledger(workspace.ledger_url)
    allowed = workspace.settings.licenses.allow
    result = resolve(ledger, relabelled, "accept", "the label re-licensed it as CC0", "bob", allowed)
    assert result.affected == {relabelled: "accepted", original: "rejected", quieter: "rejected", same: "rejected"}
    assert {row["id"]: row["duplicate_of"] for row in ledger.rows("assets")} == {
        relabelled: None, original: relabelled, quieter: relabelled, same: relabelled}
    with pytest.raises(ReviewError, match="not disputed"):
        resolve(ledger, relabelled, "reject", "changed my mind", "bob", allowed)

    # A later copy with the upheld claims is a plain duplicate of the accepted copy; one with the rejected claims
    # disputes it again: a person decided once, a new claim is held again.
    later = tmp_path / "later"
    write(later / "again.flac", melody(80, seconds=10) * 0.8)
    write(later / "nc_claim.flac", melody(80, seconds=10) * 0.7)
    manifest = write_manifest(later, [{"path": "again.flac", "license": "CC0-1.0", "rights_holder": "Uploader"},
                                      {"path": "nc_claim.flac", "license": "CC-BY-NC-4.0"}])
    more = ingest(workspace, [later], manifest)
    assert (more["again.flac"]["status"], ledger.get("assets", more["again.flac"]["asset_id"])["duplicate_of"]) == (
        "duplicate", relabelled)
    assert more["nc_claim.flac"]["status"] == "disputed"
    with pytest.raises(ReviewError, match="licence policy does not allow"):
        resolve(ledger, more["nc_claim.flac"]["asset_id"], "accept", "x", "bob", allowed)
    assert ledger.verify().ok
