"""Fine-tuning a pretrained transformers MusicGen from a local folder (the musicgen family), offline.

Tiny randomly initialised bases (tests/train/musicgen_bases.py) stand in for facebook/musicgen-small: a full
MusicgenForConditionalGeneration with its T5 and tokenizer, and a bare MusicgenForCausalLM. The corpus is tokenized
with the full model's own EnCodec, as ``[codec] checkpoint`` would have it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from soundtrail import checkpoint
from soundtrail.codec.codecs import codec_id_of, load_codec
from soundtrail.config import BaseModelSettings, CodecSettings, Settings, TokenizeSettings, TrainSettings
from soundtrail.data.shards import CodecInfo
from soundtrail.data.storage import Storage
from soundtrail.provenance.audit import build_report, model_audit, render_markdown
from soundtrail.provenance.credentials import ensure_signing_identity, read_credentials, sign_wav
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.lineage import training_license_summary
from soundtrail.provenance.records import ModelRecord
from soundtrail.train.families import Generator
from soundtrail.train.generator import BaseModel
from soundtrail.train.musicgen import LORA_TARGETS, build_network, check_codes
from soundtrail.train.pretrained import read_pretrained
from soundtrail.train.stage import train_generator
from soundtrail.workspace import Workspace
from tests.audio_fixtures import melody, write
from tests.codec.test_tokenize import tokenize
from tests.train.musicgen_bases import CODEBOOKS, CODES, RATE, tiny_decoder_base, tiny_encodec, tiny_musicgen

STEPS = 30
STATEMENT = "random weights, trained on nothing: a test stand-in for a published model"
LEARNED = 0.5  # nats per code the fine-tuning must take off the loss in STEPS steps
# Rank-4 adapters on a random tiny decoder whose output heads stay frozen learn far slower than every weight does
# (a pretrained decoder's heads already mean something); they must still take this much off.
LEARNED_BY_ADAPTERS = 0.25


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bases")
    encodec = tiny_encodec(root / "encodec")
    return {"encodec": encodec, "full": tiny_musicgen(root / "musicgen", encodec),
            "decoder": tiny_decoder_base(root / "decoder")}


def settings_for(base: Path, encodec: Path, **base_settings) -> Settings:
    return Settings(codec=CodecSettings(checkpoint=str(encodec)), tokenize=TokenizeSettings(segment_s=1.0),
                    train=TrainSettings(musicgen_steps=STEPS, batch_size=4, crop_seconds=0.2, text_encoder="learned"),
                    base_models={"musicgen": BaseModelSettings(**{
                        "path": str(base), "name": "tiny-musicgen", "license": "CC-BY-4.0",
                        "training_data": STATEMENT, "learning_rate": 3e-3, **base_settings})})


def add_assets(workspace: Workspace, indices: range, encodec: Path) -> None:
    """Accepted recordings with captions, then tokenized with the EnCodec (the workspace codec)."""
    with Ledger(workspace.ledger_url) as ledger:
        for index in indices:
            path = write(workspace.root / "corpus" / f"a{index}.wav", melody(index, seconds=2.0, rate=RATE),
                         rate=RATE)
            ledger.record("assets", f"asset{index}", {
                "path": str(path), "status": "accepted", "license": "CC0-1.0", "duration_s": 2.0,
                "description": f"calm piano melody {index}"}, "asset.test")
        tokenize(ledger, Storage.of(workspace).shards(), str(encodec), codec_id_of(encodec / checkpoint.WEIGHTS))


def test_a_full_musicgen_fine_tunes_generates_and_is_named_in_the_ledger_audit_and_credentials(
        tmp_path: Path, bases: dict[str, Path]) -> None:
    workspace = Workspace(tmp_path / "ws", settings_for(bases["full"], bases["encodec"]))
    add_assets(workspace, range(3), bases["encodec"])
    model = train_generator(workspace, "musicgen").model
    base_id = read_pretrained(bases["full"]).id
    initial, final = model.metrics["initial_loss"], model.metrics["final_loss"]
    print(f"musicgen fine-tuning: loss {initial:.3f} -> {final:.3f} in {STEPS} steps "
          f"(uniform {model.metrics['uniform_baseline']:.3f})")
    assert initial - final > LEARNED
    assert (model.base_model, model.parent, model.text_encoder) == (base_id, None, f"musicgen-t5:{base_id}")
    assert model.init_reason == "from base model tiny-musicgen: no earlier musicgen model"

    with Ledger(workspace.ledger_url) as ledger:
        row = ledger.get("base_models", base_id)
        assert (row["name"], row["license"], row["license_source"], row["status"], row["policy"]) == \
            ("tiny-musicgen", "CC-BY-4.0", "config", "accepted", "allow")
        assert row["training_data"] == STATEMENT and row["architecture"] == "MusicgenForConditionalGeneration"
        assert model_audit(ledger, model.id)["base_model"]["name"] == "tiny-musicgen"
        summary = training_license_summary(ledger, model.id)
        assert summary["base_model"] == {"id": base_id, "name": "tiny-musicgen", "license": "CC-BY-4.0",
                                         "training_data": STATEMENT}
        report = build_report(workspace, ledger)
    assert report["training_data_summary"]["general"]["base_models"] == [summary["base_model"]]
    assert [row["id"] for row in report["base_models"]] == [base_id]
    markdown = render_markdown(report)
    assert "Fine-tuned from: tiny-musicgen" in markdown and "from base model tiny-musicgen" in markdown

    codec = load_codec(bases["encodec"], "cpu")
    generator = Generator(model, Storage.of(workspace).fetch(model.path), codec, "cpu")
    first, again = (generator.generate("calm piano melody 1", 0.2, seed=3) for _ in range(2))
    other = generator.generate("calm piano melody 1", 0.2, seed=4)
    assert first.codes.shape == (CODEBOOKS, 50) and first.codes.max() < CODES
    assert np.array_equal(first.codes, again.codes) and np.array_equal(first.audio, again.audio)
    assert not np.array_equal(first.codes, other.codes)
    assert first.audio.shape == (int(0.2 * RATE),) and np.isfinite(first.audio).all()

    source = write(tmp_path / "out.wav", first.audio, rate=RATE)
    identity = ensure_signing_identity(tmp_path / "credentials")
    sign_wav(source, tmp_path / "signed.wav", identity, model_id=model.id, training_license_summary=summary,
             output_id="o1")
    credentials = read_credentials(tmp_path / "signed.wav", trust_anchors=identity.trust_anchor)
    assert credentials.validation_ok and credentials.trusted
    [ingredient] = credentials.manifest["ingredients"]
    assert (ingredient["title"], ingredient["relationship"]) == ("tiny-musicgen", "inputTo")
    assert base_id in ingredient["instance_id"] and "CC-BY-4.0" in ingredient["description"]
    assert STATEMENT in ingredient["description"]

    add_assets(workspace, range(3, 4), bases["encodec"])
    continued = train_generator(workspace, "musicgen").model
    assert (continued.parent, continued.base_model) == (model.id, base_id)
    assert continued.metrics["initial_loss"] < initial - LEARNED, "it starts from the fine-tuned weights"


def test_the_fine_tuning_loss_is_the_loss_transformers_computes(bases: dict[str, Path]) -> None:
    """The same delay pattern, text conditioning and per-codebook mean as MusicgenForConditionalGeneration's
    own loss from delayed labels."""
    from transformers import MusicgenForConditionalGeneration

    torch.manual_seed(0)
    network, loaded = build_network(BaseModel(str(bases["full"]), "id"), "learned")
    network.eval()
    codes = torch.randint(0, CODES, (3, CODEBOOKS, 20))
    texts = ["calm piano melody 1", "bright drums", "slow bass with soft pads and a piano"]
    ours = network.loss(codes, texts)

    reference = MusicgenForConditionalGeneration.from_pretrained(bases["full"], local_files_only=True).eval()
    tokens = network.encoder.tokenizer(texts, padding=True, return_tensors="pt")
    sequence = network.pattern.build(codes, network.special)
    with torch.no_grad():
        theirs = reference(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                           labels=sequence[:, :, 1:].transpose(1, 2)).loss
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_shards_of_another_codec_are_refused(bases: dict[str, Path], tmp_path: Path) -> None:
    network, loaded = build_network(BaseModel(str(bases["full"]), "id"), "learned")
    own = load_codec(bases["encodec"], "cpu")
    info = CodecInfo(own.codec_id, RATE, 250.0, CODEBOOKS, CODES)
    check_codes(loaded, info, own)  # the EnCodec it was trained with

    other = load_codec(tiny_encodec(tmp_path / "other", seed=1), "cpu")
    with pytest.raises(ValueError, match="codebooks differ from the shards' codec's"):
        check_codes(loaded, CodecInfo(other.codec_id, RATE, 250.0, CODEBOOKS, CODES), other)
    with pytest.raises(ValueError, match="reads 2 codebooks, the shards hold 4; its codebooks have 64 codes, "
                                         "the shards' 256"):
        check_codes(loaded, CodecInfo("x", RATE, 250.0, 4, 256), own)
    with pytest.raises(ValueError, match="runs at 8000 Hz and 250 frames/s, the shards' codec at 16000 Hz and 50"):
        check_codes(loaded, CodecInfo("x", 16000, 50.0, CODEBOOKS, CODES), own)


def test_a_bare_decoder_fine_tunes_lora_adapters_only(tmp_path: Path, bases: dict[str, Path]) -> None:
    workspace = Workspace(tmp_path / "ws", settings_for(bases["decoder"], bases["encodec"], lora_rank=4,
                                                         learning_rate=1e-2))
    add_assets(workspace, range(3), bases["encodec"])
    model = train_generator(workspace, "musicgen").model
    initial, final = model.metrics["initial_loss"], model.metrics["final_loss"]
    print(f"musicgen LoRA (rank 4) on a bare decoder: loss {initial:.3f} -> {final:.3f} in {STEPS} steps")
    assert initial - final > LEARNED_BY_ADAPTERS
    assert model.text_encoder.startswith("learned-words:")

    trained = load_file(str(Path(model.path) / checkpoint.WEIGHTS))
    base = load_file(str(bases["decoder"] / checkpoint.WEIGHTS))
    adapters = {name for name in trained if ".lora_" in name}
    assert adapters and {name.split(".lora_")[0].rsplit(".", 1)[1] for name in adapters} == set(LORA_TARGETS)
    for name, tensor in base.items():  # every pretrained decoder weight is as it was (peft wraps adapted layers)
        module, _, kind = name.rpartition(".")
        kept = trained.get(f"decoder.{name}", trained.get(f"decoder.{module}.base_layer.{kind}"))
        assert kept is not None and torch.equal(kept, tensor), name
    assert any(trained[name].abs().max() > 0 for name in adapters if "lora_B" in name), "the adapters learned"
    config = json.loads((Path(model.path) / checkpoint.CONFIG).read_text())
    assert config["config"]["lora_rank"] == 4 and config["config"]["projection"] is True

    generated = Generator(ModelRecord.from_row(model.to_dict()), Storage.of(workspace).fetch(model.path),
                          load_codec(bases["encodec"], "cpu"), "cpu")
    assert generated.generate("calm piano", 0.1, seed=1).codes.shape == (CODEBOOKS, 25)
