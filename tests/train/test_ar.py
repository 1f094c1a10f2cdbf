"""A tiny AR generator learns text-conditioned code sequences through train_ar, and loads back to generate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from soundtrail import checkpoint
from soundtrail.models.ar import ARConfig
from soundtrail.models.conditioning import LearnedTextConfig, LearnedTextEncoder
from soundtrail.train.ar import batches_from_examples, load_ar, train_ar
from soundtrail.train.loop import LoopConfig
from soundtrail.train.unit import OptimizerConfig

V, K, T = 16, 2, 10
# each caption is an arithmetic progression of codes with its own stride; the start is random per example,
# so only the first frame of codebook 0 is unpredictable and everything else follows from text + past codes
STRIDES = {"rising steps": 1, "leaping thirds": 3, "falling steps": V - 1, "wide fifths": 5}


def sequence(caption: str, start: int) -> torch.Tensor:
    frames = (start + STRIDES[caption] * torch.arange(T)) % V
    return torch.stack([(frames + 7 * k) % V for k in range(K)])


def dataset() -> tuple[torch.Tensor, list[str]]:
    captions = [caption for caption in STRIDES for _ in range(V)]
    codes = torch.stack([sequence(caption, i % V) for i, caption in enumerate(captions)])
    return codes, captions



@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("ar") / "run"
    codes, captions = dataset()
    config = ARConfig(n_codebooks=K, codebook_size=V, d_model=64, n_layers=2, n_heads=4, max_steps=32,
                      cond_dropout=0.1)
    loop = LoopConfig(steps=160, checkpoint_every=80)
    optimizer = OptimizerConfig(lr=3e-3, min_lr=3e-4, warmup_steps=10, weight_decay=0.0)
    encoder = LearnedTextEncoder(LearnedTextConfig(dim=32, n_layers=1, n_heads=2))
    result = train_ar(batches_from_examples(codes, captions, batch_size=16), directory, config, loop, optimizer,
                      encoder, {"shards": ["synthetic"]})
    return directory, result


def test_loss_falls_far_below_uniform(trained) -> None:
    _, result = trained
    uniform = math.log(V)
    assert abs(result.losses[0] - uniform) < 0.3
    # the floor is about ln(16) / (2 T) = 0.14 (one unpredictable code per sequence); uniform is 2.77
    assert result.final_loss < uniform - 1.8, (result.initial_loss, result.final_loss)


def test_checkpoint_records_the_text_encoder_and_metadata(trained) -> None:
    directory, _ = trained
    document = checkpoint.read_config(directory)
    assert document["kind"] == "ar" and document["shards"] == ["synthetic"]
    assert document["text_encoder"].startswith("learned-words:")
    assert document["config"]["cond_dim"] == 32
    assert any(name.startswith("text.") for name in checkpoint.load_file(str(directory / checkpoint.WEIGHTS)))


def test_loaded_model_continues_each_caption_its_own_way(trained) -> None:
    """Same two-frame prompt, different captions: greedy continuations follow each caption's stride."""
    directory, _ = trained
    model = load_ar(directory, "cpu")
    captions = list(STRIDES)
    prompt = torch.stack([sequence(caption, 4)[:, :2] for caption in captions])
    out = model.generate(captions, T, cfg_scale=1.0, temperature=0.0, prompt_codes=prompt)
    expected = torch.stack([sequence(caption, 4) for caption in captions])
    accuracy = (out[:, :, 2:] == expected[:, :, 2:]).float().mean().item()
    assert accuracy > 0.9, accuracy
    sampled = model.generate(captions, T, cfg_scale=3.0, top_k=4, generator=torch.Generator().manual_seed(0))
    again = model.generate(captions, T, cfg_scale=3.0, top_k=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled, again)


def test_load_refuses_other_kinds(tmp_path: Path) -> None:
    checkpoint.save_weights(tmp_path, torch.nn.Linear(2, 2), "codec", {"a": 1})
    with pytest.raises(ValueError, match="not an AR generator"):
        load_ar(tmp_path)


def test_frozen_minilm_stays_out_of_the_checkpoint_and_is_checked_on_load(tmp_path: Path) -> None:
    codes, captions = dataset()
    config = ARConfig(n_codebooks=K, codebook_size=V, d_model=32, n_layers=1, n_heads=2, max_steps=32)
    result = train_ar(batches_from_examples(codes, captions, batch_size=4), tmp_path / "run", config,
                      LoopConfig(steps=3), OptimizerConfig(warmup_steps=1), "minilm")
    assert result.steps_run == 3
    document = checkpoint.read_config(tmp_path / "run")
    assert document["text_encoder"].startswith("minilm-l6-v2:") and document["config"]["cond_dim"] == 384
    names = checkpoint.load_file(str(tmp_path / "run" / checkpoint.WEIGHTS))
    assert names and all(name.startswith("ar.") for name in names)
    model = load_ar(tmp_path / "run", "cpu")
    assert model.generate(["rising steps"], 4, cfg_scale=2.0).shape == (1, K, 4)
    document["text_encoder"] = "minilm-l6-v2:0000000000000000"
    (tmp_path / "run" / checkpoint.CONFIG).write_text(json.dumps(document))
    with pytest.raises(ValueError, match="trained with text encoder"):
        load_ar(tmp_path / "run", "cpu")
