"""Training the text-to-latent diffusion generator through the shared loop, checkpoints, and reloading it."""

from __future__ import annotations

import pytest
import torch

from soundtrail.checkpoint import read_config
from soundtrail.models.conditioning import LearnedTextConfig, LearnedTextEncoder
from soundtrail.models.diffusion import DiT, DiTConfig
from soundtrail.train.diffusion import TextToLatent, build_model, load_model, model_config, train_diffusion
from soundtrail.train.loop import LoopConfig
from soundtrail.train.unit import OptimizerConfig

D, FRAMES = 8, 24
CAPTIONS = ["slow warm drone", "fast bright ripple", "steady pulse in the middle"]



def tiny_model(seed: int = 0) -> TextToLatent:
    torch.manual_seed(seed)
    encoder = LearnedTextEncoder(LearnedTextConfig(buckets=64, dim=32, n_layers=1, n_heads=2, max_tokens=8))
    dit = DiT(DiTConfig(latent_dim=D, cond_dim=32, d_model=64, n_layers=2, n_heads=4))
    return TextToLatent(dit, encoder)


def make_batches(start_step: int, batch: int = 16):
    """Captioned latents: caption k -> a sinusoid of k + 1 cycles (scaled and offset), seeded by step."""
    frames = torch.arange(FRAMES)
    phase = torch.linspace(0, 3, D)[:, None]
    step = start_step
    while True:
        generator = torch.Generator().manual_seed(step)
        labels = torch.randint(0, len(CAPTIONS), (batch,), generator=generator).tolist()
        latents = torch.stack([4.0 * torch.sin(2 * torch.pi * (k + 1) * frames / FRAMES + phase) - 2.0
                               for k in labels])
        yield latents + 0.05 * torch.randn(latents.shape, generator=generator), [CAPTIONS[k] for k in labels]
        step += 1


LOOP = LoopConfig(steps=150, checkpoint_every=100, log_every=50)
OPTIMIZER = OptimizerConfig(lr=3e-3, min_lr=3e-4, warmup_steps=10)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[TextToLatent, object]:
    model = tiny_model()
    result = train_diffusion(model, make_batches, LOOP, OPTIMIZER, tmp_path_factory.mktemp("diffusion"),
                             metadata={"shards": ["abc"]})
    return model, result


def test_loss_falls_and_checkpoint_is_complete(trained):
    """150 steps: the mean of the last 10 step losses is below 0.6x the first 10 (seen: about 0.2x)."""
    model, result = trained
    assert result.steps_run == 150 and len(result.losses) == 150
    assert result.initial_loss > 1.5
    assert result.final_loss < 0.6 * result.initial_loss
    document = read_config(result.checkpoint_dir)
    assert document["kind"] == "diffusion" and document["shards"] == ["abc"]
    assert document["config"] == model_config(model)
    assert not (result.checkpoint_dir / "steps").exists()


def test_latent_statistics_come_from_the_data(trained):
    model, _ = trained
    latents = torch.cat([batch for batch, _ in [next(make_batches(s)) for s in range(8)]])
    torch.testing.assert_close(model.dit.latent_mean, latents.mean(dim=(0, 2)), atol=1e-4, rtol=0)
    torch.testing.assert_close(model.dit.latent_std, latents.transpose(0, 1).reshape(D, -1).std(dim=1), atol=1e-4,
                               rtol=1e-4)


def test_reloaded_model_generates_the_same_latents(trained):
    model, result = trained
    model.eval()
    restored = load_model(result.checkpoint_dir)
    first = model.generate(CAPTIONS, FRAMES, steps=4, cfg_scale=2.0, seed=3)
    assert first.shape == (len(CAPTIONS), D, FRAMES)
    torch.testing.assert_close(restored.generate(CAPTIONS, FRAMES, steps=4, cfg_scale=2.0, seed=3), first)
    assert not torch.allclose(model.generate(CAPTIONS, FRAMES, steps=4, cfg_scale=2.0, seed=4), first)


def test_generated_latents_follow_the_caption(trained):
    """The guided sample for caption k correlates best with the k + 1 cycle pattern it was trained on."""
    model, _ = trained
    model.eval()
    latents = model.generate(CAPTIONS, FRAMES, steps=8, cfg_scale=2.0, seed=0)
    frames = torch.arange(FRAMES)
    phase = torch.linspace(0, 3, D)[:, None]
    patterns = torch.stack([torch.sin(2 * torch.pi * (k + 1) * frames / FRAMES + phase).flatten()
                            for k in range(len(CAPTIONS))])
    centred = (latents - latents.mean(dim=-1, keepdim=True)).flatten(1)
    correlation = torch.nn.functional.normalize(centred, dim=1) @ torch.nn.functional.normalize(patterns, dim=1).T
    assert correlation.argmax(dim=1).tolist() == [0, 1, 2]


def test_finished_run_is_not_retrained(trained):
    model, result = trained
    again = train_diffusion(tiny_model(seed=1), make_batches, LOOP, OPTIMIZER, result.checkpoint_dir)
    assert again.steps_run == 0 and again.losses == result.losses


def test_config_round_trip_and_mismatched_widths():
    model = tiny_model()
    rebuilt = build_model(model_config(model))
    assert rebuilt.dit.config == model.dit.config and rebuilt.encoder.encoder_id == model.encoder.encoder_id
    with pytest.raises(ValueError, match="cond_dim"):
        TextToLatent(DiT(DiTConfig(latent_dim=D, cond_dim=48, d_model=64, n_layers=1, n_heads=4)), model.encoder)
    wrong = model_config(model) | {"text_encoder": "learned-words:other"}
    with pytest.raises(ValueError, match="trained with text encoder"):
        build_model(wrong)


def test_frozen_encoder_stays_out_of_the_weights():
    from soundtrail.models.conditioning import FrozenMiniLMEncoder

    encoder = FrozenMiniLMEncoder()
    model = TextToLatent(DiT(DiTConfig(latent_dim=D, cond_dim=encoder.dim, d_model=64, n_layers=1, n_heads=4)),
                         encoder)
    assert all(name.startswith("dit.") for name in model.state_dict())
    assert all(p.requires_grad for p in model.parameters())
    model.train()
    loss = model.loss(torch.randn(2, D, FRAMES), CAPTIONS[:2])
    loss.backward()
    assert torch.isfinite(loss) and model.dit.patch_in.weight.grad is not None
    assert model_config(model)["text"] == {"kind": "minilm"}


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    """Noise, timesteps and condition dropout come from the global RNG the loop reseeds each step: resume is exact."""
    loop = LoopConfig(steps=30, checkpoint_every=10, log_every=10)
    optimizer = OptimizerConfig(lr=3e-3, min_lr=3e-4, warmup_steps=5)
    whole = tiny_model()
    train_diffusion(whole, make_batches, loop, optimizer, tmp_path / "whole")

    class Killed(Exception):
        pass

    def kill_at_25(step: int, loss: float) -> None:
        if step == 25:
            raise Killed

    with pytest.raises(Killed):
        train_diffusion(tiny_model(), make_batches, loop, optimizer, tmp_path / "killed", on_step=kill_at_25)
    resumed = tiny_model(seed=7)  # different initial weights: everything must come from the checkpoint
    result = train_diffusion(resumed, make_batches, loop, optimizer, tmp_path / "killed")
    assert result.start_step == 20 and result.steps_run == 10
    for (name, expected), actual in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(actual, expected, msg=name)
