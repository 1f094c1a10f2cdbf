"""Training reads what the chain says: an asset relabelled in the tables alone is refused by both trainings."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from soundtrail.codec.stage import choose_codec
from soundtrail.data.storage import Storage
from soundtrail.provenance.ledger import Ledger, ProjectionMismatch, utc_now
from soundtrail.train.stage import train_workspace_codec, training_data
from soundtrail.workspace import Workspace
from tests.audio_fixtures import melody, write
from tests.codec.test_tokenize import tiny_codec, tokenize


def test_training_refuses_an_nc_asset_relabelled_accepted_in_the_table(ledger_url: str, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "soundtrail.toml").write_text(f'ledger_url = "{ledger_url}"\n[tokenize]\nsegment_s = 1.0\n')
    workspace = Workspace(root)
    ledger = Ledger(workspace.ledger_url)
    codec_path, codec_id = tiny_codec(tmp_path / "codec")
    ledger.record("codecs", codec_id, {"kind": "soundtrail", "path": codec_path, "created_at": utc_now()},
                  "codec.trained")
    choose_codec(ledger, codec_id, "the test's codec")
    for index in range(2):
        path = write(tmp_path / f"a{index}.wav", melody(index, seconds=1.5), rate=8000)
        ledger.record("assets", f"a{index}", {"path": str(path), "status": "accepted", "license": "CC0-1.0"},
                      "asset.test")
    tokenize(ledger, Storage.of(workspace).shards(), codec_path, codec_id)
    assert sorted(training_data(workspace).shard_ids) == sorted(row["id"] for row in ledger.rows("shards"))

    # The rights holder shows the licence is NC: the ledger records it; someone then edits the tables back.
    ledger.record("assets", "a1", {"status": "quarantined", "license": "CC-BY-NC-4.0"}, "asset.relicensed")
    with ledger.engine.connect() as connection:
        connection.execute(text("UPDATE assets SET status = 'accepted', license = 'CC0-1.0' WHERE id = 'a1'"))
        connection.commit()
    ledger.close()
    expected = "assets row 'a1' column 'status' is 'accepted' but the chain says 'quarantined': refusing to use it"
    with pytest.raises(ProjectionMismatch, match=expected):
        training_data(workspace)
    with pytest.raises(ProjectionMismatch, match=expected):
        train_workspace_codec(workspace, steps=1)
