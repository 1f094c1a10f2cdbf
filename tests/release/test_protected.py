"""Works that must never come out: taken-down assets and blocklisted works stay in the release screen."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from soundtrail.ingest.blocklist import add_to_blocklist
from soundtrail.provenance.ledger import Ledger, ProjectionMismatch
from soundtrail.provenance.takedown import revoke
from soundtrail.release.gate import release
from soundtrail.screening import stage as screen_index
from soundtrail.screening.screener import ScreenThresholds
from soundtrail.screening.stage import screening_index
from soundtrail.workspace import Workspace
from tests.audio_fixtures import RATE, melody, write
from tests.release.workspaces import MODEL, asset_ids, copied_excerpt, generated


def gate(workspace: Workspace, candidate: Path, output_id: str):
    return release(workspace, candidate, output_id=output_id, model_id=MODEL, prompt="", seed=0, seconds=12.0)


def test_a_planted_copy_of_a_taken_down_asset_is_blocked_naming_the_takedown(workspace: Workspace,
                                                                             tmp_path: Path) -> None:
    copied = asset_ids(workspace)["track12.flac"]
    with Ledger(workspace.ledger_url) as ledger:
        takedown = revoke(ledger, copied, "Label 12 withdrew the track, letter of 3 May")
    result = gate(workspace, copied_excerpt(tmp_path), "0badc0de")
    assert result.status == "blocked" and result.matches[0]["asset_id"] == copied
    evidence = json.loads(result.evidence.read_text())
    assert evidence["protected"] == [{"work": copied, "protected_by": "takedown", "takedown_id": takedown.takedown_id,
                                      "reason": "Label 12 withdrew the track, letter of 3 May"}]
    assert evidence["protected_works"] == 1 and evidence["assets"] == 2, "screened against 2 accepted + 1 protected"


def test_a_protected_work_blocks_at_its_flag_level(workspace: Workspace, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With block levels out of reach, a copy of an accepted asset is only flagged; of a taken-down one, blocked."""
    never_block = ScreenThresholds.declared(chromaprint_block=2.0, tokens_block=2.0, landmarks_block=2.0)
    monkeypatch.setattr(screen_index, "screen_thresholds", lambda _workspace: never_block)
    assert gate(workspace, copied_excerpt(tmp_path), "00f1a900").verdict == "flag"
    with Ledger(workspace.ledger_url) as ledger:
        revoke(ledger, asset_ids(workspace)["track12.flac"], "opt-out")
    blocked = gate(workspace, copied_excerpt(tmp_path, "copy2.wav"), "00f1a901")
    assert blocked.status == "blocked" and max(match["score"] for match in blocked.matches) < 2.0


def test_a_blocklisted_work_is_screened_by_its_audio_or_else_its_stored_fingerprint(workspace: Workspace,
                                                                                    tmp_path: Path) -> None:
    reference = write(tmp_path / "refs" / "hit.flac", melody(40, 12.0)).resolve()
    [added] = add_to_blocklist(workspace, [reference], "Label X's chart hit")
    work = added["id"]
    index = screening_index(workspace)
    assert work in index.screener.methods["chromaprint"].asset_ids and work in index.screener.methods[
        "landmarks"].asset_ids, "its file is there: indexed by every method that reads audio"

    planted = generated(np.concatenate([melody(141, 2.0), melody(40, 12.0)[2 * RATE:10 * RATE]]),
                        tmp_path / "planted.wav")
    expected = [{"work": work, "protected_by": "blocklist", "blocklist_id": work, "reason": "Label X's chart hit"}]
    screened = index.screen(planted)
    assert screened.result.verdict == "block" and screened.protected == expected

    reference.unlink()  # the reference audio is gone: only the ledger's fingerprint is left
    shutil.rmtree(workspace.root / "index")
    index = screening_index(workspace)
    assert work in index.screener.methods["chromaprint"].asset_ids
    assert work not in index.screener.methods["landmarks"].asset_ids
    screened = index.screen(planted)
    assert screened.result.verdict == "block" and screened.protected == expected
    assert {match.method for match in screened.result.matches if match.asset_id == work} == {"chromaprint"}


def test_a_takedown_undone_in_the_table_stops_the_screen(workspace: Workspace) -> None:
    copied = asset_ids(workspace)["track12.flac"]
    with Ledger(workspace.ledger_url) as ledger:
        revoke(ledger, copied, "opt-out")
    database = sqlite3.connect(workspace.root / "ledger.db")
    database.execute("UPDATE assets SET status = 'quarantined' WHERE id = ?", (copied,))
    database.commit()
    database.close()
    with pytest.raises(ProjectionMismatch, match=copied):
        screening_index(workspace)
