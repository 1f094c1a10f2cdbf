"""The generator family registry: one table that the CLI, the config check and model lookup all read."""

from __future__ import annotations

from pathlib import Path

import pytest

from soundtrail.config import Settings
from soundtrail.train.ar import ARFamily
from soundtrail.train.families import FAMILIES, UnknownFamilyError, check_family_names, family
from soundtrail.train.stage import resolve_model
from soundtrail.workspace import Workspace
from tests.conftest import run_cli


def test_every_family_is_registered_under_its_own_name() -> None:
    assert list(FAMILIES) == ["ar", "diffusion", "musicgen"]
    assert all(registered.name == name for name, registered in FAMILIES.items())
    assert family("diffusion") is FAMILIES["diffusion"]


def test_an_unknown_name_is_refused_with_the_registered_ones() -> None:
    with pytest.raises(UnknownFamilyError, match=r"unknown generator family 'gan'; registered: ar, diffusion"):
        family("gan")
    with pytest.raises(UnknownFamilyError, match=r"\[pipeline\] models: unknown generator families 'gan', 'vae'"):
        check_family_names(["ar", "gan", "vae"], "[pipeline] models")
    check_family_names(["diffusion", "ar"], "[pipeline] models")


def test_the_train_command_refuses_an_unregistered_family_as_a_usage_error(tmp_path: Path, capsys) -> None:
    code, out, err = run_cli(["train", "gan", "-w", tmp_path / "ws"], capsys)
    assert code == 2 and out == ""
    message = " ".join(err.replace("│", " ").split())
    assert "unknown generator family 'gan'; registered: ar, diffusion, musicgen" in message


def test_a_family_added_to_the_table_is_known_everywhere_that_reads_it(tmp_path: Path, capsys,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Registering is the one line: the model lookup and the CLI accept the new name with nothing else changed."""

    class Variant(ARFamily):
        name = "ar-variant"

    monkeypatch.setitem(FAMILIES, Variant.name, Variant())
    workspace = Workspace(tmp_path / "ws", Settings())
    with pytest.raises(ValueError, match=r"no ar-variant model yet: run `soundtrail train ar-variant`"):
        resolve_model(workspace, "ar-variant")
    check_family_names(["ar-variant"], "[pipeline] models")
    with pytest.raises(ValueError, match=r"no model 'gan' in the ledger; name a model id or a generator family "
                                         r"\(ar, diffusion, musicgen, ar-variant\)"):
        resolve_model(workspace, "gan")
