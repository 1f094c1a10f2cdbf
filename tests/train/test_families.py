"""The generator family registry: one table that the CLI, the config check and model lookup all read."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from soundtrail.config import ModelSettings, Settings
from soundtrail.train import codec as codec_training
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


def test_the_model_section_names_exactly_the_presets_each_family_has() -> None:
    """[model] <name> for every family and the codec; the sizes the issue names are reachable by name."""
    allowed = {name: typing.get_args(field.annotation) for name, field in ModelSettings.model_fields.items()}
    from_scratch = {name: registered for name, registered in FAMILIES.items() if not registered.fine_tunes}
    assert allowed == {**{name: tuple(registered.presets) for name, registered in from_scratch.items()},
                       "codec": tuple(codec_training.PRESETS)}
    assert all(registered.preset(ModelSettings()) == "tiny" for registered in from_scratch.values())
    assert all(not registered.presets and registered.preset(ModelSettings()) is None
               for registered in FAMILIES.values() if registered.fine_tunes), "sized by its base model"
    musicgen = FAMILIES["ar"].presets["musicgen-small"](n_codebooks=4, codebook_size=2048, cond_dim=768)
    assert (musicgen.d_model, musicgen.n_layers, musicgen.n_heads) == (1024, 24, 16)
    small = FAMILIES["ar"].presets["small"](n_codebooks=4, codebook_size=256, cond_dim=384)
    tiny = FAMILIES["ar"].presets["tiny"](n_codebooks=4, codebook_size=256, cond_dim=384)
    assert tiny.d_model < small.d_model < musicgen.d_model and tiny.cond_dim == small.cond_dim == 384
    base = FAMILIES["diffusion"].presets["base"](latent_dim=64, cond_dim=384)
    assert (base.d_model, base.n_layers, base.latent_dim, base.cond_dim) == (768, 12, 64, 384)
    encodec = codec_training.PRESETS["encodec-24k"]()
    assert (encodec.sample_rate, encodec.num_codebooks, encodec.codebook_size) == (24_000, 8, 1024)
    assert codec_training.PRESETS["cpu-16k"]().sample_rate == 16_000
