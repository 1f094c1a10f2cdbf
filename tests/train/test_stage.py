"""The training stage against a workspace: codec checkpoint folders, codec and model records."""

from __future__ import annotations

from pathlib import Path

import pytest

from soundtrail import checkpoint
from soundtrail.config import CodecSettings, Settings
from soundtrail.models.codec import CodecConfig
from soundtrail.provenance.ledger import Ledger
from soundtrail.train.stage import train_workspace_codec
from soundtrail.workspace import Workspace
from tests.audio_fixtures import melody, write

TINY = CodecConfig(sample_rate=8000, channels=4, strides=(4, 4, 2), latent_dim=16, num_codebooks=2, codebook_size=16)


def workspace_with_assets(root: Path, codec: CodecSettings) -> Workspace:
    """Three accepted assets recorded as ingest records them (two train the codec, one is held out)."""
    workspace = Workspace(root, Settings(codec=codec))
    with Ledger(workspace.ledger_url) as ledger:
        for index in range(3):
            path = write(root / "corpus" / f"a{index}.wav", melody(index, seconds=2.0, rate=8000), rate=8000)
            ledger.record("assets", f"asset{index}", {"path": str(path), "status": "accepted",
                                                      "license": "CC0-1.0"}, "asset.test")
    return workspace


@pytest.mark.parametrize("changed", [{"batch_size": 3}, {"segment_s": 0.5}])
def test_changed_codec_training_settings_train_a_new_codec_beside_the_finished_one(
        tmp_path: Path, changed: dict[str, float]) -> None:
    """A finished run's folder is keyed by everything its resume check compares, training settings included."""
    settings = CodecSettings(steps=2, batch_size=2, segment_s=0.25)
    first = train_workspace_codec(workspace_with_assets(tmp_path, settings), config=TINY)

    changed_settings = settings.model_copy(update=changed)
    second = train_workspace_codec(Workspace(tmp_path, Settings(codec=changed_settings)), config=TINY)

    assert second["path"] != first["path"]
    assert second["codec_id"] != first["codec_id"]
    assert checkpoint.is_complete(first["path"]) and checkpoint.is_complete(second["path"])
    with Ledger(Workspace(tmp_path).ledger_url) as ledger:
        assert {row["id"] for row in ledger.rows("codecs")} == {first["codec_id"], second["codec_id"]}
    again = train_workspace_codec(Workspace(tmp_path, Settings(codec=changed_settings)), config=TINY)
    assert (again["codec_id"], again["path"]) == (second["codec_id"], second["path"]), "found, not retrained"
