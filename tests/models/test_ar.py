"""AR transformer mechanics: KV cache, guidance, filters, sampling, generation contract."""

from __future__ import annotations

import math

import pytest
import torch

from soundtrail.models.ar import ARConfig, ARModel, apply_cfg, ar_loss, filter_logits, musicgen_small, sample_logits

TINY = ARConfig(n_codebooks=4, codebook_size=32, cond_dim=24, d_model=48, n_layers=2, n_heads=4, max_steps=64)



@pytest.fixture(scope="module")
def model() -> ARModel:
    torch.manual_seed(0)
    return ARModel(TINY).eval()


def text(batch: int = 2, length: int = 5, pad_last: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Random text embeddings; the last row has ``pad_last`` padded tokens."""
    generator = torch.Generator().manual_seed(7)
    cond = torch.randn(batch, length, TINY.cond_dim, generator=generator)
    mask = torch.ones(batch, length, dtype=torch.bool)
    if pad_last:
        mask[-1, -pad_last:] = False
    return cond, mask


def random_steps(model: ARModel, batch: int, frames: int) -> torch.Tensor:
    codes = torch.randint(0, TINY.codebook_size, (batch, TINY.n_codebooks, frames),
                          generator=torch.Generator().manual_seed(3))
    return model.pattern.build(codes, TINY.special_token)


def test_musicgen_small_preset_has_the_published_size() -> None:
    config = musicgen_small()
    assert (config.n_layers, config.d_model, config.n_heads) == (24, 1024, 16)
    assert (config.n_codebooks, config.codebook_size) == (4, 2048)


def test_logits_shape_and_parameter_count(model: ARModel) -> None:
    cond, mask = text()
    logits = model(random_steps(model, 2, 6), cond, mask)
    assert logits.shape == (2, 4, 6 + 3 + 1, TINY.codebook_size)
    assert model.num_parameters() > 0


def test_cached_decoding_matches_the_full_forward(model: ARModel) -> None:
    """Prefill a chunk, then one step at a time, then another chunk: the same logits as one causal pass."""
    cond, mask = text()
    steps = random_steps(model, 2, 20)
    with torch.no_grad():
        full = model(steps, cond, mask)
        cache = model.start_decoding(cond, mask, steps.shape[-1])
        parts = [model.decode(steps[:, :, :7], cache)]
        parts += [model.decode(steps[:, :, s: s + 1], cache) for s in range(7, 15)]
        parts.append(model.decode(steps[:, :, 15:], cache))
    assert cache.length == steps.shape[-1]
    torch.testing.assert_close(torch.cat(parts, dim=2), full, atol=1e-5, rtol=1e-5)


def test_padding_of_the_text_is_ignored(model: ARModel) -> None:
    """Changing what sits under masked-out text tokens changes nothing."""
    cond, mask = text()
    steps = random_steps(model, 2, 4)
    altered = cond.clone()
    altered[1, -2:] = 100.0
    with torch.no_grad():
        torch.testing.assert_close(model(steps, cond, mask), model(steps, altered, mask))
        assert not torch.allclose(model(steps, cond, mask)[0], model(steps, altered.flip(1), mask)[0])


def test_cfg_scale_one_is_the_conditional_model(model: ARModel) -> None:
    """Guidance at scale 1 over the joint batch of 2B rows gives the conditional rows' logits."""
    cond, mask = text()
    steps = random_steps(model, 2, 5)
    null, null_mask = model.drop_condition(cond, mask, torch.ones(2, dtype=torch.bool))
    with torch.no_grad():
        joint = model.start_decoding(torch.cat([cond, null]), torch.cat([mask, null_mask]), steps.shape[-1])
        alone = model.start_decoding(cond, mask, steps.shape[-1])
        guided = apply_cfg(model.decode(steps.repeat(2, 1, 1), joint), 1.0)
        conditional = model.decode(steps, alone)
        torch.testing.assert_close(guided, conditional, atol=1e-5, rtol=1e-5)
        # and a larger scale moves the logits away from the conditional ones, along (cond - uncond)
        joint.length = 0
        both = model.decode(steps.repeat(2, 1, 1), joint)
    c, u = both.chunk(2)
    torch.testing.assert_close(apply_cfg(both, 3.0), u + 3.0 * (c - u))


def test_drop_condition_swaps_in_the_null_text(model: ARModel) -> None:
    cond, mask = text()
    dropped, dropped_mask = model.drop_condition(cond, mask, torch.tensor([True, False]))
    assert torch.equal(dropped[1], cond[1]) and torch.equal(dropped_mask[1], mask[1])
    assert torch.equal(dropped[0], model.null_cond.detach().expand(5, -1))
    assert dropped_mask[0].tolist() == [True, False, False, False, False]


def test_top_k_keeps_exactly_the_k_largest() -> None:
    logits = torch.tensor([[0.5, 3.0, -1.0, 2.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    kept = torch.isfinite(filter_logits(logits, top_k=2))
    assert kept.tolist() == [[False, True, False, True, False], [True, True, False, False, False]]
    assert torch.isfinite(filter_logits(logits, top_k=0)).all()


def test_top_p_keeps_the_smallest_nucleus() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    assert torch.isfinite(filter_logits(logits, top_p=0.5)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.9)).tolist() == [[True, True, True, False]]
    # order of the vocabulary does not matter
    shuffled = logits[:, [2, 0, 3, 1]]
    assert torch.isfinite(filter_logits(shuffled, top_p=0.7)).tolist() == [[False, True, False, True]]


def test_sampling_respects_filters_and_seed() -> None:
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(0))
    draws = sample_logits(logits, 1.0, top_k=3, generator=torch.Generator().manual_seed(1))
    top3 = logits.topk(3, dim=-1).indices
    assert (top3 == draws[:, None]).any(dim=1).all()
    again = sample_logits(logits, 1.0, top_k=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(draws, again)
    assert torch.equal(sample_logits(logits, 0.0), logits.argmax(dim=-1))


def test_generate_is_deterministic_per_seed_and_emits_only_codes(model: ARModel) -> None:
    cond, mask = text()

    def run(seed: int, cfg_scale: float) -> torch.Tensor:
        return model.generate(cond, mask, 12, cfg_scale=cfg_scale, top_k=10, top_p=0.9,
                              generator=torch.Generator().manual_seed(seed))

    first = run(5, 3.0)
    assert first.shape == (2, TINY.n_codebooks, 12)
    assert int(first.min()) >= 0 and int(first.max()) < TINY.codebook_size
    assert torch.equal(first, run(5, 3.0))
    assert not torch.equal(first, run(6, 3.0))
    assert torch.equal(run(5, 1.0), run(5, 1.0))


def test_greedy_generation_follows_the_model(model: ARModel) -> None:
    """Greedy decoding picks, at every step, the argmax of the teacher-forced logits of its own output."""
    cond, mask = text()
    codes = model.generate(cond, mask, 8, cfg_scale=1.0, temperature=0.0)
    steps = model.pattern.build(codes, TINY.special_token)
    with torch.no_grad():
        logits = model(steps[:, :, :-1], cond, mask)
    valid = model.pattern.layout(8).valid[:, 1:]
    predicted = logits.argmax(dim=-1)
    assert torch.equal(predicted[:, valid], steps[:, :, 1:][:, valid])


def test_prompt_codes_are_kept_and_continued(model: ARModel) -> None:
    cond, mask = text()
    prompt = torch.randint(0, TINY.codebook_size, (2, TINY.n_codebooks, 5), generator=torch.Generator().manual_seed(2))
    out = model.generate(cond, mask, 10, cfg_scale=2.0, prompt_codes=prompt,
                         generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :, :5], prompt)
    greedy = model.generate(cond, mask, 10, cfg_scale=1.0, temperature=0.0, prompt_codes=prompt)
    steps = model.pattern.build(greedy, TINY.special_token)
    with torch.no_grad():
        predicted = model(steps[:, :, :-1], cond, mask).argmax(dim=-1)
    layout = model.pattern.layout(10)
    sampled = layout.valid[:, 1:] & (layout.frame[:, 1:] >= 5)  # positions generate() chose, not the prompt
    assert torch.equal(predicted[:, sampled], steps[:, :, 1:][:, sampled])


def test_generation_longer_than_max_steps_is_refused(model: ARModel) -> None:
    cond, mask = text()
    with pytest.raises(ValueError, match="max_steps"):
        model.generate(cond, mask, TINY.max_steps)


def test_padded_rows_score_as_they_would_alone(model: ARModel) -> None:
    cond, mask = text(batch=1, pad_last=0)
    codes = torch.randint(0, TINY.codebook_size, (1, TINY.n_codebooks, 9), generator=torch.Generator().manual_seed(4))
    padded = torch.cat([codes, torch.randint(0, TINY.codebook_size, (1, TINY.n_codebooks, 5))], dim=2)
    alone = ar_loss(model, codes, cond, mask)
    torch.testing.assert_close(ar_loss(model, padded, cond, mask, torch.tensor([9])), alone)
    assert not torch.allclose(ar_loss(model, padded, cond, mask), alone)


def test_loss_of_an_untrained_model_is_near_uniform(model: ARModel) -> None:
    cond, mask = text()
    codes = torch.randint(0, TINY.codebook_size, (2, TINY.n_codebooks, 10))
    loss = ar_loss(model, codes, cond, mask)
    assert abs(loss.item() - math.log(TINY.codebook_size)) < 0.3
