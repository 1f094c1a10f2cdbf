"""Base models are admitted like assets: their licence goes through the policy, a training-data statement is
required, and the outcome is in the ledger before anything trains (no model is loaded here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from soundtrail.config import BaseModelSettings, LicenseSettings, Settings
from soundtrail.provenance.ledger import Ledger
from soundtrail.train.families import UnknownFamilyError
from soundtrail.train.pretrained import read_pretrained
from soundtrail.train.stage import train_generator
from soundtrail.train.start import BaseModelRefused, admit_base_model
from soundtrail.workspace import Workspace

STATEMENT = "licensed stock music, per its publisher"


def base_folder(root: Path, card_license: str | None = None) -> Path:
    """What read_pretrained reads of a save_pretrained folder: its config, weights and model card."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text('{"architectures": ["MusicgenForConditionalGeneration"]}')
    (root / "model.safetensors").write_bytes(b"weights of a pretrained model")
    if card_license:
        (root / "README.md").write_text(f"---\nlicense: {card_license}\nlibrary_name: transformers\n---\n# a card\n")
    return root


def workspace_for(root: Path, allow_by_name: tuple[str, ...] = (), **base: str) -> Workspace:
    settings = {"path": "models/musicgen", "name": "acme/musicgen", "training_data": STATEMENT, **base}
    return Workspace(root, Settings(base_models={"musicgen": BaseModelSettings(**settings)},
                                    licenses=LicenseSettings(allow_base_models=list(allow_by_name))))


def test_a_base_model_under_an_allowed_licence_is_recorded_once(tmp_path: Path) -> None:
    folder = base_folder(tmp_path / "models" / "musicgen")
    workspace = workspace_for(tmp_path, license="cc-by-4.0")
    record = admit_base_model(workspace, "musicgen")
    assert (record.id, record.path) == (read_pretrained(folder).id, str(folder.resolve()))
    assert (record.name, record.license, record.license_source, record.status, record.policy, record.reason) == \
        ("acme/musicgen", "CC-BY-4.0", "config", "accepted", "allow", None)
    assert record.training_data == STATEMENT and record.architecture == "MusicgenForConditionalGeneration"
    with Ledger(workspace.ledger_url) as ledger:
        head = ledger.head()
        assert admit_base_model(workspace, "musicgen") == record
        assert ledger.head() == head, "admitting it again appends nothing"


def test_an_nc_base_model_is_refused_and_recorded_unless_allowed_by_name(tmp_path: Path) -> None:
    base_folder(tmp_path / "models" / "musicgen", card_license="cc-by-nc-4.0")
    workspace = workspace_for(tmp_path)
    with pytest.raises(BaseModelRefused, match=r"acme/musicgen .* refused: licence CC-BY-NC-4.0 is denied by policy"):
        train_generator(workspace, "musicgen")  # refused before it looks for shards or loads anything
    with Ledger(workspace.ledger_url) as ledger:
        [row] = ledger.rows("base_models")
        assert (row["status"], row["policy"], row["license"], row["license_source"]) == \
            ("refused", "refuse", "CC-BY-NC-4.0", "model card")
        assert ledger.rows("models") == []

    allowed = admit_base_model(workspace_for(tmp_path, allow_by_name=("acme/musicgen",)), "musicgen")
    assert (allowed.status, allowed.policy) == ("accepted", "exception")
    assert allowed.reason == "licence CC-BY-NC-4.0 is denied by policy; allowed by name in [licenses] allow_base_models"
    with pytest.raises(BaseModelRefused, match=r"allow it by name in \[licenses\] allow_base_models"):
        admit_base_model(workspace_for(tmp_path, allow_by_name=("acme/other",)), "musicgen")
    with Ledger(workspace.ledger_url) as ledger:
        assert [row["status"] for row in ledger.rows("base_models")] == ["refused"], "the latest decision stands"


@pytest.mark.parametrize(("card", "base", "reason"), [
    (None, {}, "no licence declared"),
    ("cc-by-nc-4.0", {"license": "CC-BY-4.0"}, "licences disagree: [base_models.musicgen] says CC-BY-4.0, the model "
                                               "card CC-BY-NC-4.0"),
    ("cc0-1.0", {"training_data": " "}, "no training-data statement"),
    (None, {"license": "my own terms"}, "unknown licence 'my own terms'"),
])
def test_a_base_model_without_a_clear_licence_and_statement_is_refused(tmp_path: Path, card: str | None,
                                                                       base: dict, reason: str) -> None:
    base_folder(tmp_path / "models" / "musicgen", card_license=card)
    with pytest.raises(BaseModelRefused, match=reason.replace("[", r"\[").replace("]", r"\]")):
        admit_base_model(workspace_for(tmp_path, **base), "musicgen")


def test_the_configuration_and_the_family_must_agree_on_a_base_model(tmp_path: Path) -> None:
    base_folder(tmp_path / "models" / "musicgen", card_license="cc0-1.0")
    with pytest.raises(ValueError, match=r"the musicgen family fine-tunes a pretrained model: name its folder in "
                                         r"\[base_models.musicgen\] path"):
        admit_base_model(Workspace(tmp_path), "musicgen")
    ar_base = Settings(base_models={"ar": BaseModelSettings(path="models/musicgen", training_data=STATEMENT)})
    with pytest.raises(ValueError, match=r"\[base_models.ar\]: the ar family trains from scratch"):
        admit_base_model(Workspace(tmp_path, ar_base), "ar")
    typo = Settings(base_models={"musicgne": BaseModelSettings(path="models/musicgen")})
    with pytest.raises(UnknownFamilyError, match="musicgne"):
        train_generator(Workspace(tmp_path, typo), "ar")
